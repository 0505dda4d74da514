"""A simulated swarm and the measurements the scale targets are stated in.

:class:`Swarm` builds ``n`` :class:`SimNode` s (ids ``n00000``.., one IPv4 address each), starts
them (each joins a random node already started), and measures: time to full membership (every
live node lists every live node), time for every live node to see a crash as dead, false
accusations (a live node declared dead by anyone), time and messages for one broadcast to reach
99% / 100% of live nodes (eager items and lazy announcements counted apart), the time for an
ask's origin to have every reply, idle messages and bytes per node per second, active view
sizes and connections per node.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from ..conversations._plumtree import Deliver, PlumtreeConfig, ReplyReceived
from ..membership._records import PeerRecord
from ..membership._swim import SwimConfig
from ..membership._views import ViewConfig
from ._network import LAN, NetworkModel, Simulator
from ._node import SimNode

__all__ = ["BroadcastResult", "Swarm", "ViewSizes"]

CHECK_EVERY = 0.05


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    reached: int  # live nodes that delivered it
    live: int
    t99: float  # seconds from the broadcast to 99% of live nodes (inf if never)
    t9999: float
    t100: float
    eager: int  # eager items sent (one per message per link)
    lazy: int  # IHAVE announcements sent
    grafts: int
    prunes: int
    replies: int  # replies the origin has (asks only)
    t_replies: float  # until the origin had every reply (asks only)


@dataclass(frozen=True, slots=True)
class ViewSizes:
    active_min: int
    active_mean: float
    active_max: int
    passive_mean: float
    max_connections: int  # the most connections any node ever held open at once


@dataclass
class Swarm:
    """``n`` simulated nodes on one :class:`Simulator`; see the module documentation."""

    n: int
    seed: int = 0
    model: NetworkModel = LAN
    views: ViewConfig = field(default_factory=ViewConfig)
    swim: SwimConfig | None = field(default_factory=SwimConfig)
    #: SWIM only over each node's active view (``Swim(neighbors=...)``), as a TCP driver runs it.
    swim_over_views: bool = False
    plumtree: PlumtreeConfig = field(default_factory=PlumtreeConfig)
    measure_bytes: bool = False
    roundtrip: bool = False
    false_accusations: int = 0
    last_start: float = 0.0

    def __post_init__(self) -> None:
        self.sim = Simulator(
            self.model, seed=self.seed, measure_bytes=self.measure_bytes, roundtrip=self.roundtrip
        )
        self.rng = self.sim.rng
        self.order: list[SimNode] = []
        for i in range(self.n):
            address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            record = PeerRecord(f"n{i:05d}", address, 7000, name=f"node-{i}")
            node = SimNode(
                self.sim,
                record,
                self,
                views=self.views,
                swim=self.swim,
                plumtree=self.plumtree,
                seed=self.seed * 1_000_003 + i,
                swim_over_views=self.swim_over_views,
            )
            if self.swim is None:  # no failure detector to count members: tell the views
                node.views.size_estimate = self.n
            self.sim.nodes[record.id] = node
            self.order.append(node)
        self.known: dict[str, int] = {node.id: 0 for node in self.order}
        self.dead_known: dict[str, set[str]] = {}
        self.delivered_at: dict[str, dict[str, float]] = {}
        self.replies_at: dict[str, dict[str, float]] = {}
        self.asks: set[str] = set()
        self._started: list[SimNode] = []

    # -- observer ------------------------------------------------------------------------------

    def member_up(self, node: SimNode, peer: PeerRecord) -> None:
        self.known[node.id] += 1

    def member_down(self, node: SimNode, peer: PeerRecord, reason: str) -> None:
        self.known[node.id] -= 1
        if reason == "dead":
            target = self.sim.nodes.get(peer.id)
            if target is not None and target.up:
                self.false_accusations += 1
            self.dead_known.setdefault(peer.id, set()).add(node.id)

    def delivered(self, node: SimNode, event: Deliver) -> list[Any] | None:
        self.delivered_at.setdefault(event.mid, {})[node.id] = self.sim.now
        if event.mid in self.asks and event.origin != node.id:
            return list(node.plumtree.reply(self.sim.now, event.mid, {"ok": True}))
        return None

    def replied(self, node: SimNode, event: ReplyReceived) -> None:
        self.replies_at.setdefault(event.mid, {})[event.replier] = self.sim.now

    # -- building the swarm --------------------------------------------------------------------

    def start(self, spread: float = 1.0) -> None:
        """Start every node at a random time in ``[0, spread]``; each joins a started node."""
        times = sorted(self.rng.uniform(0, spread) for _ in self.order)
        times[0] = 0.0
        for node, when in zip(self.order, times, strict=True):
            self.sim.call_at(when, functools.partial(self._start, node))
        self.last_start = times[-1]

    def _start(self, node: SimNode) -> None:
        contacts = [self.rng.choice(self._started).record] if self._started else []
        node.start(self.sim.now, contacts)
        self._started.append(node)

    def live(self) -> list[SimNode]:
        return [node for node in self.order if node.up]

    def full_membership(self) -> bool:
        live = self.live()
        want = len(live) - 1
        return len(live) == self.n and all(self.known[node.id] == want for node in live)

    def run_until(self, end: float, condition: Any = None) -> float:
        """Run to virtual time ``end`` or until ``condition()`` (checked every 50 ms)."""
        if condition is None:
            self.sim.run_until(end)
            return self.sim.now
        done = [False]

        def check() -> None:
            if condition():
                done[0] = True
            elif self.sim.now + CHECK_EVERY <= end:
                self.sim.call_at(self.sim.now + CHECK_EVERY, check)

        self.sim.call_at(self.sim.now, check)
        self.sim.run_until(end, stop=lambda: done[0])
        return self.sim.now if done[0] else math.inf

    # -- measurements --------------------------------------------------------------------------

    def converge(self, timeout: float = 60.0, spread: float = 1.0) -> float:
        """Start the swarm; seconds from the last start to full membership (inf if not)."""
        self.start(spread)
        if self.swim is None:
            self.run_until(self.last_start + timeout)
            return math.inf
        end = self.run_until(self.last_start + timeout, self.full_membership)
        return end - self.last_start

    def crash(self, node: SimNode, timeout: float = 60.0) -> float:
        """Crash ``node``; seconds until every live node has it dead (inf if not by timeout)."""
        start = self.sim.now
        node.crash()
        self.dead_known.pop(node.id, None)

        def everyone() -> bool:
            knows = self.dead_known.get(node.id, set())
            return all(other.id in knows for other in self.live())

        end = self.run_until(start + timeout, everyone)
        return end - start

    def broadcast(
        self, origin: SimNode, mid: str, *, ask: bool = False, timeout: float = 10.0
    ) -> BroadcastResult:
        """Broadcast from ``origin``; run until every live node has it (and replied, for asks)."""
        sim = self.sim
        before = (sim.items.copy(), sim.messages.copy())
        if ask:
            self.asks.add(mid)
        start = sim.now
        live = self.live()
        origin.apply(start, start, origin.plumtree.broadcast(start, mid, {"event": mid}))
        origin.sim.schedule_tick(origin, start)

        def done() -> bool:
            got = self.delivered_at.get(mid, {})
            if sum(1 for n in live if n.id in got) < len(live):
                return False
            return not ask or len(self.replies_at.get(mid, {})) >= len(live) - 1

        self.run_until(start + timeout, done)
        self.run_until(sim.now + 1.0)  # let lazy announcements and repairs settle, counted
        got = self.delivered_at.get(mid, {})
        times = sorted(got[n.id] - start for n in live if n.id in got)
        replies = self.replies_at.get(mid, {})
        items, messages = sim.items - before[0], sim.messages - before[1]
        return BroadcastResult(
            reached=len(times),
            live=len(live),
            t99=_quantile(times, len(live), 0.99),
            t9999=_quantile(times, len(live), 0.9999),
            t100=_quantile(times, len(live), 1.0),
            eager=items["pt.eager"],
            lazy=items["pt.ihave"],
            grafts=messages["pt.graft"],
            prunes=messages["pt.prune"],
            replies=len(replies),
            t_replies=(max(replies.values()) - start)
            if ask and len(replies) >= len(live) - 1
            else math.inf,
        )

    def idle(self, duration: float) -> tuple[float, float]:
        """Run ``duration`` seconds; (messages, bytes) per live node per second."""
        self.sim.reset_counters()
        self.run_until(self.sim.now + duration)
        live = max(len(self.live()), 1)
        per = live * duration
        return sum(self.sim.messages.values()) / per, sum(self.sim.bytes.values()) / per

    def swim_contacts(self, duration: float) -> tuple[float, int, int]:
        """Run ``duration`` seconds; the distinct peers a live node sent SWIM messages to in
        that time (mean, max: the connections a driver over TCP would need for them, the
        views' churn included), and how many SWIM messages went to a peer outside the
        sender's active view at the time."""
        self.sim.swim_peers, self.sim.swim_off_view = {}, 0
        self.run_until(self.sim.now + duration)
        peers, self.sim.swim_peers = self.sim.swim_peers, None
        counts = [len(peers.get(n.id, ())) for n in self.live()]
        mean = statistics.fmean(counts) if counts else 0.0
        return mean, max(counts, default=0), self.sim.swim_off_view

    def view_sizes(self) -> ViewSizes:
        live = self.live()
        active = [len(n.views.active) for n in live]
        return ViewSizes(
            active_min=min(active),
            active_mean=statistics.fmean(active),
            active_max=max(active),
            passive_mean=statistics.fmean(len(n.views.passive) for n in live),
            max_connections=max(n.max_connections for n in self.order),
        )


def _quantile(times: list[float], population: int, q: float) -> float:
    need = max(1, math.ceil(q * population))
    return times[need - 1] if len(times) >= need else math.inf
