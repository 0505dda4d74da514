"""Plumtree messages: frozen dataclasses with validated, bounded dict codecs.

``{"k": KIND, "items": [...]}``; every kind carries a batch (one message per link per step).
Payloads are opaque to the core: whatever msgpack can carry (the driver bounds the frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ProtocolError
from ..membership._records import WireMessage, wire_list

__all__ = [
    "MAX_ITEMS",
    "Eager",
    "EagerItem",
    "Graft",
    "IHave",
    "PlumtreeMessage",
    "Prune",
    "Replies",
    "ReplyItem",
    "decode_plumtree_message",
]

MAX_ITEMS = 1024
MAX_MID = 256
MAX_ROUND = 1 << 16


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_MID:
        raise ProtocolError(f"{what} must be a string of at most {MAX_MID} characters")
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ROUND:
        raise ProtocolError(f"{what} must be an int in 0..{MAX_ROUND}")
    return value


@dataclass(frozen=True, slots=True)
class EagerItem:
    mid: str
    origin: str
    round: int  # hops from the origin
    payload: Any


@dataclass(frozen=True, slots=True)
class ReplyItem:
    mid: str  # the message replied to
    origin: str  # its origin, where the reply is going
    replier: str
    payload: Any


@dataclass(frozen=True, slots=True)
class Eager(WireMessage):
    KIND = "pt.eager"
    items: tuple[EagerItem, ...]

    def to_wire(self) -> dict[str, Any]:
        return {
            "k": self.KIND,
            "items": [[i.mid, i.origin, i.round, i.payload] for i in self.items],
        }


@dataclass(frozen=True, slots=True)
class IHave(WireMessage):
    KIND = "pt.ihave"
    items: tuple[tuple[str, int], ...]  # (mid, round)

    def to_wire(self) -> dict[str, Any]:
        return {"k": self.KIND, "items": [[mid, rnd] for mid, rnd in self.items]}


@dataclass(frozen=True, slots=True)
class Graft(WireMessage):
    KIND = "pt.graft"
    items: tuple[str, ...]  # mids wanted

    def to_wire(self) -> dict[str, Any]:
        return {"k": self.KIND, "items": list(self.items)}


@dataclass(frozen=True, slots=True)
class Prune(WireMessage):
    KIND = "pt.prune"

    def to_wire(self) -> dict[str, Any]:
        return {"k": self.KIND}


@dataclass(frozen=True, slots=True)
class Replies(WireMessage):
    KIND = "pt.replies"
    items: tuple[ReplyItem, ...]

    def to_wire(self) -> dict[str, Any]:
        items = [[i.mid, i.origin, i.replier, i.payload] for i in self.items]
        return {"k": self.KIND, "items": items}


PlumtreeMessage = Eager | IHave | Graft | Prune | Replies


def _rows(data: dict[str, Any], what: str, width: int) -> list[list[Any]]:
    rows = wire_list(data, "items", what, MAX_ITEMS)
    for row in rows:
        if not isinstance(row, list) or len(row) != width:
            raise ProtocolError(f"{what} items must be lists of {width}")
    return rows


def decode_plumtree_message(data: Any) -> PlumtreeMessage:
    """A Plumtree message from its wire dict, or a ProtocolError naming what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("k"), str):
        raise ProtocolError("a Plumtree message must be a map with a string 'k'")
    kind = data["k"]
    what = f"Plumtree message {kind!r}"
    if kind == Eager.KIND:
        return Eager(
            tuple(
                EagerItem(_str(m, "mid"), _str(o, "origin"), _int(r, "round"), p)
                for m, o, r, p in _rows(data, what, 4)
            )
        )
    if kind == IHave.KIND:
        return IHave(tuple((_str(m, "mid"), _int(r, "round")) for m, r in _rows(data, what, 2)))
    if kind == Graft.KIND:
        return Graft(tuple(_str(m, "mid") for m in wire_list(data, "items", what, MAX_ITEMS)))
    if kind == Prune.KIND:
        return Prune()
    if kind == Replies.KIND:
        return Replies(
            tuple(
                ReplyItem(_str(m, "mid"), _str(o, "origin"), _str(r, "replier"), p)
                for m, o, r, p in _rows(data, what, 4)
            )
        )
    raise ProtocolError(f"unknown Plumtree message kind {kind!r}")
