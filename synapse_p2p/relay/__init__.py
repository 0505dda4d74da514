"""Relays: reaching nodes that cannot be dialed, through a node that can.

A relay (``Node(relay=True)``) lets a node that can only dial out (behind a NAT or a firewall)
keep a *reservation* on it (``Node(relays=["host:port"])``); other nodes then open *circuits*
to it through the relay. The secure channel runs end to end inside a circuit, so the relay
sees only ciphertext. See ``docs/relay.md`` for the protocol, the limits and what comes next.

* :mod:`._protocol`: the bytes (sans-IO) and :class:`RelayLimits`;
* :mod:`._service`: the relay's side (:class:`RelayService`);
* :mod:`._reserve`: the reserved node's side (:class:`Reservations`);
* :mod:`._dial`: opening circuits (:func:`open_circuit`, :class:`RelayTransport`);
* :mod:`._advertised`: routes learned from members' signed records (:class:`AdvertisedRoutes`);
* :mod:`._reach`: dial-backs and ``node.reachability`` (:class:`Reachability`);
* :mod:`._auto`: reserving on relay members by itself when private (:class:`AutoRelays`);
* :mod:`._node_relay`: what a node holds (:class:`NodeRelay`).
"""

from __future__ import annotations

from ._advertised import AdvertisedRoutes, RelayMember
from ._auto import AutoRelays
from ._circuit import CircuitStream, RelayAttribute
from ._dial import RelayRoute, RelayTransport, open_circuit, open_relay
from ._node_relay import NodeRelay
from ._protocol import PREAMBLE, RelayLimits
from ._reach import Reachability, ReachabilityState, Verdicts
from ._reserve import Reservations, ReservationState
from ._service import RelayService, RelayStatistics

__all__ = [
    "PREAMBLE",
    "AdvertisedRoutes",
    "AutoRelays",
    "CircuitStream",
    "NodeRelay",
    "Reachability",
    "ReachabilityState",
    "RelayAttribute",
    "RelayLimits",
    "RelayMember",
    "RelayRoute",
    "RelayService",
    "RelayStatistics",
    "RelayTransport",
    "ReservationState",
    "Reservations",
    "Verdicts",
    "open_circuit",
    "open_relay",
]
