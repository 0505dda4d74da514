"""A deterministic discrete-event simulator that drives the sans-IO cores on virtual time.

One :class:`Simulator` holds thousands of :class:`~._node.SimNode` objects, a heap of events
(``heapq`` of ``(time, counter, kind, node, data)``) and a seeded :class:`NetworkModel`. The
cores run unchanged: their :class:`~synapse_p2p.membership._records.Send` actions become
delivery events after a sampled one-way latency (or are lost), and every message the receiver
gets was ``to_wire()``-encoded and decoded again, as the live driver will do. Bytes are the size
of the msgpack encoding of the wire dict (measured when ``measure_bytes`` is set). With
``roundtrip`` every message travels as its wire dict and is decoded by the receiver, as the live
driver will do; without it the message objects travel as they are (much faster at 10,000
nodes; the codecs are tested on their own and in roundtrip runs).

View and tree messages keep their order per link (they run over connections, like TCP);
SWIM messages may overtake each other. Each node is a single server: a message or timer waits
while the node is busy, and handling it takes ``service_time`` (``slow_factor`` times that on a
slow node). Same seed, same run.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack

if TYPE_CHECKING:
    from ._node import SimNode

__all__ = ["LAN", "WAN", "NetworkModel", "Simulator"]

_DELIVER, _TICK, _CALL, _CONN_FAILED = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class NetworkModel:
    """The network and the hosts: latency ``base + Exp(jitter)`` one way, ``loss`` per message,
    ``service_time`` per handled message or timer (``slow_factor`` times on slow nodes)."""

    base_latency: float = 0.0002
    jitter: float = 0.0005
    loss: float = 0.0
    service_time: float = 0.0005
    slow_factor: float = 10.0


LAN = NetworkModel()
WAN = NetworkModel(base_latency=0.010, jitter=0.020)


@dataclass
class Simulator:
    """The event loop; see the module documentation."""

    model: NetworkModel = field(default_factory=NetworkModel)
    seed: int = 0
    measure_bytes: bool = False
    roundtrip: bool = False  # deliver to_wire() dicts (decoded by the receiver), not objects
    now: float = 0.0
    nodes: dict[str, SimNode] = field(default_factory=dict)
    messages: Counter[str] = field(default_factory=Counter)
    items: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    partition: dict[str, int] | None = None  # node id -> group; messages cross no groups
    #: When set, the distinct peers each node sends SWIM messages to (what a TCP driver would
    #: need connections to), by sender id.
    swim_peers: dict[str, set[str]] | None = None
    #: SWIM messages sent to a peer outside the sender's active view (while ``swim_peers``).
    swim_off_view: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._heap: list[tuple[float, int, int, str, Any]] = []
        self._counter = 0
        self._packer = msgpack.Packer(use_bin_type=True)
        self._fifo: dict[tuple[str, str], float] = {}

    # -- scheduling ----------------------------------------------------------------------------

    def push(self, when: float, kind: int, node_id: str, data: Any = None) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (when, self._counter, kind, node_id, data))

    def call_at(self, when: float, function: Callable[[], None]) -> None:
        self.push(when, _CALL, "", function)

    def schedule_tick(self, node: SimNode, when: float) -> None:
        if when < node.tick_at:
            node.tick_at = when
            self.push(when, _TICK, node.id, when)

    def latency(self) -> float:
        return self.model.base_latency + self.rng.expovariate(1.0 / self.model.jitter)

    def send(self, src: SimNode, dst_id: str, message: Any, depart: float) -> None:
        kind = message.KIND
        self.messages[kind] += 1
        if self.swim_peers is not None and kind.startswith("sw."):
            self.swim_peers.setdefault(src.id, set()).add(dst_id)
            self.swim_off_view += dst_id not in src.views.active
        n_items = getattr(message, "items", None)
        if n_items is not None:
            self.items[kind] += len(n_items)
        if self.measure_bytes or self.roundtrip:
            wire = message.to_wire()
            self.bytes[kind] += len(self._packer.pack(wire))
            if self.roundtrip:
                message = wire
        dst = self.nodes.get(dst_id)
        if dst is None or not dst.up:
            if kind.startswith("hv."):  # a view connection to a dead node fails
                self.push(depart + 2 * self.latency(), _CONN_FAILED, src.id, dst_id)
            return
        if self.partition is not None and self.partition.get(src.id) != self.partition.get(dst_id):
            self.lost += 1
            return
        if self.model.loss and self.rng.random() < self.model.loss:
            self.lost += 1
            return
        arrive = depart + self.latency()
        if not kind.startswith("sw."):  # views and trees: FIFO per link, like TCP
            link = (src.id, dst_id)
            arrive = max(arrive, self._fifo.get(link, 0.0))
            self._fifo[link] = arrive
        self.push(arrive, _DELIVER, dst_id, (src.id, message))

    # -- running -------------------------------------------------------------------------------

    def run_until(self, end: float, stop: Callable[[], bool] | None = None) -> None:
        """Process events up to virtual time ``end`` (or until ``stop()`` is true)."""
        heap = self._heap
        nodes = self.nodes
        service = self.model.service_time
        while heap and heap[0][0] <= end:
            when, _, kind, node_id, data = heapq.heappop(heap)
            self.now = when
            if kind == _CALL:
                data()
                if stop is not None and stop():
                    return
                continue
            node = nodes.get(node_id)
            if node is None or not node.up:
                continue
            if kind == _TICK and data != node.tick_at:
                continue  # superseded by an earlier tick
            if node.busy_until > when:
                if kind == _TICK:
                    node.tick_at = node.busy_until
                    data = node.busy_until
                self.push(node.busy_until, kind, node_id, data)
                continue
            cost = service * (self.model.slow_factor if node.slow else 1.0)
            node.busy_until = when + cost
            depart = when + cost
            if kind == _DELIVER:
                node.deliver(when, depart, data[0], data[1])
            elif kind == _TICK:
                node.tick_at = float("inf")
                node.tick(when, depart)
            else:
                node.connection_failed(when, depart, data)
            if stop is not None and stop():
                return
        self.now = max(self.now, end)

    def reset_counters(self) -> None:
        self.messages.clear()
        self.items.clear()
        self.bytes.clear()
        self.lost = 0

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.up]
