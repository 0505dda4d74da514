"""Addresses a peer is reached at other than the one it advertises (sans-IO).

A seed behind port forwarding advertises its private address but is reached at the public
one; a node on a multi-homed host advertises one of its addresses and is reached at another.
Once a connection to ``via`` proved a node id, :meth:`Aliases.add` records that the node
advertising ``address`` can be reached at ``via``. The pool then dials ``address`` directly
first (a different node may really be there, on this side of the network); only when that
fails does it dial ``via``, expecting the node id proved there (so an alias never lets another
node answer for it); the direct attempt is :class:`~synapse_p2p.transport._direct.DirectFirst`'s.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["Alias", "Aliases"]

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Alias:
    via: Address
    node_id: str


class Aliases:
    """See the module documentation. At most ``limit`` aliases, least recently added first
    forgotten."""

    def __init__(self, *, limit: int = 1024) -> None:
        self.limit = limit
        self._aliases: OrderedDict[Address, Alias] = OrderedDict()

    def add(self, address: Address, via: Address, node_id: str) -> None:
        """``node_id``, advertising ``address``, proved itself at ``via``. No-op when they are
        the same address; a new ``via`` or id replaces the old one."""
        if address == via:
            return
        current = self._aliases.get(address)
        if current is None or current.via != via or current.node_id != node_id:
            self._aliases[address] = Alias(via, node_id)
        self._aliases.move_to_end(address)
        while len(self._aliases) > self.limit:
            self._aliases.popitem(last=False)

    def remove(self, address: Address) -> None:
        self._aliases.pop(address, None)

    def get(self, address: Address) -> Alias | None:
        return self._aliases.get(address)

    def __len__(self) -> int:
        return len(self._aliases)
