"""``node.peers``: the verified, alive members by id, each with the ``last_seen`` of the latest
news of its life this node holds.

A member's ``last_seen`` is the wall-clock time of the latest evidence that it is alive: its
own call or answer, or (gossiped) a peer's contact with it. With partial views a member outside
the active view rarely calls this node itself, so its direct contact alone would leave
``last_seen`` at its join. The table's ``heard`` (monotonic) moves with every piece of news, so
the record shown is brought up to it when read (from another thread, with the offset between
the clocks last taken in the node's event loop: another thread's loop has a clock of its own,
and trio's starts hours away from the system's monotonic clock): a copy with that
``last_seen`` if it is newer, which the listing does not keep (the record it holds may be the
one the nodes of the process share: see ``PeerState.hold``), and nothing at all when nobody
reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio

from ..types import Peer

if TYPE_CHECKING:
    from ._table import PeerTable

__all__ = ["Members", "as_heard"]

#: A ``last_seen`` more than this ahead of this node's wall clock (seconds) was stamped by
#: another node of the process, whose clock may differ (see ``PeerState.hold``).
AHEAD = 1.0
#: The offset of this node's wall clock from the event loop's is taken anew only when it
#: moved by more than this (seconds): two clocks read a moment apart differ by microseconds
#: at each read, and ``last_seen`` must not move without news.
DRIFT = 0.001


def as_heard(peer: Peer, heard: float, shift: float, wall: float) -> Peer:
    """``peer`` with ``last_seen`` the latest news of its life here (``heard``, on the event
    loop's clock; ``shift``: this node's wall clock less that clock, see :meth:`Members.shift`;
    ``wall``: this node's wall clock now) if that is newer than the one it has, or if the one
    it has is ahead of this clock; else ``peer`` itself."""
    seen = heard + shift
    if seen <= peer.last_seen < wall + AHEAD:
        return peer
    return replace(peer, last_seen=seen)


class Members(Mapping[str, Peer]):
    """A read-only live view of ``records`` (id -> peer record, held by the membership), with
    ``last_seen`` taken from ``table()``'s news of life (``heard``) when that is newer."""

    def __init__(
        self,
        records: dict[str, Peer],
        table: Callable[[], PeerTable],
        wall_clock: Callable[[], float],
    ) -> None:
        self._records = records
        self._table = table
        self._wall_clock = wall_clock
        self._shift: float | None = None
        #: The thread whose event loop took :attr:`_shift` (the node's): reads elsewhere use
        #: the offset it took, never their own loop's clock.
        self._thread: int | None = None

    def shift(self, now: float, wall: float, *, keep: bool = True) -> float:
        """This node's wall clock less the event loop's (``wall`` and ``now``, read together),
        as last taken unless it moved by more than :data:`DRIFT`. ``keep``: take it (the
        membership does, in its own loop, and notes the thread); a read of ``node.peers`` does
        only the first time. Once the membership took it, reads in other threads use it and
        do not come here (their event loop's clock is not this node's)."""
        shift, held = wall - now, self._shift
        if keep:
            self._thread = threading.get_ident()
        if held is not None and abs(shift - held) <= DRIFT:
            return held
        if keep or held is None:
            self._shift = shift
        return shift

    def restart(self, now: float, wall: float) -> None:
        """The membership starts (again) in this thread's event loop: the offset is taken anew
        here, and reads from other threads use it (a node served again elsewhere must not keep
        its earlier loop's offset or thread)."""
        self._shift = None
        self.shift(now, wall)

    def __getitem__(self, node_id: str) -> Peer:
        peer = self._records[node_id]
        state = self._table().get(node_id)
        if state is None or not state.alive:
            return peer
        wall = self._wall_clock()
        owner = self._thread
        try:
            if owner is not None and owner != threading.get_ident():
                raise RuntimeError("another thread's event loop: not this node's clock")
            shift = self.shift(anyio.current_time(), wall, keep=False)
        except RuntimeError:  # read outside the node's event loop: the offset it last had there
            if self._shift is None:
                return peer
            shift = self._shift
        return as_heard(peer, state.heard, shift, wall)

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._records

    def __repr__(self) -> str:
        return f"Members({len(self._records)} alive)"
