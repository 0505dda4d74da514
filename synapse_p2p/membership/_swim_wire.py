"""SWIM messages and membership deltas: frozen dataclasses with validated, bounded codecs.

Deltas (``alive``, ``suspect``, ``dead``) ride on every probe message (``gossip``); a
``dead`` delta whose ``by`` is the member itself means it left. Every message is
``{"k": KIND, ...}``; :func:`decode_swim_message` raises
:class:`~synapse_p2p.errors.ProtocolError` on a bad kind, type or bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ProtocolError
from ._records import PeerRecord, WireMessage, wire_int, wire_list, wire_str

__all__ = [
    "MAX_GOSSIP",
    "MAX_STATE",
    "Ack",
    "Alive",
    "Dead",
    "Delta",
    "Gossip",
    "Nack",
    "Ping",
    "PingReq",
    "PushPull",
    "Suspect",
    "SwimMessage",
    "decode_swim_message",
]

MAX_GOSSIP = 1024
MAX_STATE = 65536
MAX_SEQ = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Alive:
    record: PeerRecord  # record.seq is the member's incarnation

    @property
    def id(self) -> str:
        return self.record.id

    def to_wire(self) -> dict[str, Any]:
        return {"t": "a", "r": self.record.to_wire()}


@dataclass(frozen=True, slots=True)
class Suspect:
    id: str
    incarnation: int
    by: str

    def to_wire(self) -> dict[str, Any]:
        return {"t": "s", "id": self.id, "inc": self.incarnation, "by": self.by}


@dataclass(frozen=True, slots=True)
class Dead:
    id: str
    incarnation: int
    by: str  # == id: the member left

    def to_wire(self) -> dict[str, Any]:
        return {"t": "d", "id": self.id, "inc": self.incarnation, "by": self.by}


Delta = Alive | Suspect | Dead


def decode_delta(data: Any) -> Delta:
    if not isinstance(data, dict):
        raise ProtocolError("a membership delta must be a map")
    tag = data.get("t")
    if tag == "a":
        return Alive(PeerRecord.from_wire(data.get("r")))
    if tag in ("s", "d"):
        what = "membership delta"
        ident, inc = wire_str(data, "id", what), wire_int(data, "inc", what, 0, MAX_SEQ)
        by = wire_str(data, "by", what)
        return Suspect(ident, inc, by) if tag == "s" else Dead(ident, inc, by)
    raise ProtocolError(f"unknown membership delta {tag!r}")


def _deltas(data: dict[str, Any], key: str, what: str, bound: int) -> tuple[Delta, ...]:
    if key not in data:
        return ()
    return tuple(decode_delta(d) for d in wire_list(data, key, what, bound))


def _gossip_wire(gossip: tuple[Delta, ...]) -> list[dict[str, Any]]:
    return [d.to_wire() for d in gossip]


@dataclass(frozen=True, slots=True)
class Ping(WireMessage):
    KIND = "sw.ping"
    seq: int
    target: str
    gossip: tuple[Delta, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"k": self.KIND, "seq": self.seq, "target": self.target}
        if self.gossip:
            wire["gossip"] = _gossip_wire(self.gossip)
        return wire


@dataclass(frozen=True, slots=True)
class Ack(WireMessage):
    KIND = "sw.ack"
    seq: int
    gossip: tuple[Delta, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"k": self.KIND, "seq": self.seq}
        if self.gossip:
            wire["gossip"] = _gossip_wire(self.gossip)
        return wire


@dataclass(frozen=True, slots=True)
class Nack(WireMessage):
    """Lifeguard: the relay of an indirect probe got no answer from the target in time."""

    KIND = "sw.nack"
    seq: int

    def to_wire(self) -> dict[str, Any]:
        return {"k": self.KIND, "seq": self.seq}


@dataclass(frozen=True, slots=True)
class PingReq(WireMessage):
    """Asks the receiver to probe ``target`` and relay the answer (ack or nack)."""

    KIND = "sw.ping_req"
    seq: int
    target: PeerRecord
    gossip: tuple[Delta, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"k": self.KIND, "seq": self.seq, "target": self.target.to_wire()}
        if self.gossip:
            wire["gossip"] = _gossip_wire(self.gossip)
        return wire


@dataclass(frozen=True, slots=True)
class Gossip(WireMessage):
    KIND = "sw.gossip"
    gossip: tuple[Delta, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"k": self.KIND, "gossip": _gossip_wire(self.gossip)}


@dataclass(frozen=True, slots=True)
class PushPull(WireMessage):
    """The sender's whole state; ``reply`` asks the receiver to answer with its own."""

    KIND = "sw.push_pull"
    state: tuple[Delta, ...]
    reply: bool

    def to_wire(self) -> dict[str, Any]:
        return {"k": self.KIND, "state": _gossip_wire(self.state), "reply": self.reply}


SwimMessage = Ping | Ack | Nack | PingReq | Gossip | PushPull


def decode_swim_message(data: Any) -> SwimMessage:
    """A SWIM message from its wire dict, or a ProtocolError naming what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("k"), str):
        raise ProtocolError("a SWIM message must be a map with a string 'k'")
    kind = data["k"]
    what = f"SWIM message {kind!r}"
    if kind == Ping.KIND:
        gossip = _deltas(data, "gossip", what, MAX_GOSSIP)
        return Ping(wire_int(data, "seq", what, 0, MAX_SEQ), wire_str(data, "target", what), gossip)
    if kind == Ack.KIND:
        return Ack(
            wire_int(data, "seq", what, 0, MAX_SEQ), _deltas(data, "gossip", what, MAX_GOSSIP)
        )
    if kind == Nack.KIND:
        return Nack(wire_int(data, "seq", what, 0, MAX_SEQ))
    if kind == PingReq.KIND:
        target = PeerRecord.from_wire(data.get("target"))
        gossip = _deltas(data, "gossip", what, MAX_GOSSIP)
        return PingReq(wire_int(data, "seq", what, 0, MAX_SEQ), target, gossip)
    if kind == Gossip.KIND:
        return Gossip(_deltas(data, "gossip", what, MAX_GOSSIP))
    if kind == PushPull.KIND:
        reply = data.get("reply")
        if not isinstance(reply, bool):
            raise ProtocolError(f"{what} 'reply' must be a boolean")
        return PushPull(_deltas(data, "state", what, MAX_STATE), reply)
    raise ProtocolError(f"unknown SWIM message kind {kind!r}")
