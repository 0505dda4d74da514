"""In-flight accounting (capacity as a concurrency limit) and health from call outcomes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import anyio
import sniffio

__all__ = ["AgentStatistics", "FederationStatistics", "HealthTracker", "SlotTracker"]


class _Waiter:
    """One task waiting for a slot of one of ``agents`` (``None``: any agent)."""

    __slots__ = ("agents", "event", "released", "wake", "woken")

    def __init__(self, agents: Collection[str] | None) -> None:
        self.agents = agents
        self.event = anyio.Event()
        self.woken = False
        self.released = ""  # the agent whose slot woke it
        self.wake = _threadsafe_setter(self.event)

    def wants(self, agent_id: str) -> bool:
        return self.agents is None or agent_id in self.agents


def _threadsafe_setter(event: anyio.Event) -> Callable[[], None]:
    """A function that sets ``event`` from any thread, without waiting for its event loop
    (a federation may be shared by threads that each run their own loop)."""
    owner = threading.get_ident()
    library = sniffio.current_async_library()
    if library == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()

        def soon(fn: Callable[[], None]) -> None:
            token.run_sync_soon(fn)

    else:
        loop = asyncio.get_running_loop()
        soon = loop.call_soon_threadsafe  # type: ignore[assignment]

    def wake() -> None:
        if threading.get_ident() == owner:
            event.set()
            return
        try:
            soon(event.set)
        except RuntimeError:  # that loop has ended (trio's RunFinishedError is one too)
            pass

    return wake


class SlotTracker:
    """Counts calls in flight per agent; thread-safe.

    ``try_acquire`` is an atomic check-and-increment, so an agent never has more than its
    capacity in flight. Tasks that find every candidate full ``await wait_for_release()``,
    naming the agents they could use; each release wakes the longest-waiting task that could
    use that agent, and only it (in whichever thread it waits). A woken task that leaves
    without taking the slot (cancelled, timed out) passes the wake on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._waiters: list[_Waiter] = []
        self.generation = 0

    @property
    def in_flight(self) -> Mapping[str, int]:
        """Live view of the busy agents (only ids with at least one call in flight)."""
        return self._in_flight

    def count(self, agent_id: str) -> int:
        return self._in_flight.get(agent_id, 0)

    def copy(self) -> dict[str, int]:
        with self._lock:
            return dict(self._in_flight)

    def waiting(self) -> int:
        """Tasks waiting for a slot."""
        return len(self._waiters)

    def try_acquire(self, agent_id: str, capacity: int) -> bool:
        with self._lock:
            busy = self._in_flight.get(agent_id, 0)
            if busy >= capacity:
                return False
            self._in_flight[agent_id] = busy + 1
            return True

    def release(self, agent_id: str) -> None:
        with self._lock:
            busy = self._in_flight.get(agent_id, 0) - 1
            if busy > 0:
                self._in_flight[agent_id] = busy
            else:
                self._in_flight.pop(agent_id, None)
            self.generation += 1
            waiter = self._take_waiter(agent_id)
        if waiter is not None:
            waiter.wake()

    def _take_waiter(self, agent_id: str) -> _Waiter | None:
        # Under the lock: the first waiter that could use this agent, marked woken.
        for waiter in self._waiters:
            if not waiter.woken and waiter.wants(agent_id):
                waiter.woken = True
                waiter.released = agent_id
                self._waiters.remove(waiter)
                return waiter
        return None

    async def wait_for_release(
        self, generation: int, agents: Collection[str] | None = None
    ) -> None:
        """Return once a slot of one of ``agents`` (any agent if ``None``) is released for
        this task, or at once if any slot was released since ``generation`` was read. The
        caller then tries to acquire again. Cancellation leaves no trace (a wake it received
        goes to the next waiter)."""
        waiter = _Waiter(agents)
        with self._lock:
            if self.generation != generation:
                return
            self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    passed = None
                elif waiter.woken:  # woken, but leaving: pass the wake on
                    passed = self._take_waiter(waiter.released)
                else:
                    passed = None
            if passed is not None:
                passed.wake()
            raise


@dataclass(frozen=True, slots=True)
class AgentStatistics:
    """A snapshot of one agent's load and outcome counters in this federation."""

    in_flight: int
    successes: int
    failures: int
    consecutive_failures: int
    demoted: bool
    """True while the agent is demoted after ``failure_threshold`` consecutive failures."""


@dataclass(frozen=True, slots=True)
class FederationStatistics:
    """A snapshot returned by :meth:`AgentFederation.statistics`."""

    agents: Mapping[str, AgentStatistics]
    in_flight: int


class _Health:
    __slots__ = ("consecutive", "demoted_until", "failures", "successes")

    def __init__(self) -> None:
        self.successes = 0
        self.failures = 0
        self.consecutive = 0
        self.demoted_until = 0.0


class HealthTracker:
    """A per-agent circuit breaker fed by call outcomes; thread-safe.

    ``failure_threshold`` consecutive failures demote the agent for ``cooldown`` seconds:
    routing ranks it after every other candidate and uses it only when no other candidate is
    left to try (not merely busy). When
    the cool-down ends the agent is ranked normally again; its next failure demotes it again
    at once and its next success clears the count.
    """

    def __init__(
        self,
        failure_threshold: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._agents: dict[str, _Health] = {}
        self._demoted: dict[str, float] = {}

    def demoted(self) -> dict[str, float]:
        """Agents in their cool-down now (id -> end); empty in the common case."""
        if not self._demoted:
            return self._demoted
        now = self._clock()
        with self._lock:
            for agent_id in [a for a, until in self._demoted.items() if until <= now]:
                del self._demoted[agent_id]
            return dict(self._demoted)

    def record_success(self, agent_id: str) -> None:
        with self._lock:
            health = self._agents.setdefault(agent_id, _Health())
            health.successes += 1
            health.consecutive = 0

    def record_failure(self, agent_id: str) -> bool:
        """Count a failure; returns True if it newly demoted the agent."""
        with self._lock:
            health = self._agents.setdefault(agent_id, _Health())
            health.failures += 1
            health.consecutive += 1
            if health.consecutive < self.failure_threshold:
                return False
            now = self._clock()
            was_demoted = health.demoted_until > now
            health.demoted_until = now + self.cooldown
            self._demoted[agent_id] = health.demoted_until
            return not was_demoted

    def forget(self, agent_id: str) -> None:
        with self._lock:
            self._agents.pop(agent_id, None)
            self._demoted.pop(agent_id, None)

    def snapshot(self, slots: SlotTracker) -> FederationStatistics:
        now = self._clock()
        busy = slots.copy()
        with self._lock:
            agents = {}
            for agent_id in sorted(set(self._agents) | set(busy)):
                health = self._agents.get(agent_id) or _Health()
                agents[agent_id] = AgentStatistics(
                    in_flight=busy.get(agent_id, 0),
                    successes=health.successes,
                    failures=health.failures,
                    consecutive_failures=health.consecutive,
                    demoted=health.demoted_until > now,
                )
        return FederationStatistics(agents, sum(a.in_flight for a in agents.values()))
