"""Routing strategies, the shared tie-break rule, and thread-safe round robin."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import anyio
import pytest

from synapse_p2p.federation import (
    AgentFederation,
    AgentMetadata,
    AgentRoutingStrategy,
    InMemoryAgentRegistry,
    NoAgentAvailableError,
    RoutingStrategy,
)


class Recording:
    """An async client that records what it receives."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def run(self, prompt: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((prompt, kwargs))
        return {"agent": self.name, "prompt": prompt, "kwargs": kwargs}


FIXTURE = [  # synapsekit's upstream fixture: id, capacity, cost, tags
    ("research-a", 2, 1.5, ["research"]),
    ("research-b", 4, 0.9, ["research"]),
    ("compliance-a", 1, 2.0, ["compliance"]),
    ("support-a", 5, 0.7, ["support"]),
    ("support-b", 3, 0.5, ["support"]),
]


@pytest.fixture
def federation() -> AgentFederation:
    fed = AgentFederation(InMemoryAgentRegistry(stale_timeout=10))
    for agent_id, capacity, cost, tags in FIXTURE:
        tools = ["search"] if agent_id.startswith("research") else []
        fed.register_agent(
            AgentMetadata(agent_id, "m", tools, capacity, cost, tags),
            client=Recording(agent_id),
        )
    return fed


def test_strategy_enum_and_names() -> None:
    assert [s.value for s in RoutingStrategy] == [
        "round_robin", "capacity_aware", "cost_aware", "least_loaded",
    ]  # fmt: skip
    assert isinstance(RoutingStrategy.ROUND_ROBIN, str)
    assert AgentRoutingStrategy is RoutingStrategy
    fed = AgentFederation(default_strategy="Round-Robin")
    assert fed.default_strategy is RoutingStrategy.ROUND_ROBIN
    for name, member in [
        ("rr", "round_robin"), ("RoundRobin", "round_robin"), ("capacity", "capacity_aware"),
        ("COST", "cost_aware"), ("cost-aware-routing", "cost_aware"),
        ("least-loaded", "least_loaded"),
    ]:  # fmt: skip
        assert AgentFederation(default_strategy=name).default_strategy.value == member
    with pytest.raises(ValueError, match="Unknown routing strategy: fastest"):
        AgentFederation(default_strategy="fastest")


def test_round_robin_visits_in_order_and_wraps(federation: AgentFederation) -> None:
    picks = [federation.select_agent().id for _ in range(7)]
    assert picks == [
        "research-a", "research-b", "compliance-a", "support-a", "support-b",
        "research-a", "research-b",
    ]  # fmt: skip


def test_capacity_and_cost_aware(federation: AgentFederation) -> None:
    assert federation.select_agent(strategy="capacity_aware").id == "support-a"
    assert federation.select_agent(strategy=RoutingStrategy.COST_AWARE).id == "support-b"
    chosen = federation.select_agent(
        strategy="cost_aware", tools=["search"], tags=["research"], min_capacity=3
    )
    assert chosen.id == "research-b"
    assert federation.select_agent(strategy="").id == "research-a"  # falsy -> default


def test_no_match_raises_lookup_error(federation: AgentFederation) -> None:
    with pytest.raises(LookupError, match=r"No agents match the discovery filters\."):
        federation.select_agent(tags=["nobody"])
    with pytest.raises(NoAgentAvailableError):
        federation.select_agent(tools=["search"], min_capacity=100)


def test_capacity_zero_is_never_routed() -> None:
    fed = AgentFederation()
    fed.register_agent(AgentMetadata("drained", "m", capacity=0, cost_multiplier=0.0))
    fed.register_agent(AgentMetadata("live", "m", capacity=1))
    assert {fed.select_agent(strategy=s).id for s in RoutingStrategy for _ in range(3)} == {"live"}
    fed.unregister_agent("live")
    with pytest.raises(NoAgentAvailableError, match="capacity 0: drained"):
        fed.select_agent()


def _tied_federation() -> AgentFederation:
    fed = AgentFederation()
    for agent_id, capacity, cost in [("a", 2, 1.0), ("b", 5, 0.5), ("c", 5, 0.5), ("d", 1, 0.5)]:
        fed.register_agent(AgentMetadata(agent_id, "m", capacity=capacity, cost_multiplier=cost),
                           client=Recording(agent_id))  # fmt: skip
    return fed


