"""Peer records and the action vocabulary shared by the sans-IO membership and broadcast cores.

The cores (:mod:`._views`, :mod:`._swim`, :mod:`synapse_p2p.conversations._plumtree`) never do
I/O. They take ``now`` (the caller's monotonic clock, in seconds) and return a list of
*actions*; a driver (the live node, or the simulator in :mod:`synapse_p2p.simulation`) carries
them out:

- :class:`Send`: deliver ``message`` to ``peer`` (encode with ``message.to_wire()``, a
  msgpack-friendly dict; the receiver decodes with the core's ``decode`` function and calls
  ``handle``). Delivery may fail or be lost; the cores tolerate both.
- :class:`Connect` / :class:`Disconnect`: keep (or stop keeping) a connection open to a peer
  (HyParView's active view is exactly the set of peers a node keeps connections to).
- :class:`NeighborUp` / :class:`NeighborDown`: the active view changed (the broadcast tree
  core is told, so it pushes along the new link or forgets the old one).
- :class:`MemberUp` / :class:`MemberDown`: the failure detector's view of the swarm changed
  (this is what ``node.peers`` lists).

A :class:`PeerRecord` is ``synapse_p2p.types.Peer``-like plus ``seq``: a per-author sequence
number (SWIM's incarnation). A newer record of the same id has a larger ``seq``; the trust
layer signs records (``signature`` is carried opaquely) and the cores call a pluggable
``verify(record) -> bool`` before believing one received from someone else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProtocolError
from ..types import Peer, _interned, _interned_port

__all__ = [
    "MAX_CAPABILITIES",
    "MAX_ID",
    "Action",
    "Connect",
    "Disconnect",
    "MemberDown",
    "MemberUp",
    "NeighborDown",
    "NeighborUp",
    "PeerRecord",
    "Send",
    "Verifier",
    "WireMessage",
    "host_key",
    "subnet_key",
]

MAX_ID = 256
MAX_CAPABILITIES = 64
MAX_SIGNATURE = 512


def _need(data: Any, key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(data, dict):
        raise ProtocolError(f"{what} must be a map, got {type(data).__name__}")
    if key not in data:
        raise ProtocolError(f"{what} has no {key!r}")
    value = data[key]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise ProtocolError(f"{what} {key!r} has the wrong type ({type(value).__name__})")
    return value


def wire_str(data: Any, key: str, what: str, max_length: int = MAX_ID) -> str:
    """``data[key]`` as a string of at most ``max_length`` characters, or a ProtocolError."""
    value: str = _need(data, key, str, what)
    if len(value) > max_length:
        raise ProtocolError(f"{what} {key!r} is longer than {max_length} characters")
    return value


def wire_int(data: Any, key: str, what: str, low: int = 0, high: int = 2**63 - 1) -> int:
    """``data[key]`` as an int in ``low..high``, or a ProtocolError."""
    value: int = _need(data, key, int, what)
    if not low <= value <= high:
        raise ProtocolError(f"{what} {key!r} is out of range: {value}")
    return value


def wire_list(data: Any, key: str, what: str, max_items: int) -> list[Any]:
    """``data[key]`` as a list of at most ``max_items`` items, or a ProtocolError."""
    value: list[Any] = _need(data, key, list, what)
    if len(value) > max_items:
        raise ProtocolError(f"{what} {key!r} has more than {max_items} items")
    return value


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """A node as the membership cores know it; ``seq`` orders records of one author."""

    id: str
    address: str
    port: int
    name: str = ""
    capabilities: tuple[str, ...] = ()
    seq: int = 0
    signature: bytes = field(default=b"", compare=False)

    def newer_than(self, other: PeerRecord) -> bool:
        return self.seq > other.seq

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "id": self.id,
            "address": self.address,
            "port": self.port,
            "seq": self.seq,
        }
        if self.name:
            wire["name"] = self.name
        if self.capabilities:
            wire["capabilities"] = list(self.capabilities)
        if self.signature:
            wire["signature"] = self.signature
        return wire

    @classmethod
    def from_wire(cls, data: Any) -> PeerRecord:
        what = "peer record"
        if not isinstance(data, dict):
            raise ProtocolError(f"{what} must be a map, got {type(data).__name__}")
        caps = data.get("capabilities", [])
        if (
            not isinstance(caps, list)
            or len(caps) > MAX_CAPABILITIES
            or not all(isinstance(c, str) and len(c) <= MAX_ID for c in caps)
        ):
            raise ProtocolError(f"{what} 'capabilities' must be a short list of short strings")
        name = data.get("name", "")
        if not isinstance(name, str) or len(name) > MAX_ID:
            raise ProtocolError(f"{what} 'name' must be a string of at most {MAX_ID} characters")
        signature = data.get("signature", b"")
        if not isinstance(signature, bytes) or len(signature) > MAX_SIGNATURE:
            raise ProtocolError(f"{what} 'signature' must be at most {MAX_SIGNATURE} bytes")
        return cls(
            id=_interned(wire_str(data, "id", what)),
            address=_interned(wire_str(data, "address", what)),
            port=_interned_port(wire_int(data, "port", what, 0, 65535)),
            name=_interned(name),
            capabilities=tuple(_interned(c) for c in caps),
            seq=wire_int(data, "seq", what),
            signature=signature,
        )

    @classmethod
    def from_peer(cls, peer: Peer, seq: int = 0) -> PeerRecord:
        return cls(peer.id, peer.address, peer.port, peer.name, tuple(peer.capabilities), seq)

    def to_peer(self) -> Peer:
        return Peer(
            id=self.id,
            address=self.address,
            port=self.port,
            name=self.name,
            capabilities=list(self.capabilities),
        )


#: Decides whether a record received from someone else is authentic (the trust layer).
Verifier = Callable[[PeerRecord], bool]


def host_key(address: str) -> str:
    """The host part of an address, used to bound how many view slots one host may take."""
    return address.lower()


def subnet_key(address: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) of an address; the address itself if it is a name."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address.lower()
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


class WireMessage:
    """What every core message provides: a kind tag and a msgpack-friendly dict codec."""

    __slots__ = ()
    KIND = ""

    def to_wire(self) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Send:
    peer: PeerRecord
    message: WireMessage


@dataclass(frozen=True, slots=True)
class Connect:
    peer: PeerRecord


@dataclass(frozen=True, slots=True)
class Disconnect:
    peer: PeerRecord


@dataclass(frozen=True, slots=True)
class NeighborUp:
    peer: PeerRecord


@dataclass(frozen=True, slots=True)
class NeighborDown:
    peer: PeerRecord


@dataclass(frozen=True, slots=True)
class MemberUp:
    peer: PeerRecord


@dataclass(frozen=True, slots=True)
class MemberDown:
    peer: PeerRecord
    reason: str  # "dead" or "left"


Action = Send | Connect | Disconnect | NeighborUp | NeighborDown | MemberUp | MemberDown
