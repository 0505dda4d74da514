"""Routing strategies and the one ranking rule shared by ``select_agent`` and ``run``.

Everything here is plain computation: no I/O, no clock, no event loop.

The rule. Agents with capacity 0 are never routed. The rest are put in three tiers: agents
with a free slot, agents that are full, and agents demoted after repeated failures. Inside a
tier the strategy orders them:

* ``round_robin``: all equal;
* ``capacity_aware``: most free slots (``capacity - in_flight``) first;
* ``cost_aware``: lowest ``cost_multiplier`` first;
* ``least_loaded``: lowest ``in_flight / capacity`` first.

Agents that compare equal keep discovery order, rotated by a counter that advances by one on
every ``select_agent`` and every ``run``; so ties are shared out in turn by both, and
``round_robin`` visits the candidates in discovery order. The counter is kept per strategy and
filter set (not per membership), so agents joining or leaving never restart the rotation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Container, Hashable, Mapping, Sequence
from enum import StrEnum

from ._metadata import AgentMetadata

__all__ = ["CandidateSet", "RotationCounter", "RoutingStrategy", "normalise_strategy", "rank"]


class RoutingStrategy(StrEnum):
    """How :class:`AgentFederation` picks among matching agents."""

    ROUND_ROBIN = "round_robin"
    """Cycle through the matching agents in discovery order."""
    CAPACITY_AWARE = "capacity_aware"
    """Prefer the agent with the most free slots (its declared capacity when idle)."""
    COST_AWARE = "cost_aware"
    """Prefer the agent with the lowest ``cost_multiplier``."""
    LEAST_LOADED = "least_loaded"
    """Prefer the agent with the lowest fraction of its capacity in use."""


_ALIASES = {
    "roundrobin": RoutingStrategy.ROUND_ROBIN,
    "rr": RoutingStrategy.ROUND_ROBIN,
    "capacity": RoutingStrategy.CAPACITY_AWARE,
    "capacity_aware_routing": RoutingStrategy.CAPACITY_AWARE,
    "cost": RoutingStrategy.COST_AWARE,
    "cost_aware_routing": RoutingStrategy.COST_AWARE,
    "leastloaded": RoutingStrategy.LEAST_LOADED,
    "least_load": RoutingStrategy.LEAST_LOADED,
    "load": RoutingStrategy.LEAST_LOADED,
}


def normalise_strategy(value: RoutingStrategy | str) -> RoutingStrategy:
    """Accept an enum member or a name such as ``"Round-Robin"``, ``"rr"`` or ``"cost"``.

    Raises :class:`ValueError` (``"Unknown routing strategy: ..."``) for anything else.
    """
    if isinstance(value, RoutingStrategy):
        return value
    if not isinstance(value, str):
        raise ValueError(f"Unknown routing strategy: {value!r}")
    name = value.replace("-", "_").lower()
    try:
        return _ALIASES.get(name) or RoutingStrategy(name)
    except ValueError:
        raise ValueError(f"Unknown routing strategy: {value}") from None


class RotationCounter:
    """Thread-safe counters keyed by (strategy, filters); the least recently used keys are
    forgotten beyond ``max_keys``."""

    def __init__(self, max_keys: int = 1024) -> None:
        self._counts: OrderedDict[Hashable, int] = OrderedDict()
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def next(self, key: Hashable) -> int:
        """Return the current count for ``key`` and advance it by one."""
        with self._lock:
            value = self._counts.pop(key, 0)
            self._counts[key] = value + 1
            if len(self._counts) > self._max_keys:
                self._counts.popitem(last=False)
            return value


def _groups(agents: Sequence[AgentMetadata], key: str) -> tuple[tuple[AgentMetadata, ...], ...]:
    ordered = sorted(
        agents, key=(lambda a: -a.capacity) if key == "capacity" else (lambda a: a.cost_multiplier)
    )
    groups: list[tuple[AgentMetadata, ...]] = []
    start = 0
    for index in range(1, len(ordered) + 1):
        if index == len(ordered) or (
            (ordered[index].capacity != ordered[start].capacity)
            if key == "capacity"
            else (ordered[index].cost_multiplier != ordered[start].cost_multiplier)
        ):
            groups.append(tuple(ordered[start:index]))
            start = index
    return tuple(groups)


class CandidateSet:
    """The agents matching one filter set, with per-strategy orderings computed on demand.

    ``agents`` is every match (discovery order); ``routable`` the ones with capacity > 0.
    Instances are never mutated once built, so they can be cached and shared between threads.
    """

    __slots__ = ("_by_capacity", "_by_cost", "agents", "cached", "expires", "routable")

    def __init__(
        self,
        agents: Sequence[AgentMetadata],
        expires: float = float("inf"),
        *,
        cached: bool = False,
    ) -> None:
        self.agents = tuple(agents)
        self.cached = cached
        self.routable = tuple(agent for agent in self.agents if agent.capacity > 0)
        self.expires = expires
        self._by_capacity: tuple[tuple[AgentMetadata, ...], ...] | None = None
        self._by_cost: tuple[tuple[AgentMetadata, ...], ...] | None = None

    def first_group(self, strategy: RoutingStrategy) -> tuple[AgentMetadata, ...]:
        """The top tie group when no agent is busy or demoted."""
        if not self.routable:
            return ()
        if strategy is RoutingStrategy.CAPACITY_AWARE:
            if self._by_capacity is None:
                self._by_capacity = _groups(self.routable, "capacity")
            return self._by_capacity[0]
        if strategy is RoutingStrategy.COST_AWARE:
            if self._by_cost is None:
                self._by_cost = _groups(self.routable, "cost")
            return self._by_cost[0]
        return self.routable


def pick_idle(candidates: CandidateSet, strategy: RoutingStrategy, turn: int) -> AgentMetadata:
    """The choice when no candidate is busy or demoted (the common, O(1) case)."""
    group = candidates.first_group(strategy)
    return group[turn % len(group)]


def rank(
    agents: Sequence[AgentMetadata],
    strategy: RoutingStrategy,
    turn: int,
    in_flight: Mapping[str, int],
    demoted: Container[str],
) -> list[AgentMetadata]:
    """Every routable agent of ``agents``, best first, by the rule in this module's doc."""
    keyed: list[tuple[int, float, int, AgentMetadata]] = []
    for index, agent in enumerate(agents):
        capacity = agent.capacity
        if capacity <= 0:
            continue
        busy = in_flight.get(agent.id, 0)
        tier = 2 if agent.id in demoted else (1 if busy >= capacity else 0)
        if strategy is RoutingStrategy.CAPACITY_AWARE:
            key = float(busy - capacity)
        elif strategy is RoutingStrategy.COST_AWARE:
            key = agent.cost_multiplier
        elif strategy is RoutingStrategy.LEAST_LOADED:
            key = busy / capacity
        else:
            key = 0.0
        keyed.append((tier, key, index, agent))
    keyed.sort(key=lambda item: (item[0], item[1], item[2]))
    ranked: list[AgentMetadata] = []
    start = 0
    for end in range(1, len(keyed) + 1):
        if end == len(keyed) or keyed[end][:2] != keyed[start][:2]:
            group = [item[3] for item in keyed[start:end]]
            shift = turn % len(group)
            ranked.extend(group[shift:] + group[:shift])
            start = end
    return ranked