def test_ties_rotate_in_select_agent() -> None:
    fed = _tied_federation()
    assert [fed.select_agent(strategy="capacity_aware").id for _ in range(4)] == list("bcbc")
    assert [fed.select_agent(strategy="cost_aware").id for _ in range(4)] == list("bcdb")


@pytest.mark.anyio
async def test_run_uses_the_same_tie_rule_as_select_agent() -> None:
    fed = _tied_federation()
    ran = [(await fed.run("p", strategy="capacity_aware"))["agent"] for _ in range(4)]
    assert ran == list("bcbc")  # synapsekit's run() always picked b
    mixed = []
    for _ in range(2):
        mixed.append(fed.select_agent(strategy="cost_aware").id)
        mixed.append((await fed.run("p", strategy="cost_aware"))["agent"])
    assert mixed == list("bcdb")  # select and run share one rotation


def test_rotation_does_not_restart_when_membership_changes() -> None:
    fed = AgentFederation()
    for agent_id in "abcd":
        fed.register_agent(AgentMetadata(agent_id, "m"))
    assert [fed.select_agent().id for _ in range(6)] == list("abcdab")
    fed.register_agent(AgentMetadata("e", "m"))
    assert [fed.select_agent().id for _ in range(3)] == list("bcd")  # not a, b, c


def test_round_robin_is_thread_safe() -> None:
    fed = AgentFederation()
    for agent_id in "abcd":
        fed.register_agent(AgentMetadata(agent_id, "m"))
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def pick() -> None:
        local = Counter(fed.select_agent().id for _ in range(2000))
        with lock:
            counts.update(local)

    threads = [threading.Thread(target=pick) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counts == dict.fromkeys("abcd", 4000)  # no lost or duplicate turns


def test_discovery_cache_follows_registry_changes() -> None:
    clock = [100.0]
    registry = InMemoryAgentRegistry(stale_timeout=10, clock=lambda: clock[0])
    fed = AgentFederation(registry)
    fed.register_agent(AgentMetadata("a", "m"))
    assert fed.select_agent().id == "a"
    fed.register_agent(AgentMetadata("b", "m", last_heartbeat=95.0))
    assert {fed.select_agent().id for _ in range(2)} == {"a", "b"}
    clock[0] = 105.5  # b's heartbeat is now 10.5 s old
    assert {fed.select_agent().id for _ in range(4)} == {"a"}
    registry.heartbeat("b")
    assert {fed.select_agent().id for _ in range(2)} == {"a", "b"}
    clock[0] = 106.0
    registry.heartbeat("a")  # keeps the cache, yet select returns the fresh record
    picks = [fed.select_agent() for _ in range(2)]
    assert {a.id: a.last_heartbeat for a in picks} == {"a": 106.0, "b": 105.5}
    registry.stale_timeout = 1.0
    clock[0] = 107.5
    with pytest.raises(NoAgentAvailableError):
        fed.select_agent()
    assert fed.select_agent(healthy_only=False).id in {"a", "b"}


@pytest.mark.anyio
async def test_least_loaded_and_capacity_aware_follow_load() -> None:
    fed = AgentFederation()
    release = anyio.Event()
    started = anyio.Event()

    class Held:
        async def run(self, prompt: str) -> str:
            started.set()
            await release.wait()
            return "held"

    fed.register_agent(AgentMetadata("big", "m", capacity=4), client=Held())
    fed.register_agent(AgentMetadata("small", "m", capacity=2), client=Recording("small"))
    assert fed.select_agent(strategy="capacity_aware").id == "big"
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            started = anyio.Event()
            tg.start_soon(lambda: fed.run("p", agent_id="big"))
            await started.wait()
        assert fed.statistics().agents["big"].in_flight == 3
        # big: 1 free of 4 (75 % busy); small: 2 free of 2 (idle)
        assert fed.select_agent(strategy="least_loaded").id == "small"
        assert fed.select_agent(strategy="capacity_aware").id == "small"
        release.set()
    assert fed.statistics().in_flight == 0
