"""Discovery for routing: cached candidate sets, rotation turns, off-loop registry calls."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from ..errors import NoAgentAvailableError
from ._metadata import Filters
from ._registry import AgentRegistryBackend
from ._routing import CandidateSet, RotationCounter, RoutingStrategy

__all__ = ["NO_MATCH", "CandidateSource", "check_routable", "registry_call"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

NO_MATCH = "No agents match the discovery filters."
_MAX_CACHED = 256


async def registry_call(registry: AgentRegistryBackend, func: Callable[..., T], *args: Any) -> T:
    """Call a registry method from async code: in a worker thread if the registry is
    ``blocking`` (or does not say), inline otherwise. On cancellation a threaded call is
    abandoned and finishes in its thread."""
    if getattr(registry, "blocking", True):
        return await anyio.to_thread.run_sync(
            functools.partial(func, *args), abandon_on_cancel=True
        )
    return func(*args)


def check_routable(candidates: CandidateSet) -> None:
    """Raise :class:`NoAgentAvailableError` unless some candidate has capacity."""
    if not candidates.agents:
        raise NoAgentAvailableError(NO_MATCH)
    if not candidates.routable:
        ids = ", ".join(agent.id for agent in candidates.agents)
        raise NoAgentAvailableError(f"{NO_MATCH} (every match has capacity 0: {ids})")


class CandidateSource:
    """Candidate sets and rotation turns for one federation; thread-safe.

    For registries with ``revision`` and ``now()`` (the in-memory one), candidate sets are
    cached per filter set until the revision or ``stale_timeout`` changes or the first
    cached agent goes stale, which makes routing O(1) in the number of agents. Rotation turns
    come from the registry's ``next_rotation`` when it has one (shared between processes),
    else from a local counter.
    """

    def __init__(self) -> None:
        self._rotation = RotationCounter()
        self._cache: dict[Filters, tuple[int, float, CandidateSet]] = {}

    def plan(
        self, registry: AgentRegistryBackend, strategy: RoutingStrategy, filters: Filters
    ) -> tuple[CandidateSet, int]:
        """Candidates and the rotation turn (not advanced when nothing is routable)."""
        candidates = self.candidates(registry, filters)
        turn = self.turn(registry, strategy, filters) if candidates.routable else 0
        return candidates, turn

    def turn(
        self, registry: AgentRegistryBackend, strategy: RoutingStrategy, filters: Filters
    ) -> int:
        shared = getattr(registry, "next_rotation", None)
        if shared is not None:
            try:
                return int(shared(f"{strategy.value}|{filters.key()}"))
            except Exception:
                logger.warning("shared rotation unavailable; using a local one", exc_info=True)
        return self._rotation.next((strategy, filters))

    def candidates(self, registry: AgentRegistryBackend, filters: Filters) -> CandidateSet:
        # The revision is read before discovering: a change racing with it only makes the
        # entry look older than it is, never newer.
        revision: int | None = getattr(registry, "revision", None)
        now: Callable[[], float] | None = getattr(registry, "now", None)
        timeout = registry.stale_timeout
        cacheable = revision is not None and now is not None
        if cacheable:
            entry = self._cache.get(filters)
            if entry is not None and entry[0] == revision and entry[1] == timeout:
                assert now is not None
                if now() <= entry[2].expires:
                    return entry[2]
        agents = registry.discover(
            tools=sorted(filters.tools) if filters.tools else None,
            tags=sorted(filters.tags) if filters.tags else None,
            min_capacity=filters.min_capacity,  # type: ignore[arg-type]
            healthy_only=filters.healthy_only,
        )
        expires = math.inf
        if filters.healthy_only:
            beats = [a.last_heartbeat for a in agents if a.last_heartbeat is not None]
            expires = min(beats, default=math.inf) + timeout
        candidates = CandidateSet(agents, expires, cached=cacheable)
        if revision is not None and cacheable:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[filters] = (revision, timeout, candidates)
        return candidates
