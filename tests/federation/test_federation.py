"""AgentFederation: the seed example, dispatch, failover, timeouts, capacity, health."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from synapse_p2p.errors import SynapseError
from synapse_p2p.federation import (
    AgentFederation,
    AgentMetadata,
    AgentTimeoutError,
    AllAgentsFailedError,
    InMemoryAgentRegistry,
    LocalAgentClient,
    NoAgentAvailableError,
    NoClientError,
    RoutingStrategy,
    UnknownAgentError,
    serve_heartbeats,
)

pytestmark = pytest.mark.anyio


class StandInAgent:
    """Plays the seed's ReasoningAgent: ``async run(query)`` with canned skills."""

    def __init__(self, skill: str) -> None:
        self.skill = skill

    async def run(self, query: str) -> str:
        if self.skill == "math":
            return str(42 * 1337) if "42 * 1337" in query else "?"
        return f"research notes on {query!r}"


async def test_the_seed_example() -> None:
    research_agent, math_agent = StandInAgent("research"), StandInAgent("math")

    registry = InMemoryAgentRegistry(stale_timeout=60.0)
    federation = AgentFederation(
        registry=registry,
        default_strategy=RoutingStrategy.ROUND_ROBIN,
    )
    federation.register_agent(
        AgentMetadata(
            id="research-1",
            model="gpt-4o-mini",
            tools=["web_search"],
            tags=["research", "general"],
            capacity=5,
        ),
        client=LocalAgentClient(research_agent),
    )
    federation.register_agent(
        AgentMetadata(
            id="math-1",
            model="gpt-4o-mini",
            tools=["calculator"],
            tags=["math", "analysis"],
            capacity=10,
            cost_multiplier=0.5,
        ),
        client=LocalAgentClient(math_agent),
    )
    result = await federation.run("What is 42 * 1337?", tags=["math"])
    assert result == "56154"
    agents = federation.discover(tags=["research"])
    assert f"Research agents: {[a.id for a in agents]}" == "Research agents: ['research-1']"


class Echo:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    async def run(self, prompt: str, **kwargs: Any) -> tuple[str, str, dict[str, Any]]:
        self.calls += 1
        return self.name, prompt, kwargs


class Crash:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or RuntimeError("boom")
        self.calls = 0

    async def run(self, prompt: str, **kwargs: Any) -> Any:
        self.calls += 1
        raise self.error


class Hang:
    def __init__(self) -> None:
        self.calls = 0

    async def run(self, prompt: str, **kwargs: Any) -> Any:
        self.calls += 1
        await anyio.sleep(30)


def _federation(*agents: tuple[str, float, Any], **kwargs: Any) -> AgentFederation:
    fed = AgentFederation(default_strategy="cost_aware", **kwargs)
    for agent_id, cost, client in agents:
        fed.register_agent(AgentMetadata(agent_id, "m", cost_multiplier=cost), client=client)
    return fed


async def test_run_with_agent_id_forwards_kwargs() -> None:
    echo = Echo("support-a")
    fed = _federation(("support-a", 1.0, echo), ("other", 0.1, Echo("other")))
    result = await fed.run("open ticket", agent_id="support-a", tags=["x"], priority="high")
    assert result == ("support-a", "open ticket", {"priority": "high"})  # filters ignored
    assert await fed.execute("again", agent_id="support-a") == ("support-a", "again", {})


async def test_run_with_agent_id_errors() -> None:
    clock = [1000.0]
    fed = AgentFederation(InMemoryAgentRegistry(stale_timeout=5, clock=lambda: clock[0]))
    fed.register_agent(AgentMetadata("a", "m"), client=Crash(ValueError("bad input")))
    fed.register_agent(AgentMetadata("nobody", "m"))
    fed.register_agent(AgentMetadata("zero", "m", capacity=0), client=Echo("zero"))
    with pytest.raises(UnknownAgentError, match="Unknown agent id: ghost"):
        await fed.run("p", agent_id="ghost")
    with pytest.raises(NoClientError, match="No AgentClient registered for agent: nobody"):
        await fed.run("p", agent_id="nobody")
    with pytest.raises(NoAgentAvailableError, match="no capacity"):
        await fed.run("p", agent_id="zero")
    with pytest.raises(ValueError, match="bad input"):  # unwrapped, no failover
        await fed.run("p", agent_id="a")
    with pytest.raises(ValueError, match="Unknown routing strategy"):
        await fed.run("p", agent_id="a", strategy="nope")
    clock[0] += 10
    with pytest.raises(LookupError, match="Agent is not healthy: a"):
        await fed.run("p", agent_id="a")
    with pytest.raises(ValueError, match="bad input"):
        await fed.run("p", agent_id="a", healthy_only=False)


