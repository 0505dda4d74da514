"""What a signed peer record says beyond the 9-key peer dict: :class:`RecordExtras`.

The 9-key dict is synapse-p2p 2.5.0's and never changes. Our nodes add, beside the signature
keys (``seq``/``key``/``sig``, see :mod:`synapse_p2p.membership._signing`) and covered by the
same signature:

* ``"relays"``: the relays this node holds a reservation on, ``[[host, port, relay_id],
  ...]`` (at most :data:`MAX_RELAY_HINTS`): a member that verifies the record reaches the node
  through one of them (the relay knows the node by its verified id, so nothing else is needed);
* ``"relay": true``: this node serves as a relay (``Node(relay=True)``), so a private node may
  reserve on it.

Both are absent when empty, and a record without them is signed exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_RELAY_HINTS", "RecordExtras", "RelayHint", "extras_from_wire"]

#: At most this many relays in a record.
MAX_RELAY_HINTS = 4
_MAX_TEXT = 256


@dataclass(frozen=True, slots=True)
class RelayHint:
    """A relay at ``address:port`` (node id ``node_id``) where the record's node is reserved."""

    address: str
    port: int
    node_id: str

    def to_wire(self) -> list[Any]:
        return [self.address, self.port, self.node_id]


@dataclass(frozen=True, slots=True)
class RecordExtras:
    """Our additions to a node's signed record (see the module documentation)."""

    relays: tuple[RelayHint, ...] = ()
    relay: bool = False

    def __bool__(self) -> bool:
        return bool(self.relays) or self.relay

    def to_wire(self) -> dict[str, Any]:
        """The keys carried beside ``seq``/``key``/``sig`` (none when empty)."""
        wire: dict[str, Any] = {}
        if self.relays:
            wire["relays"] = [hint.to_wire() for hint in self.relays]
        if self.relay:
            wire["relay"] = True
        return wire

    def signed(self) -> list[Any]:
        """What the signature covers of them (rebuilt from parsed values on both sides)."""
        return [self.relay, [hint.to_wire() for hint in self.relays]]


def extras_from_wire(data: dict[str, Any]) -> RecordExtras:
    """The extras in map ``data`` (empty when it has none). Raises ``ValueError`` naming the
    key for a malformed one."""
    relay = data.get("relay", False)
    if type(relay) is not bool:
        raise ValueError("peer record 'relay' must be true or false")
    raw = data.get("relays", [])
    if type(raw) is not list or len(raw) > MAX_RELAY_HINTS:
        raise ValueError(f"peer record 'relays' must be a list of at most {MAX_RELAY_HINTS}")
    hints = []
    for item in raw:
        if (
            type(item) is not list
            or len(item) != 3
            or type(item[0]) is not str
            or not 0 < len(item[0]) <= _MAX_TEXT
            or type(item[1]) is not int
            or not 0 < item[1] < 65536
            or type(item[2]) is not str
            or not 0 < len(item[2]) <= _MAX_TEXT
        ):
            raise ValueError("peer record 'relays' entries must be [host, port, relay_node_id]")
        hints.append(RelayHint(item[0], item[1], item[2]))
    return RecordExtras(tuple(hints), relay)
