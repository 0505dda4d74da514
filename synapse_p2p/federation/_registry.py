"""The registry protocol and the in-process registry."""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..errors import UnknownAgentError
from ._metadata import AgentMetadata, Filters, Labels, check_time, check_timeout

__all__ = ["AgentRegistryBackend", "InMemoryAgentRegistry"]


@runtime_checkable
class AgentRegistryBackend(Protocol):
    """What :class:`AgentFederation` needs from a registry (the seam for other backends).

    Methods are synchronous, as in the user's documents. A backend whose methods do I/O sets
    ``blocking = True`` (the default assumed for backends that do not say); the federation
    then calls it from ``run()`` through :func:`anyio.to_thread.run_sync`, so the event loop
    is never blocked. Optional extras the federation uses when present:

    * ``now() -> float``: the registry's clock (Unix seconds) used for health;
    * ``revision: int``: bumped whenever a discovery result may change other than by time
      passing (a stale agent's health changes with time alone); with ``now()`` it lets the
      federation cache discovery results until the revision changes or the first cached
      agent goes stale;
    * ``next_rotation(key: str) -> int``: a shared round-robin counter, so that several
      processes rotate together;
    * ``mark_unhealthy(agent_id)`` / ``report_failure`` / ``record_failure``: called (the
      first that exists, errors ignored) when a call to the agent fails.

    A registry fed by the live swarm membership implements this protocol with
    ``blocking = False``.
    """

    stale_timeout: float

    def register(self, agent: AgentMetadata) -> AgentMetadata: ...

    def unregister(self, agent_id: str) -> bool: ...

    def get(self, agent_id: str) -> AgentMetadata | None: ...

    def list(self) -> builtins.list[AgentMetadata]: ...

    def heartbeat(self, agent_id: str, timestamp: float | None = None) -> AgentMetadata: ...

    def is_healthy(self, agent_id: str) -> bool: ...

    def discover(
        self,
        *,
        tools: Labels = None,
        tags: Labels = None,
        min_capacity: int | None = None,
        healthy_only: bool = True,
    ) -> builtins.list[AgentMetadata]: ...

    def prune_stale(self, *, stale_timeout: float | None = None) -> builtins.list[str]: ...


class _Entry:
    __slots__ = ("agent", "tags", "tools")

    def __init__(self, agent: AgentMetadata) -> None:
        self.agent = agent
        self.tools = frozenset(agent.tools)
        self.tags = frozenset(agent.tags)