async def test_failover_to_the_next_agent() -> None:
    bad, good = Crash(), Echo("good")
    fed = _federation(("bad", 0.1, bad), ("good", 1.0, good))
    assert (await fed.run("task"))[0] == "good"
    assert (bad.calls, good.calls) == (1, 1)


async def test_failover_after_a_timeout() -> None:
    hang, good = Hang(), Echo("good")
    fed = _federation(("hang", 0.1, hang), ("good", 1.0, good))
    with anyio.fail_after(5):
        assert (await fed.run("task", timeout=0.05))[0] == "good"
    assert (hang.calls, good.calls) == (1, 1)


async def test_all_failed_keeps_every_error() -> None:
    first, second = Crash(RuntimeError("first")), Crash(ConnectionError("second"))
    fed = _federation(("a", 0.1, first), ("b", 0.2, second), ("c", 0.3, Hang()))
    fed.register_agent(AgentMetadata("d", "m", cost_multiplier=0.4))  # no client
    with pytest.raises(RuntimeError, match="All 4 candidate agents failed") as caught:
        await fed.run("task", timeout=0.05)
    error = caught.value
    assert isinstance(error, AllAgentsFailedError)
    # The base classes are checked on caught.value: narrowing ``error`` to them would hide
    # ``attempts`` from the type checker.
    assert isinstance(caught.value, ExceptionGroup)
    assert isinstance(caught.value, SynapseError)
    assert [a.agent_id for a in error.attempts] == ["a", "b", "c", "d"]
    kinds = [type(a.error) for a in error.attempts]
    assert kinds == [RuntimeError, ConnectionError, AgentTimeoutError, NoClientError]
    assert error.__cause__ is error.attempts[-1].error
    assert "first" in str(error)
    assert "second" in str(error)
    timeouts: list[BaseException] = []
    try:
        raise error
    except* TimeoutError as group:
        timeouts.extend(group.exceptions)
    except* Exception:
        pass
    assert [type(e) for e in timeouts] == [AgentTimeoutError]


async def test_max_attempts_and_failover_on() -> None:
    a, b, c = Crash(), Crash(), Echo("c")
    fed = _federation(("a", 0.1, a), ("b", 0.2, b), ("c", 0.3, c))
    with pytest.raises(AllAgentsFailedError) as caught:
        await fed.run("task", max_attempts=2)
    assert len(caught.value.attempts) == 2
    assert c.calls == 0
    strict = _federation(("a", 0.1, Crash(TypeError("bug"))), ("c", 0.3, c),
                         failover_on=ConnectionError)  # fmt: skip
    with pytest.raises(TypeError, match="bug"):
        await strict.run("task")
    assert c.calls == 0


async def test_no_match_and_no_client() -> None:
    fed = AgentFederation()
    with pytest.raises(NoAgentAvailableError, match="No agents match"):
        await fed.run("task")
    fed.register_agent(AgentMetadata("a", "m", endpoint="http://pool:1"))
    with pytest.raises(NoClientError):
        fed.get_client("a")
    fed.add_client("http://pool:1", Echo("pool"))  # endpoint fallback
    assert (await fed.run("task"))[0] == "pool"
    assert fed.unregister_agent("a") is True
    assert "a" not in fed.clients


async def test_timeout_applies_to_sync_clients_without_blocking_the_loop() -> None:
    """A sync client runs in a worker thread: the timeout ends the run without waiting for it,
    and the event loop keeps running meanwhile (the client, still in its call, sees a task of
    the loop run; a client run on the loop's thread would wait its 10 s for it in vain)."""
    in_call, loop_ran, finished = threading.Event(), threading.Event(), threading.Event()
    saw_the_loop: list[bool] = []

    class SlowSync:
        def run(self, prompt: str) -> str:
            in_call.set()
            saw_the_loop.append(loop_ran.wait(10))
            time.sleep(0.5)  # (well past the run's timeout)
            finished.set()
            return "late"

    fed = AgentFederation()
    fed.register_agent(AgentMetadata("slow", "m"), client=SlowSync())

    async def ticker() -> None:
        while True:
            await anyio.sleep(0.01)
            if in_call.is_set():
                loop_ran.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        started = time.monotonic()
        with pytest.raises(AgentTimeoutError) as caught:
            await fed.run("p", agent_id="slow", timeout=0.1)
        elapsed = time.monotonic() - started
        assert await anyio.to_thread.run_sync(finished.wait, 10)
        tg.cancel_scope.cancel()
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.agent_id == "slow"
    assert elapsed < 0.4  # the timeout did not wait for the call
    assert saw_the_loop == [True]


