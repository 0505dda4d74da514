"""AgentFederation: discovery, routing and dispatch of prompts across a registry."""

from __future__ import annotations

import inspect
import logging
import math
import threading
from collections.abc import Mapping
from typing import Any

import anyio

from ..errors import (
    AgentAttempt,
    AgentTimeoutError,
    AllAgentsFailedError,
    NoAgentAvailableError,
    NoClientError,
    UnknownAgentError,
)
from ._client import AgentClient, coerce_client
from ._discovery import NO_MATCH, CandidateSource, check_routable, registry_call
from ._load import FederationStatistics, HealthTracker, SlotTracker
from ._metadata import AgentMetadata, Filters, Labels, check_timeout
from ._registry import AgentRegistryBackend, InMemoryAgentRegistry
from ._routing import CandidateSet, RoutingStrategy, normalise_strategy, pick_idle, rank

__all__ = ["AgentFederation"]

logger = logging.getLogger(__name__)

_FAILURE_HOOKS = ("mark_unhealthy", "report_failure", "record_failure")


class AgentFederation:
    """Discovers agents in a registry and dispatches prompts to them.

    ``registry`` defaults to a new :class:`InMemoryAgentRegistry`; any object implementing
    :class:`AgentRegistryBackend` works. ``clients`` maps agent ids (or endpoints) to clients;
    every client is coerced as by :meth:`add_client`. An agent with no client there gets the
    one its registry's optional ``client_for(agent)`` hook returns (an :class:`AgentClient`
    or ``None``; used as is), which is how :class:`SwarmAgentRegistry` reaches its peers.
    ``default_strategy`` is used when a call names none (an unknown name raises
    :class:`ValueError` here).

    Load and health, kept per federation (per process):

    * capacity is a concurrency limit: at most ``agent.capacity`` calls are in flight on an
      agent through this federation; agents with capacity 0 are never routed. A routed
      ``run`` skips full agents while another candidate has a free slot, and *waits* for a
      slot when every candidate is full (bounded by ``timeout``, or by the caller's cancel
      scope);
    * ``failure_threshold`` consecutive failed calls demote an agent for ``cooldown`` seconds:
      it is ranked after all others and used only when no other candidate is left to try
      (busy ones are waited for); a success clears the count;
    * routed ``run`` fails over to the next candidate on exceptions that are instances of
      ``failover_on`` (default: any :class:`Exception`); others propagate at once.

    :meth:`select_agent`, :meth:`discover` and the registration methods are sync and
    thread-safe. :meth:`run` may be called concurrently from many tasks; registries that do
    I/O (``blocking = True``) are called from it through a worker thread.
    """

    def __init__(
        self,
        registry: AgentRegistryBackend | None = None,
        *,
        clients: Mapping[str, Any] | None = None,
        default_strategy: RoutingStrategy | str = RoutingStrategy.ROUND_ROBIN,
        failure_threshold: int = 3,
        cooldown: float = 30.0,
        failover_on: type[Exception] | tuple[type[Exception], ...] = Exception,
    ) -> None:
        if registry is None:
            registry = InMemoryAgentRegistry()
        elif not isinstance(registry, AgentRegistryBackend):
            raise TypeError("registry must implement AgentRegistryBackend (see its docstring).")
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int):
            raise TypeError("failure_threshold must be an int.")
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1.")
        self.registry: AgentRegistryBackend = registry
        self.default_strategy = normalise_strategy(default_strategy)
        self.failover_on = failover_on
        self.clients: dict[str, AgentClient] = {
            str(key): coerce_client(client) for key, client in (clients or {}).items()
        }
        self._lock = threading.Lock()
        self._source = CandidateSource()
        self._slots = SlotTracker()
        self._health = HealthTracker(failure_threshold, check_timeout(cooldown, "cooldown"))

    # -- registration -------------------------------------------------------------------

    def register_agent(self, agent: AgentMetadata, *, client: Any | None = None) -> AgentMetadata:
        """Register ``agent`` (an upsert) and, if given, attach ``client`` under its id.

        Returns the stored copy. Raises :class:`TypeError` for an unusable client (before
        anything is registered) and whatever the registry raises.
        """
        coerced = coerce_client(client) if client is not None else None
        registered = self.registry.register(agent)
        if coerced is not None:
            with self._lock:
                self.clients[registered.id] = coerced
        return registered

    def unregister_agent(self, agent_id: str) -> bool:
        """Remove the agent and its client; True if the registry had it."""
        with self._lock:
            self.clients.pop(str(agent_id), None)
        self._health.forget(str(agent_id))
        return self.registry.unregister(agent_id)

    def add_client(self, agent_id: str, client: Any) -> None:
        """Attach ``client`` under ``agent_id`` or an endpoint string (no existence check).

        An object whose ``run`` is ``async def`` is used as is; anything else is wrapped in
        :class:`LocalAgentClient` (:class:`TypeError` if it has nothing callable).
        """
        coerced = coerce_client(client)
        with self._lock:
            self.clients[str(agent_id)] = coerced

    def get_client(self, agent: AgentMetadata | str) -> AgentClient:
        """The client for an agent: by id, then (for metadata) by its ``endpoint``, then
        from the registry's ``client_for`` hook.

        Raises :class:`NoClientError` (a :class:`KeyError`).
        """
        client = self._client_for(agent)
        if client is None:
            raise NoClientError(agent.id if isinstance(agent, AgentMetadata) else str(agent))
        return client

    def prune_stale(self, *, stale_timeout: float | None = None) -> list[str]:
        """Prune the registry and drop the clients and counters of the removed agents."""
        removed = self.registry.prune_stale(stale_timeout=stale_timeout)
        with self._lock:
            for agent_id in removed:
                self.clients.pop(agent_id, None)
        for agent_id in removed:
            self._health.forget(agent_id)
        return removed

    def statistics(self) -> FederationStatistics:
        """A frozen snapshot of in-flight calls and outcome counters per agent."""
        return self._health.snapshot(self._slots)

    # -- discovery and selection --------------------------------------------------------

    def discover(
        self,
        *,
        tools: Labels = None,
        tags: Labels = None,
        min_capacity: int | None = None,
        healthy_only: bool = True,
    ) -> list[AgentMetadata]:
        """The registry's ``discover`` (copies of the matching agents, registry order)."""
        return self.registry.discover(
            tools=tools, tags=tags, min_capacity=min_capacity, healthy_only=healthy_only
        )

    def select_agent(
        self,
        *,
        strategy: RoutingStrategy | str | None = None,
        tools: Labels = None,
        tags: Labels = None,
        min_capacity: int | None = None,
        healthy_only: bool = True,
    ) -> AgentMetadata:
        """Pick one agent by the strategy (the first agent ``run`` would try); a copy.

        Advances the rotation by one, as ``run`` does; reserves nothing (a later ``run`` may
        find the agent full). Raises :class:`NoAgentAvailableError` (a :class:`LookupError`)
        when no routable agent matches. With a blocking registry this does I/O: from async
        code call it through :func:`anyio.to_thread.run_sync`.
        """
        chosen = self._strategy(strategy)
        filters = Filters.make(tools, tags, min_capacity, healthy_only)
        candidates, turn = self._source.plan(self.registry, chosen, filters)
        check_routable(candidates)
        in_flight, demoted = self._slots.in_flight, self._health.demoted()
        if not in_flight and not demoted:
            pick = pick_idle(candidates, chosen, turn)
        else:
            pick = rank(candidates.routable, chosen, turn, in_flight, demoted)[0]
        if candidates.cached:  # the cached copy may have an older heartbeat
            fresh = self.registry.get(pick.id)
            if fresh is not None:
                return fresh
        return pick.copy()

    # -- dispatch -----------------------------------------------------------------------

    async def run(
        self,
        prompt: str,
        *,
        agent_id: str | None = None,
        strategy: RoutingStrategy | str | None = None,
        tools: Labels = None,
        tags: Labels = None,
        min_capacity: int | None = None,
        healthy_only: bool = True,
        timeout: float | None = None,
        max_attempts: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Select an agent and return what its client's ``run(prompt, **kwargs)`` returns.

        With ``agent_id``: one attempt on that agent (filters ignored). Raises
        :class:`UnknownAgentError`, :class:`NoAgentAvailableError` (unhealthy while
        ``healthy_only``, or capacity 0), :class:`NoClientError`, :class:`AgentTimeoutError`,
        or the client's own exception, unwrapped.

        Routed (no ``agent_id``): candidates are tried in the order of the ranking rule, each
        at most once and at most ``max_attempts`` calls in all, failing over on
        ``failover_on`` errors. Raises :class:`NoAgentAvailableError` when nothing matches, and
        :class:`AllAgentsFailedError` (a :class:`RuntimeError` and an ``ExceptionGroup``
        holding every attempt's error) when every attempt failed; a candidate without a client
        is listed there as a :class:`NoClientError` attempt, without being called or counted
        against ``max_attempts``.

        ``timeout`` bounds each attempt, for sync and async clients alike, and, in total, the
        waits for a free slot. Cancellation of the caller cancels the current attempt, frees
        its slot and propagates; it is not counted as the agent's failure. Other keyword
        arguments are passed to the client unchanged.
        """
        chosen = self._strategy(strategy)
        limit = None if timeout is None else check_timeout(timeout, "timeout")
        if max_attempts is not None and (
            isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
        ):
            raise ValueError("max_attempts must be a positive int or None.")
        if agent_id is not None:
            return await self._run_one(str(agent_id), prompt, healthy_only, limit, kwargs)
        filters = Filters.make(tools, tags, min_capacity, healthy_only)
        return await self._run_routed(prompt, chosen, filters, limit, max_attempts, kwargs)

    async def _run_one(
        self,
        agent_id: str,
        prompt: str,
        healthy_only: bool,
        timeout: float | None,
        kwargs: dict[str, Any],
    ) -> Any:
        agent = await registry_call(self.registry, self.registry.get, agent_id)
        if agent is None:
            raise UnknownAgentError(agent_id)
        if healthy_only and not await registry_call(
            self.registry, self.registry.is_healthy, agent_id
        ):
            raise NoAgentAvailableError(f"Agent is not healthy: {agent_id}")
        if agent.capacity <= 0:
            raise NoAgentAvailableError(f"Agent has no capacity: {agent_id}")
        client = self.get_client(agent)
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        while True:
            generation = self._slots.generation
            if self._slots.try_acquire(agent.id, agent.capacity):
                break
            with anyio.move_on_after(deadline - anyio.current_time()):
                await self._slots.wait_for_release(generation, (agent.id,))
            if anyio.current_time() >= deadline:
                raise AgentTimeoutError(
                    f"Agent {agent_id} had no free slot within {timeout}s",
                    agent_id=agent_id,
                    timeout=timeout,
                )
        return await self._attempt(agent, client, prompt, timeout, kwargs)

    async def _run_routed(
        self,
        prompt: str,
        strategy: RoutingStrategy,
        filters: Filters,
        timeout: float | None,
        max_attempts: int | None,
        kwargs: dict[str, Any],
    ) -> Any:
        candidates, turn = await registry_call(
            self.registry, self._source.plan, self.registry, strategy, filters
        )
        check_routable(candidates)
        attempts: list[AgentAttempt] = []
        tried: set[str] = set()
        calls = 0
        deadline: float | None = None
        while max_attempts is None or calls < max_attempts:
            generation = self._slots.generation
            agent, client, full = self._next_candidate(candidates, strategy, turn, tried, attempts)
            if agent is not None and client is not None:
                tried.add(agent.id)
                calls += 1
                started = anyio.current_time()
                try:
                    return await self._attempt(agent, client, prompt, timeout, kwargs)
                except self.failover_on as exc:
                    elapsed = anyio.current_time() - started
                    attempts.append(AgentAttempt(agent.id, exc, elapsed))
                    logger.info("agent %s failed (%r); failing over", agent.id, exc)
                continue
            if not full:
                break
            now = anyio.current_time()
            if deadline is None:
                deadline = math.inf if timeout is None else now + timeout
            if now >= deadline:
                error = AgentTimeoutError(
                    f"No matching agent had a free slot within {timeout}s",
                    agent_id=None,
                    timeout=timeout,
                )
                if not attempts:
                    raise error
                attempts.append(AgentAttempt(None, error, float(timeout or 0.0)))
                break
            with anyio.move_on_after(deadline - now):
                await self._slots.wait_for_release(
                    generation, {agent.id for agent in candidates.routable}
                )
            candidates = await registry_call(
                self.registry, self._source.candidates, self.registry, filters
            )
        if not attempts:
            raise NoAgentAvailableError(NO_MATCH)
        raise AllAgentsFailedError(attempts) from attempts[-1].error

    def _next_candidate(
        self,
        candidates: CandidateSet,
        strategy: RoutingStrategy,
        turn: int,
        tried: set[str],
        attempts: list[AgentAttempt],
    ) -> tuple[AgentMetadata | None, AgentClient | None, bool]:
        """The best untried agent that has a client and a free slot (its slot acquired);
        else ``(None, None, full)`` where ``full`` says an untried candidate was full."""
        in_flight, demoted = self._slots.in_flight, self._health.demoted()
        if not in_flight and not demoted and not tried and candidates.routable:
            agent = pick_idle(candidates, strategy, turn)
            client = self._client_for(agent)
            if client is not None and self._slots.try_acquire(agent.id, agent.capacity):
                return agent, client, False
        full = False
        for agent in rank(candidates.routable, strategy, turn, in_flight, demoted):
            if agent.id in tried:
                continue
            if full and agent.id in demoted:
                break  # wait for a busy healthy agent rather than use a demoted one
            client = self._client_for(agent)
            if client is None:
                tried.add(agent.id)
                attempts.append(AgentAttempt(agent.id, NoClientError(agent.id), 0.0))
                continue
            if self._slots.try_acquire(agent.id, agent.capacity):
                return agent, client, False
            full = True
        return None, None, full

    async def _attempt(
        self,
        agent: AgentMetadata,
        client: AgentClient,
        prompt: str,
        timeout: float | None,
        kwargs: dict[str, Any],
    ) -> Any:
        """One call with its slot already acquired: releases the slot, records the outcome
        (cancellation records nothing), and re-raises failures."""
        try:
            try:
                with anyio.move_on_after(timeout):
                    result = client.run(prompt, **kwargs)
                    if inspect.isawaitable(result):
                        result = await result
                    self._health.record_success(agent.id)
                    return result
                raise AgentTimeoutError(
                    f"Agent {agent.id} did not answer within {timeout}s",
                    agent_id=agent.id,
                    timeout=timeout,
                )
            finally:
                self._slots.release(agent.id)
        except Exception:
            if self._health.record_failure(agent.id):
                logger.warning("agent %s demoted after repeated failures", agent.id)
            await self._report_failure(agent.id)
            raise

    async def _report_failure(self, agent_id: str) -> None:
        for name in _FAILURE_HOOKS:
            hook = getattr(self.registry, name, None)
            if hook is not None:
                with anyio.move_on_after(5.0, shield=True):
                    try:
                        await registry_call(self.registry, hook, agent_id)
                    except Exception:
                        logger.debug("registry %s hook failed", name, exc_info=True)
                return

    # -- helpers ------------------------------------------------------------------------

    def _strategy(self, strategy: RoutingStrategy | str | None) -> RoutingStrategy:
        return normalise_strategy(strategy) if strategy else self.default_strategy

    def _client_for(self, agent: AgentMetadata | str) -> AgentClient | None:
        if isinstance(agent, AgentMetadata):
            client = self.clients.get(agent.id)
            if client is None and agent.endpoint is not None:
                client = self.clients.get(agent.endpoint)
        else:
            client = self.clients.get(str(agent))
        if client is None:
            client = self._registry_client(agent)
        return client

    def _registry_client(self, agent: AgentMetadata | str) -> AgentClient | None:
        """The registry's ``client_for(agent)`` hook, if it has one (errors count as None)."""
        hook = getattr(self.registry, "client_for", None)
        if hook is None:
            return None
        try:
            client: AgentClient | None = hook(agent)
        except Exception:
            logger.warning("registry client_for(%r) failed", agent, exc_info=True)
            return None
        return client

    # synapsekit's alternative names
    register = register_agent
    unregister = unregister_agent
    discover_agents = discover
    route = select_agent
    select = select_agent
    execute = run
