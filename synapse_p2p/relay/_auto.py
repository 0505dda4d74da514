"""Automatic relays: a private node with no ``relays=`` reserves on relay members by itself.

:class:`AutoRelays` runs beside the node's :class:`~._reserve.Reservations`. While
``node.reachability`` is ``"private"`` it keeps reservations on up to :data:`WANT` members
whose signed record says they serve as a relay (``relay: true``, learned by
:class:`~._advertised.AdvertisedRoutes`), picked at random among the live ones. A relay that
stays unreserved for :data:`SWITCH_AFTER` seconds (it died, restarted elsewhere, refuses)
is replaced by another relay member if there is one, and not picked again for
:data:`AVOID_FOR` seconds; with no other, the reservation keeps reconnecting to it (a relay
restarted at its address is re-reserved within a few seconds). When the node becomes public
(or unknown for good) its automatic reservations are dropped.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping

import anyio

from .._random import SHARED
from .._validate import format_address
from ..types import Peer
from ._advertised import AdvertisedRoutes
from ._reach import Reachability
from ._reserve import Reservations

__all__ = ["AVOID_FOR", "SWITCH_AFTER", "WANT", "AutoRelays"]

log = logging.getLogger(__name__)

#: Relays a private node keeps a reservation on, at most.
WANT = 2
#: Seconds a relay may stay unreserved before another one is tried instead.
SWITCH_AFTER = 3.0
#: Seconds a relay given up is not picked again.
AVOID_FOR = 30.0


class AutoRelays:
    """See the module documentation. ``members``: membership's live members."""

    def __init__(
        self,
        reservations: Reservations,
        reach: Reachability,
        advertised: AdvertisedRoutes,
        members: Callable[[], Mapping[str, Peer]],
        *,
        rng: random.Random | None = None,
        interval: float = 0.5,
    ) -> None:
        self.reservations = reservations
        self.reach = reach
        self.advertised = advertised
        self.members = members
        self.interval = interval
        self._rng = rng or SHARED
        self.chosen: set[tuple[str, int]] = set()
        self._unreserved_since: dict[tuple[str, int], float] = {}
        self._avoid: dict[tuple[str, int], float] = {}

    def _candidates(self, now: float) -> list[tuple[str, int]]:
        live = self.members()
        out = []
        for node_id, relay in self.advertised.relay_members.items():
            address = (relay.address, relay.port)
            if (
                node_id in live
                and address not in self.chosen
                and self._avoid.get(address, -math.inf) <= now
            ):
                out.append(address)
        self._rng.shuffle(out)
        return out

    def step(self, now: float) -> None:
        """One decision (see the module documentation)."""
        if self.reach.state != "private":
            for address in list(self.chosen):
                self._drop(
                    address, "this node is reachable" if self.reach.state == "public" else ""
                )
            return
        reserved = {s.relay for s in self.reservations.states() if s.reserved}
        spare = len(self._candidates(now)) - max(0, WANT - len(self.chosen))
        for address in list(self.chosen):
            if address in reserved:
                self._unreserved_since.pop(address, None)
                continue
            since = self._unreserved_since.setdefault(address, now)
            if now - since >= SWITCH_AFTER and spare > 0:  # one replacement each
                spare -= 1
                self._avoid[address] = now + AVOID_FOR
                self._drop(address, f"no reservation for {now - since:.1f} s")
        for address in self._candidates(now)[: max(0, WANT - len(self.chosen))]:
            self.chosen.add(address)
            self._unreserved_since[address] = now
            self.reservations.add(address)
            log.info("this node is private: reserving on relay %s", format_address(*address))

    def _drop(self, address: tuple[str, int], why: str) -> None:
        self.chosen.discard(address)
        self._unreserved_since.pop(address, None)
        self.reservations.remove(address)
        if why:
            log.info("leaving relay %s: %s", format_address(*address), why)

    async def run(self) -> None:
        """Decide every ``interval`` seconds (and at once when reachability changes) until
        cancelled."""
        while True:
            self.step(anyio.current_time())
            if self.reach.state != "private":  # (step dropped every relay chosen)
                await self.reach.changed.wait()  # nothing to decide until it is private
                continue
            with anyio.move_on_after(self.interval):
                await self.reach.changed.wait()