async def test_timeout_applies_to_async_clients() -> None:
    fed = AgentFederation()
    fed.register_agent(AgentMetadata("hang", "m"), client=Hang())
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await fed.run("p", agent_id="hang", timeout=0.05)
    assert time.monotonic() - started < 1
    assert fed.statistics().agents["hang"].failures == 1
    assert fed.statistics().in_flight == 0


async def test_cancellation_frees_the_slot_and_is_not_a_failure() -> None:
    fed = AgentFederation()
    fed.register_agent(AgentMetadata("hang", "m"), client=Hang())
    with anyio.move_on_after(0.05):
        await fed.run("p")
    stats = fed.statistics()
    assert stats.in_flight == 0
    assert "hang" not in stats.agents  # no outcome recorded


def _counting_client(
    peak: dict[str, int], current: dict[str, int], *, sync: bool
) -> Callable[[str], Any]:
    lock = threading.Lock()

    def enter(name: str) -> None:
        with lock:
            current[name] += 1
            peak[name] = max(peak[name], current[name])

    def leave(name: str) -> None:
        with lock:
            current[name] -= 1

    class Counting:
        def __init__(self, name: str) -> None:
            self.name = name

    class SyncCounting(Counting):
        def run(self, prompt: str) -> str:
            enter(self.name)
            time.sleep(0.005)
            leave(self.name)
            return self.name

    class AsyncCounting(Counting):
        async def run(self, prompt: str) -> str:
            enter(self.name)
            await anyio.sleep(0.005)
            leave(self.name)
            return self.name

    return SyncCounting if sync else AsyncCounting


@pytest.mark.parametrize("sync", [False, True], ids=["async-client", "sync-client"])
@pytest.mark.parametrize("strategy", ["round_robin", "least_loaded", "capacity_aware"])
async def test_capacity_holds_under_100_concurrent_runs(sync: bool, strategy: str) -> None:
    peak: dict[str, int] = defaultdict(int)
    current: dict[str, int] = defaultdict(int)
    client_type = _counting_client(peak, current, sync=sync)
    fed = AgentFederation(default_strategy=strategy)
    capacities = {"a": 1, "b": 2, "c": 3, "d": 4}
    for agent_id, capacity in capacities.items():
        fed.register_agent(AgentMetadata(agent_id, "m", capacity=capacity),
                           client=client_type(agent_id))  # fmt: skip
    results: list[str] = []

    async def one() -> None:
        results.append(await fed.run("p", timeout=10))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(one)
    assert len(results) == 100
    assert all(peak[agent_id] <= capacity for agent_id, capacity in capacities.items())
    assert sum(peak.values()) > 4  # runs really overlapped
    assert fed.statistics().in_flight == 0


async def test_a_full_agent_is_waited_for_within_the_timeout() -> None:
    fed = AgentFederation()
    release = anyio.Event()

    class Held:
        async def run(self, prompt: str) -> str:
            await release.wait()
            return "done"

    fed.register_agent(AgentMetadata("one", "m", capacity=1), client=Held())
    async with anyio.create_task_group() as tg:
        tg.start_soon(fed.run, "first")
        await anyio.sleep(0.01)
        with pytest.raises(AgentTimeoutError, match="free slot"):
            await fed.run("second", timeout=0.05)
        with pytest.raises(AgentTimeoutError, match="free slot"):
            await fed.run("third", agent_id="one", timeout=0.05)
        waiting = []

        async def second() -> None:
            waiting.append(await fed.run("second"))

        tg.start_soon(second)
        await anyio.sleep(0.02)
        assert waiting == []
        release.set()
    assert waiting == ["done"]


