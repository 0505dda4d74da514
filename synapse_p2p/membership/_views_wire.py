"""HyParView messages: frozen dataclasses with validated, bounded dict codecs.

Every message is ``{"k": KIND, ...fields}``; :func:`decode_view_message` checks the kind, the
field types and the list bounds, and raises :class:`~synapse_p2p.errors.ProtocolError` on
anything else. The sender of a message is the authenticated peer of the channel it arrived on
(the driver passes it to ``handle`` as ``from_id``), so messages name only what they carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ProtocolError
from ._records import PeerRecord, WireMessage, wire_int, wire_list

__all__ = [
    "MAX_SHUFFLE",
    "DisconnectMessage",
    "ForwardJoin",
    "Join",
    "Neighbor",
    "NeighborReply",
    "Shuffle",
    "ShuffleReply",
    "ViewMessage",
    "decode_view_message",
]

#: The most records one SHUFFLE or SHUFFLE_REPLY may carry.
MAX_SHUFFLE = 64
MAX_TTL = 16


@dataclass(frozen=True, slots=True)
class Join(WireMessage):
    """A new node asks a contact to let it in; the contact answers with NeighborReply."""

    KIND = "hv.join"
    record: PeerRecord

    def to_wire(self) -> dict[str, Any]:
        return {"k": self.KIND, "record": self.record.to_wire()}


@dataclass(frozen=True, slots=True)
class ForwardJoin(WireMessage):
    """A random walk announcing ``record``: active view at the end, passive view at PRWL."""

    KIND = "hv.fjoin"
    record: PeerRecord
    ttl: int

    def to_wire(self) -> dict[str, Any]:
        return {"k": self.KIND, "record": self.record.to_wire(), "ttl": self.ttl}


@dataclass(frozen=True, slots=True)
class Neighbor(WireMessage):
    """Asks to become an active neighbor; ``high`` priority is accepted even by a full view."""

    KIND = "hv.neighbor"
    record: PeerRecord
    high: bool

    def to_wire(self) -> dict[str, Any]:
        return {"k": self.KIND, "record": self.record.to_wire(), "high": self.high}


@dataclass(frozen=True, slots=True)
class NeighborReply(WireMessage):
    KIND = "hv.neighbor_reply"
    record: PeerRecord
    accepted: bool

    def to_wire(self) -> dict[str, Any]:
        return {"k": self.KIND, "record": self.record.to_wire(), "accepted": self.accepted}


@dataclass(frozen=True, slots=True)
class DisconnectMessage(WireMessage):
    """The sender dropped us from its active view (we keep it in our passive view)."""

    KIND = "hv.disconnect"

    def to_wire(self) -> dict[str, Any]:
        return {"k": self.KIND}


@dataclass(frozen=True, slots=True)
class Shuffle(WireMessage):
    """A random walk carrying a sample of the origin's views, answered at its end."""

    KIND = "hv.shuffle"
    origin: PeerRecord
    ttl: int
    records: tuple[PeerRecord, ...]

    def to_wire(self) -> dict[str, Any]:
        return {
            "k": self.KIND,
            "origin": self.origin.to_wire(),
            "ttl": self.ttl,
            "records": [r.to_wire() for r in self.records],
        }


@dataclass(frozen=True, slots=True)
class ShuffleReply(WireMessage):
    KIND = "hv.shuffle_reply"
    records: tuple[PeerRecord, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"k": self.KIND, "records": [r.to_wire() for r in self.records]}


ViewMessage = (
    Join | ForwardJoin | Neighbor | NeighborReply | DisconnectMessage | Shuffle | ShuffleReply
)


def _bool(data: dict[str, Any], key: str, what: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise ProtocolError(f"{what} {key!r} must be a boolean")
    return value


def _records(data: dict[str, Any], what: str) -> tuple[PeerRecord, ...]:
    return tuple(PeerRecord.from_wire(r) for r in wire_list(data, "records", what, MAX_SHUFFLE))


def decode_view_message(data: Any) -> ViewMessage:
    """A HyParView message from its wire dict, or a ProtocolError naming what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("k"), str):
        raise ProtocolError("a view message must be a map with a string 'k'")
    kind = data["k"]
    what = f"view message {kind!r}"
    if kind == Join.KIND:
        return Join(PeerRecord.from_wire(data.get("record")))
    if kind == ForwardJoin.KIND:
        return ForwardJoin(
            PeerRecord.from_wire(data.get("record")), wire_int(data, "ttl", what, 0, MAX_TTL)
        )
    if kind == Neighbor.KIND:
        return Neighbor(PeerRecord.from_wire(data.get("record")), _bool(data, "high", what))
    if kind == NeighborReply.KIND:
        record = PeerRecord.from_wire(data.get("record"))
        return NeighborReply(record, _bool(data, "accepted", what))
    if kind == DisconnectMessage.KIND:
        return DisconnectMessage()
    if kind == Shuffle.KIND:
        origin = PeerRecord.from_wire(data.get("origin"))
        return Shuffle(origin, wire_int(data, "ttl", what, 0, MAX_TTL), _records(data, what))
    if kind == ShuffleReply.KIND:
        return ShuffleReply(_records(data, what))
    raise ProtocolError(f"unknown view message kind {kind!r}")
