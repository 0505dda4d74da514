"""One simulated node: the three cores and the glue a live driver needs between them.

:meth:`SimNode.apply` is the whole driver contract in a few lines: ``Send`` goes on the
network, ``Connect``/``Disconnect`` keep the connection set, view changes reach the broadcast
tree, member changes reach the views (passive records, size estimate) and the observer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from ..conversations._plumtree import Deliver, Plumtree, PlumtreeConfig, ReplyReceived
from ..conversations._plumtree_wire import decode_plumtree_message
from ..membership._records import (
    Connect,
    Disconnect,
    MemberDown,
    MemberUp,
    NeighborDown,
    NeighborUp,
    PeerRecord,
    Send,
)
from ..membership._swim import Swim, SwimConfig
from ..membership._swim_wire import decode_swim_message
from ..membership._views import HyParView, ViewConfig
from ..membership._views_wire import decode_view_message

if TYPE_CHECKING:
    from ._network import Simulator

__all__ = ["Observer", "SimNode"]

VIEW_TICK = 1.0


class Observer(Protocol):
    """What a scenario watches; every method is called at the node's virtual time."""

    def member_up(self, node: SimNode, peer: PeerRecord) -> None: ...
    def member_down(self, node: SimNode, peer: PeerRecord, reason: str) -> None: ...
    def delivered(self, node: SimNode, event: Deliver) -> list[Any] | None: ...
    def replied(self, node: SimNode, event: ReplyReceived) -> None: ...


class SimNode:
    __slots__ = (
        "busy_until",
        "connections",
        "id",
        "max_connections",
        "next_views",
        "observer",
        "plumtree",
        "record",
        "sim",
        "slow",
        "swim",
        "tick_at",
        "up",
        "views",
    )

    def __init__(
        self,
        sim: Simulator,
        record: PeerRecord,
        observer: Observer,
        *,
        views: ViewConfig,
        swim: SwimConfig | None,
        plumtree: PlumtreeConfig,
        seed: int,
        swim_over_views: bool = False,
    ) -> None:
        self.sim = sim
        self.id = record.id
        self.record = record
        self.observer = observer
        self.views = HyParView(record, views, seed=seed)
        neighbors = self.views.active.keys if swim_over_views else None
        self.swim = (
            Swim(record, swim, seed=seed + 1, neighbors=neighbors) if swim is not None else None
        )
        self.plumtree = Plumtree(record.id, plumtree)
        self.up = False
        self.slow = False
        self.busy_until = 0.0
        self.tick_at = math.inf
        self.next_views = 0.0
        self.connections: set[str] = set()
        self.max_connections = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, now: float, contacts: list[PeerRecord]) -> None:
        self.up = True
        actions: list[Any] = list(self.views.join(now, contacts))
        if self.swim is not None:
            actions += self.swim.join(now, contacts)
        self.apply(now, now, actions)
        self.next_views = now + VIEW_TICK
        self._reschedule(now)

    def crash(self) -> None:
        """The process dies: its connections close (neighbors notice after a latency)."""
        self.up = False
        for peer_id in sorted(self.connections):  # (a set: its order follows the hash seed)
            self.sim.push(self.sim.now + self.sim.latency(), 3, peer_id, self.id)

    def leave(self, now: float) -> None:
        if self.swim is not None:
            self.apply(now, now, self.swim.leave(now))
        for peer in self.views.neighbors():
            self.sim.push(now + self.sim.latency(), 3, peer.id, self.id)
        self.up = False

    # -- events --------------------------------------------------------------------------------

    def deliver(self, now: float, depart: float, from_id: str, message: Any) -> None:
        """Handle ``message`` (a core message, or its wire dict in roundtrip runs)."""
        if isinstance(message, dict):
            kind: str = message.get("k", "")
            if kind.startswith("hv."):
                message = decode_view_message(message)
            elif kind.startswith("sw."):
                message = decode_swim_message(message)
            else:
                message = decode_plumtree_message(message)
        kind = message.KIND
        actions: Iterable[Any]
        if kind.startswith("hv."):
            actions = self.views.handle(now, from_id, message)
        elif kind.startswith("sw."):
            if self.swim is None:
                return
            actions = self.swim.handle(now, from_id, message)
        else:
            actions = self.plumtree.handle(now, from_id, message)
        self.apply(now, depart, actions)
        self._reschedule(now)

    def tick(self, now: float, depart: float) -> None:
        actions: list[Any] = []
        if now >= self.next_views:
            self.next_views = now + VIEW_TICK
            actions += self.views.tick(now)
        if self.swim is not None:
            actions += self.swim.tick(now)
        actions += self.plumtree.tick(now)
        self.apply(now, depart, actions)
        self._reschedule(now)

    def connection_failed(self, now: float, depart: float, peer_id: str) -> None:
        self.connections.discard(peer_id)
        actions = list(self.views.on_connection_failed(now, peer_id))
        if self.swim is not None and self.swim.neighbors is not None:
            actions += self.swim.unreachable(now, peer_id)
        self.apply(now, depart, actions)
        self._reschedule(now)

    def _reschedule(self, now: float) -> None:
        when = self.next_views
        if self.swim is not None:
            when = min(when, self.swim.next_wakeup())
        when = min(when, self.plumtree.next_wakeup())
        self.sim.schedule_tick(self, max(when, now))

    # -- the driver glue -----------------------------------------------------------------------

    def apply(self, now: float, depart: float, actions: Iterable[Any]) -> None:
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            if isinstance(action, Send):
                self.sim.send(self, action.peer.id, action.message, depart)
            elif isinstance(action, Deliver):
                pending += self.observer.delivered(self, action) or ()
            elif isinstance(action, ReplyReceived):
                self.observer.replied(self, action)
            elif isinstance(action, Connect):
                self.connections.add(action.peer.id)
                self.max_connections = max(self.max_connections, len(self.connections))
            elif isinstance(action, Disconnect):
                self.connections.discard(action.peer.id)
            elif isinstance(action, NeighborUp):
                self.plumtree.neighbor_up(action.peer)
            elif isinstance(action, NeighborDown):
                self.plumtree.neighbor_down(action.peer.id)
            elif isinstance(action, MemberUp):
                self.views.offer(action.peer)
                if self.swim is not None:
                    self.views.size_estimate = self.swim.size()
                self.observer.member_up(self, action.peer)
            elif isinstance(action, MemberDown):
                self.observer.member_down(self, action.peer, action.reason)
                pending += self.views.remove(now, action.peer.id)