async def test_repeated_failures_demote_an_agent_for_a_cooldown() -> None:
    flaky, good = Crash(), Echo("good")
    fed = _federation(("flaky", 0.1, flaky), ("good", 1.0, good),
                      failure_threshold=2, cooldown=0.2)  # fmt: skip
    for _ in range(2):
        assert (await fed.run("task"))[0] == "good"
    assert flaky.calls == 2
    assert fed.statistics().agents["flaky"].demoted
    assert fed.select_agent().id == "good"  # demoted agents rank last
    for _ in range(3):
        await fed.run("task")
    assert flaky.calls == 2  # not tried during the cool-down
    await anyio.sleep(0.25)
    assert fed.select_agent().id == "flaky"  # back after the cool-down
    await fed.run("task")
    assert flaky.calls == 3
    assert fed.statistics().agents["flaky"].demoted  # one more failure re-demotes it


async def test_a_demoted_agent_is_not_used_while_a_healthy_one_is_only_busy() -> None:
    release = anyio.Event()

    class Held:
        calls = 0

        async def run(self, prompt: str) -> str:
            self.calls += 1
            await release.wait()
            return "healthy"

    flaky, held = Crash(), Held()
    fed = _federation(("flaky", 0.1, flaky), ("healthy", 1.0, held), failure_threshold=1)
    fed.register_agent(AgentMetadata("healthy", "m", cost_multiplier=1.0, capacity=1))
    results: list[str] = []

    async def one() -> None:
        results.append(await fed.run("task"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)  # flaky fails (demoted), then healthy takes it and holds its slot
        await anyio.sleep(0.02)
        tg.start_soon(one)  # healthy is full: wait for it rather than retry flaky
        await anyio.sleep(0.02)
        assert flaky.calls == 1
        release.set()
    assert results == ["healthy", "healthy"]
    assert held.calls == 2


def test_registry_must_implement_the_protocol() -> None:
    with pytest.raises(TypeError, match="AgentRegistryBackend"):
        AgentFederation(registry=object())  # type: ignore[arg-type]


async def test_registry_failure_hook_and_prune() -> None:
    class HookedRegistry(InMemoryAgentRegistry):
        def __init__(self) -> None:
            super().__init__(stale_timeout=5)
            self.marked: list[str] = []

        def mark_unhealthy(self, agent_id: str) -> None:
            self.marked.append(agent_id)

    registry = HookedRegistry()
    fed = _federation(("bad", 0.1, Crash()), ("good", 1.0, Echo("good")))
    fed = AgentFederation(registry, clients=fed.clients, default_strategy="cost_aware")
    fed.register_agent(AgentMetadata("bad", "m", cost_multiplier=0.1))
    fed.register_agent(AgentMetadata("good", "m", last_heartbeat=registry.now() - 60))
    with pytest.raises(AllAgentsFailedError):
        await fed.run("task")
    assert registry.marked == ["bad"]
    assert fed.prune_stale() == ["good"]
    assert "good" not in fed.clients


async def test_serve_heartbeats() -> None:
    clock = [0.0]
    registry = InMemoryAgentRegistry(stale_timeout=5, clock=lambda: clock[0])
    registry.register(AgentMetadata("a", "m"))
    clock[0] = 100.0
    assert not registry.is_healthy("a")
    async with anyio.create_task_group() as tg:
        await tg.start(serve_heartbeats, registry, ["a", "ghost"])
        assert registry.is_healthy("a")
        tg.cancel_scope.cancel()


async def test_federation_over_redis(redis_registry: Callable[..., Any]) -> None:
    registry = redis_registry()
    fed = AgentFederation(registry)
    for agent_id in ("a", "b"):
        fed.register_agent(AgentMetadata(agent_id, "m", tags=["t"]), client=Echo(agent_id))
    fed.register_agent(AgentMetadata("c", "m", tags=["t"]))  # another process's agent
    picks = [(await fed.run("p", tags="t", max_attempts=1))[0] for _ in range(2)]
    assert picks == ["a", "b"]
    # c has no client here: skipped without using up the single attempt
    assert (await fed.run("p", tags="t", max_attempts=1))[0] == "a"
    assert (await fed.run("p", agent_id="b"))[0] == "b"
    async with anyio.create_task_group() as tg:
        await tg.start(serve_heartbeats, registry, ["a"])
        tg.cancel_scope.cancel()