class InMemoryAgentRegistry:
    """A thread-safe, in-process registry with heartbeat-based health.

    One :class:`threading.Lock` guards the table; every method holds it only for in-memory
    work (no I/O), so calling these sync methods from async code does not block the loop in
    any meaningful way (``blocking = False``). Values going in and out are copies: mutating a
    returned :class:`AgentMetadata` never changes the registry.

    ``clock`` (default :func:`time.time`) gives the current Unix time; tests inject a manual
    one. An agent is healthy while ``now - last_heartbeat <= stale_timeout``. ``list()`` and
    ``discover()`` keep registration order (re-registering keeps an agent's place).
    """

    blocking = False

    def __init__(
        self, *, stale_timeout: float = 30.0, clock: Callable[[], float] | None = None
    ) -> None:
        self.stale_timeout = check_timeout(stale_timeout, "stale_timeout")
        self.clock: Callable[[], float] = clock if clock is not None else time.time
        self._agents: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._revision = 0

    @property
    def revision(self) -> int:
        """Incremented whenever a discovery result may change other than by time passing:
        register, unregister, prune, and a heartbeat that revives a stale agent or moves a
        heartbeat backwards (refreshing a healthy agent does not count)."""
        return self._revision

    def now(self) -> float:
        """The registry's current time (Unix seconds)."""
        return self.clock()

    def register(self, agent: AgentMetadata) -> AgentMetadata:
        """Store a validated copy (upsert); a missing ``last_heartbeat`` is set to now.

        Raises :class:`TypeError`/:class:`ValueError` if the metadata is invalid.
        """
        if not isinstance(agent, AgentMetadata):
            raise TypeError(f"agent must be an AgentMetadata, not {type(agent).__name__}.")
        stored = agent.validated()
        if stored.last_heartbeat is None:
            stored.last_heartbeat = self.clock()
        with self._lock:
            self._agents[stored.id] = _Entry(stored)
            self._revision += 1
        return stored.copy()

    def unregister(self, agent_id: str) -> bool:
        """Remove an agent; True if it was registered."""
        with self._lock:
            removed = self._agents.pop(agent_id, None) is not None
            if removed:
                self._revision += 1
        return removed

    def get(self, agent_id: str) -> AgentMetadata | None:
        """A copy of the agent's metadata, or ``None``."""
        with self._lock:
            entry = self._agents.get(agent_id)
            return entry.agent.copy() if entry is not None else None

    def list(self) -> builtins.list[AgentMetadata]:
        """Copies of every agent, healthy or not, in registration order."""
        with self._lock:
            return [entry.agent.copy() for entry in self._agents.values()]

    def heartbeat(self, agent_id: str, timestamp: float | None = None) -> AgentMetadata:
        """Set the agent's heartbeat to ``timestamp`` or now; returns the updated copy.

        Raises :class:`UnknownAgentError` (a :class:`KeyError`) for an unknown id, and
        :class:`ValueError`/:class:`TypeError` for a timestamp that is not a finite number.
        """
        now = self.clock()
        when = now if timestamp is None else check_time(timestamp)
        with self._lock:
            entry = self._agents.get(agent_id)
            if entry is None:
                raise UnknownAgentError(agent_id)
            agent = entry.agent
            previous = agent.last_heartbeat
            # Refreshing a healthy agent cannot change any discovery result: no new revision.
            if not (
                previous is not None
                and when >= previous
                and agent.is_healthy(self.stale_timeout, now)
            ):
                self._revision += 1
            agent.last_heartbeat = when
            return agent.copy()

    def is_healthy(self, agent_id: str) -> bool:
        """Whether the agent's heartbeat is fresh; False for an unknown id."""
        now = self.clock()
        with self._lock:
            entry = self._agents.get(agent_id)
            return entry is not None and entry.agent.is_healthy(self.stale_timeout, now)

    def discover(
        self,
        *,
        tools: Labels = None,
        tags: Labels = None,
        min_capacity: int | None = None,
        healthy_only: bool = True,
    ) -> builtins.list[AgentMetadata]:
        """Copies of the agents that have every tool in ``tools``, every tag in ``tags``,
        ``capacity >= min_capacity`` and (with ``healthy_only``) a fresh heartbeat, judged at
        one instant. ``None`` or an empty list means no filter; an empty name is a
        :class:`ValueError`."""
        filters = Filters.make(tools, tags, min_capacity, healthy_only)
        now = self.clock()
        timeout = self.stale_timeout
        with self._lock:
            return [
                entry.agent.copy()
                for entry in self._agents.values()
                if filters.matches_static(entry.tools, entry.tags, entry.agent.capacity)
                and (not filters.healthy_only or entry.agent.is_healthy(timeout, now))
            ]

    def prune_stale(self, *, stale_timeout: float | None = None) -> builtins.list[str]:
        """Remove every agent that is unhealthy under ``stale_timeout`` (default: the
        registry's); returns the removed ids in registration order. Atomic: an agent whose
        heartbeat lands before the prune is kept, one whose heartbeat comes after it is gone
        (its ``heartbeat`` raises :class:`UnknownAgentError`)."""
        timeout = (
            self.stale_timeout
            if stale_timeout is None
            else check_timeout(stale_timeout, "stale_timeout")
        )
        with self._lock:
            now = self.clock()
            stale = [
                agent_id
                for agent_id, entry in self._agents.items()
                if not entry.agent.is_healthy(timeout, now)
            ]
            for agent_id in stale:
                del self._agents[agent_id]
            if stale:
                self._revision += 1
        return stale

    # synapsekit's alternative names
    register_agent = register
    unregister_agent = unregister
    get_agent = get
    list_agents = list
    update_heartbeat = heartbeat
    discover_agents = discover
    prune_stale_agents = prune_stale
