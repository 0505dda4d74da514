"""Plumtree epidemic broadcast trees (Leitao, Pereira, Rodrigues, SRDS 2007), sans-IO.

Runs over the HyParView active view (the driver reports :class:`NeighborUp` /
:class:`NeighborDown`). Each neighbor link is *eager* (messages are pushed along it) or *lazy*
(only announced, in IHAVE batches flushed every ``lazy_interval``, to neighbors that have not
shown they hold the message: one that sent or announced it is not told; with
``lazy_fanout``, to that many of them per interval, in turn). New links start eager. A
duplicate arriving eagerly turns its link lazy on both ends (PRUNE), so the eager links settle
into a spanning tree and one broadcast costs about N - 1 eager messages. An IHAVE for a message
not received within ``graft_timeout`` GRAFTs the link (it becomes eager again and the message is
sent); the next announcer is tried ``graft_retry`` later. Message ids are remembered in a
bounded seen-set (``seen_max``, oldest forgotten first) so each message is delivered once.

Replies (an ask's ACKs and answers) go back to the origin of the message they answer: straight
to it when it is an active neighbor, otherwise to the neighbor the message came from (the
reverse tree path), hop by hop, grouped per link. If that neighbor is gone, the reply is
addressed to ``PeerRecord(origin, "", 0)`` and the driver resolves the id from membership.

:meth:`Plumtree.broadcast`, :meth:`Plumtree.reply`, :meth:`Plumtree.handle` and
:meth:`Plumtree.tick` return actions: :class:`Send` and, for the application,
:class:`Deliver` (a broadcast arrived, once per message id) and :class:`ReplyReceived`
(a reply reached its origin).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..membership._records import PeerRecord, Send
from ._plumtree_wire import (
    Eager,
    EagerItem,
    Graft,
    IHave,
    PlumtreeMessage,
    Prune,
    Replies,
    ReplyItem,
)

__all__ = ["Deliver", "Plumtree", "PlumtreeAction", "PlumtreeConfig", "ReplyReceived"]


@dataclass(frozen=True, slots=True)
class PlumtreeConfig:
    """Plumtree parameters (the paper leaves timers to the deployment; these suit a LAN/site)."""

    lazy_interval: float = 0.1  # IHAVE batches leave this often
    graft_timeout: float = 0.25  # the paper's timeout 1: wait for the eager copy this long
    graft_retry: float = 0.1  # the paper's timeout 2: then try the next announcer
    seen_max: int = 65536
    cache_max: int = 4096  # recent payloads kept to answer GRAFTs
    max_batch: int = 1024  # items per message (the wire bound)
    optimize_threshold: int = 3  # an IHAVE this many hops shorter swaps the tree link
    reply_delay: float = 0.005  # replies to one next hop are gathered this long, then sent
    #: Lazy neighbors announced to per ``lazy_interval`` (0: all, as in the paper). The
    #: others' ids wait for their turn (round-robin), and meanwhile those that neighbor shows
    #: it holds are dropped: a stream costs each node this many IHAVE messages per interval
    #: whatever its view, and a node that lacks a message still hears of it from each of its
    #: neighbors in turn.
    lazy_fanout: int = 0

    @classmethod
    def wan(cls) -> PlumtreeConfig:
        """Timers for links of tens of milliseconds (sites apart): the eager copy through a
        deep branch may come half a second after a shallower neighbor's announcement, and a
        GRAFT before it adds a link the next message prunes again."""
        return cls(graft_timeout=0.6, graft_retry=0.2)


@dataclass(frozen=True, slots=True)
class Deliver:
    mid: str
    origin: str
    round: int
    payload: Any


@dataclass(frozen=True, slots=True)
class ReplyReceived:
    mid: str
    replier: str
    payload: Any


PlumtreeAction = Send | Deliver | ReplyReceived


@dataclass(slots=True)
class _Seen:
    parent: str  # who sent it to us ("" if we are the origin)
    origin: str
    round: int


@dataclass
class Plumtree:
    """One node's broadcast tree state; see the module documentation."""

    node_id: str
    config: PlumtreeConfig = field(default_factory=PlumtreeConfig)
    neighbors: dict[str, PeerRecord] = field(default_factory=dict)
    # insertion-ordered sets (a dict's keys): pushes and announcements go out in the order the
    # links came, never in string-hash order, so a seeded simulation is the same in every run
    eager: dict[str, None] = field(default_factory=dict)
    lazy: dict[str, None] = field(default_factory=dict)
    duplicates: int = 0
    unannounced: int = 0  # queued ids dropped: ``tick``'s ``reachable`` rejected the neighbor
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _cache: dict[str, EagerItem] = field(default_factory=dict)
    _announced: dict[str, list[str]] = field(default_factory=dict)  # mid -> announcers
    _timers: dict[str, float] = field(default_factory=dict)  # mid -> graft deadline
    _lazy_queue: dict[str, dict[str, int]] = field(default_factory=dict)  # peer -> mid -> round
    _next_flush: float = math.nan
    _reply_queue: dict[str, list[ReplyItem]] = field(default_factory=dict)
    _reply_flush: float = math.inf

    # -- neighbors -----------------------------------------------------------------------------

    def neighbor_up(self, peer: PeerRecord) -> None:
        self.neighbors[peer.id] = peer
        if peer.id not in self.lazy:
            self.eager[peer.id] = None

    def neighbor_down(self, peer_id: str) -> None:
        self.neighbors.pop(peer_id, None)
        self.eager.pop(peer_id, None)
        self.lazy.pop(peer_id, None)
        self._lazy_queue.pop(peer_id, None)
        for announcers in self._announced.values():
            if peer_id in announcers:
                announcers.remove(peer_id)

    # -- driver entry points -------------------------------------------------------------------

    def broadcast(self, now: float, mid: str, payload: Any) -> list[PlumtreeAction]:
        """Send a new message to every node; it is delivered here too."""
        if mid in self._seen:
            return []
        item = EagerItem(mid, self.node_id, 0, payload)
        out: dict[str, list[EagerItem]] = {}
        actions = self._receive(now, "", item, out)
        return actions + self._flush_eager(out)

    def reply(self, now: float, mid: str, payload: Any) -> list[PlumtreeAction]:
        """Send ``payload`` back to the origin of ``mid`` (which this node delivered)."""
        seen = self._seen.get(mid)
        if seen is None:
            return []
        item = ReplyItem(mid, seen.origin, self.node_id, payload)
        return self._route_replies(now, [item])

    def handle(self, now: float, from_id: str, message: PlumtreeMessage) -> list[PlumtreeAction]:
        """React to ``message`` from the neighbor ``from_id`` (a push from a member that is
        not a neighbor is delivered and passed on too, and prunes nothing)."""
        if isinstance(message, Replies):
            return self._route_replies(now, list(message.items))
        if from_id not in self.neighbors:
            if not isinstance(message, Eager):
                return []  # not (or no longer) a neighbor: the tree runs over the active view
            from_id = ""  # a push from a member not (yet) our neighbor: new items go on
        if isinstance(message, Eager):
            out: dict[str, list[EagerItem]] = {}
            actions: list[PlumtreeAction] = []
            for item in message.items:
                actions += self._receive(now, from_id, item, out)
            return actions + self._flush_eager(out)
        if isinstance(message, IHave):
            actions = []
            for mid, rnd in message.items:
                seen = self._seen.get(mid)
                if seen is not None:
                    self._has(from_id, mid)
                    actions += self._optimize(from_id, seen, rnd)
                    continue
                self._announced.setdefault(mid, []).append(from_id)
                self._timers.setdefault(mid, now + self.config.graft_timeout)
            return actions
        if isinstance(message, Graft):
            self._make_eager(from_id)
            items = [self._cache[m] for m in message.items if m in self._cache]
            return self._flush_eager({from_id: items}) if items else []
        self.eager.pop(from_id, None)  # Prune
        self.lazy[from_id] = None
        return []

    def tick(
        self, now: float, reachable: Callable[[str], bool] | None = None
    ) -> list[PlumtreeAction]:
        """Flush IHAVE batches when due and GRAFT messages announced but not received.
        ``reachable`` (the driver's): lazy neighbors it rejects are not announced to; their
        queued ids are dropped and counted in :attr:`unannounced`."""
        actions: list[PlumtreeAction] = []
        if now >= self._reply_flush:
            actions += self._flush_replies()
        if math.isnan(self._next_flush) or now >= self._next_flush:
            self._next_flush = now + self.config.lazy_interval
            if reachable is not None:
                for peer_id in [p for p in self._lazy_queue if not reachable(p)]:
                    self.unannounced += len(self._lazy_queue.pop(peer_id))
            due = list(self._lazy_queue)  # (oldest queue first: a flushed one queues anew last)
            if self.config.lazy_fanout > 0:
                due = due[: self.config.lazy_fanout]
            for peer_id in due:
                queued = self._lazy_queue.pop(peer_id)
                peer = self.neighbors.get(peer_id)
                items = list(queued.items())
                for start in range(0, len(items), self.config.max_batch):
                    if peer is not None:
                        batch = tuple(items[start : start + self.config.max_batch])
                        actions.append(Send(peer, IHave(batch)))
        grafts: dict[str, list[str]] = {}
        for mid, deadline in list(self._timers.items()):
            if deadline > now:
                continue
            announcers = self._announced.get(mid, [])
            if not announcers:
                del self._timers[mid]
                self._announced.pop(mid, None)
                continue
            grafts.setdefault(announcers.pop(0), []).append(mid)
            self._timers[mid] = now + self.config.graft_retry
        for peer_id, mids in grafts.items():
            self._make_eager(peer_id)
            actions.append(Send(self.neighbors[peer_id], Graft(tuple(mids))))
        return actions

    def has_seen(self, mid: str) -> bool:
        """Whether message ``mid`` was delivered here (and is still remembered)."""
        return mid in self._seen

    def next_wakeup(self) -> float:
        times = [*self._timers.values(), self._reply_flush]
        if self._lazy_queue:
            times.append(self._next_flush if not math.isnan(self._next_flush) else 0.0)
        return min(times, default=math.inf)

    # -- internals -----------------------------------------------------------------------------

    def _receive(
        self, now: float, from_id: str, item: EagerItem, out: dict[str, list[EagerItem]]
    ) -> list[PlumtreeAction]:
        if item.mid in self._seen:
            self.duplicates += 1
            self._has(from_id, item.mid)
            if from_id and from_id in self.eager:
                self.eager.pop(from_id, None)
                self.lazy[from_id] = None
                return [Send(self.neighbors[from_id], Prune())]
            return []
        self._remember(item.mid, _Seen(from_id, item.origin, item.round))
        self._timers.pop(item.mid, None)
        self._announced.pop(item.mid, None)
        if from_id:
            self._make_eager(from_id)
        onward = EagerItem(item.mid, item.origin, item.round + 1, item.payload)
        self._cache[item.mid] = onward
        if len(self._cache) > self.config.cache_max:
            del self._cache[next(iter(self._cache))]
        for peer_id in self.eager:
            if peer_id != from_id and peer_id != item.origin:
                out.setdefault(peer_id, []).append(onward)
        for peer_id in self.lazy:
            if peer_id != from_id and peer_id != item.origin:
                self._lazy_queue.setdefault(peer_id, {})[item.mid] = onward.round
        return [Deliver(item.mid, item.origin, item.round, item.payload)]

    def _optimize(self, announcer: str, seen: _Seen, rnd: int) -> list[PlumtreeAction]:
        """The paper's optimization: a lazy link much closer to the origin than our eager
        parent replaces it in the tree (GRAFT with no ids to it, PRUNE to the parent)."""
        parent = seen.parent
        if (
            not parent
            or parent not in self.eager
            or announcer in self.eager
            or rnd + self.config.optimize_threshold > seen.round
        ):
            return []
        self._make_eager(announcer)
        self.eager.pop(parent, None)
        self.lazy[parent] = None
        seen.parent = announcer
        seen.round = rnd
        return [
            Send(self.neighbors[announcer], Graft(())),
            Send(self.neighbors[parent], Prune()),
        ]

    def _has(self, peer_id: str, mid: str) -> None:
        """``peer_id`` has ``mid`` (it sent or announced it): no need to announce it there."""
        queued = self._lazy_queue.get(peer_id)
        if queued is not None and queued.pop(mid, None) is not None and not queued:
            del self._lazy_queue[peer_id]

    def _remember(self, mid: str, seen: _Seen) -> None:
        self._seen[mid] = seen
        if len(self._seen) > self.config.seen_max:
            del self._seen[next(iter(self._seen))]

    def _make_eager(self, peer_id: str) -> None:
        if peer_id in self.neighbors:
            self.lazy.pop(peer_id, None)
            self.eager[peer_id] = None

    def _flush_eager(self, out: dict[str, list[EagerItem]]) -> list[PlumtreeAction]:
        step = self.config.max_batch
        return [
            Send(self.neighbors[peer_id], Eager(tuple(items[i : i + step])))
            for peer_id, items in out.items()
            for i in range(0, len(items), step)
        ]

    def _route_replies(self, now: float, items: list[ReplyItem]) -> list[PlumtreeAction]:
        actions: list[PlumtreeAction] = []
        for item in items:
            if item.origin == self.node_id:
                actions.append(ReplyReceived(item.mid, item.replier, item.payload))
                continue
            seen = self._seen.get(item.mid)
            if item.origin in self.neighbors:
                hop = item.origin
            elif seen is not None and seen.parent in self.neighbors:
                hop = seen.parent
            else:
                hop = item.origin  # off the tree: straight to the origin by id
            self._reply_queue.setdefault(hop, []).append(item)
        if self._reply_queue and self._reply_flush == math.inf:
            self._reply_flush = now + self.config.reply_delay
        return actions

    def _flush_replies(self) -> list[PlumtreeAction]:
        actions: list[PlumtreeAction] = []
        step = self.config.max_batch
        for hop, batch in self._reply_queue.items():
            peer = self.neighbors.get(hop, PeerRecord(hop, "", 0))
            for i in range(0, len(batch), step):
                actions.append(Send(peer, Replies(tuple(batch[i : i + step]))))
        self._reply_queue.clear()
        self._reply_flush = math.inf
        return actions
