"""Routing across a live swarm: SwarmAgentRegistry + NodeAgentClient with real nodes.

Nodes run on the in-memory network of ``synapse_p2p.testing.open_swarm`` (real RPC, no
sockets), in real time, under trio and asyncio. Node 0 is the router; the others are agents
with ask handlers and (mostly) agent cards.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from synapse_p2p import Node
from synapse_p2p.errors import CallTimeout, ConnectError, RemoteError
from synapse_p2p.federation import (
    AgentCard,
    AgentFederation,
    AgentMetadata,
    AllAgentsFailedError,
    NoAgentAvailableError,
    NodeAgentClient,
    RoutingStrategy,
    SwarmAgentRegistry,
    UnknownAgentError,
)
from synapse_p2p.testing import Swarm, open_swarm

pytestmark = pytest.mark.anyio


@dataclass
class Agents:
    """Per-node counters kept by the stand-in ask handlers."""

    in_flight: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    handled: dict[str, int] = field(default_factory=dict)


def serve_agent(node: Node, agents: Agents, *, delay: float = 0.0, fail: bool = False) -> None:
    name = node.name
    agents.in_flight[name] = agents.peak[name] = agents.handled[name] = 0

    @node.ask
    async def answer(task: str, context: dict[str, Any]) -> Any:
        agents.in_flight[name] += 1
        agents.peak[name] = max(agents.peak[name], agents.in_flight[name])
        try:
            await anyio.sleep(delay)
            if fail:
                raise ValueError(f"{name} is broken")
            agents.handled[name] += 1
            return {"by": name, "task": task, "context": context}
        finally:
            agents.in_flight[name] -= 1


@contextlib.asynccontextmanager
async def agent_swarm(
    cards: Mapping[int, Any],
    n: int,
    *,
    delay: float = 0.0,
    failing: tuple[int, ...] = (),
    registry_options: Mapping[str, Any] | None = None,
    configure: Callable[[int], dict[str, Any]] | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[Swarm, SwarmAgentRegistry, Agents]]:
    """``n`` nodes: node 0 routes, nodes 1.. answer asks; ``cards[i]`` is node i's card."""
    agents = Agents()
    async with open_swarm(n, configure=configure, **settings) as swarm:
        for i, node in enumerate(swarm.nodes[1:], start=1):
            serve_agent(node, agents, delay=delay, fail=i in failing)
            if i in cards:
                node.artifact("agent-card", cards[i])
        registry = SwarmAgentRegistry(swarm[0], **(registry_options or {}))
        async with anyio.create_task_group() as tg:
            await tg.start(registry.run)
            yield swarm, registry, agents
            tg.cancel_scope.cancel()


def by_name(swarm: Swarm, registry: SwarmAgentRegistry) -> dict[str, AgentMetadata]:
    names = {node.node_id: node.name for node in swarm.nodes}
    return {names[agent.id]: agent for agent in registry.list()}


async def test_agent_cards_feed_metadata() -> None:
    cards = {
        1: {"model": "gpt-x", "tools": ["calculator"], "tags": ["math"], "capacity": 4,
            "cost_multiplier": 0.5, "name": "ignored", "id": "forged", "endpoint": "x:1"},
        2: {"model": "", "tools": "web_search", "tags": ["research", 7, ""], "capacity": "lots",
            "cost": -1, "capabilities": ["review", {"name": "summarize"}, {"no": "name"}]},
        3: "not a card",
    }  # fmt: skip
    caps: dict[int, dict[str, Any]] = {4: {"capabilities": ["translate"]}}
    async with agent_swarm(cards, 5, configure=lambda i: caps.get(i, {})) as (swarm, reg, _):
        agents = by_name(swarm, reg)
        assert sorted(agents) == ["node1", "node2", "node3", "node4"]  # never the router
        one, two, three, four = (agents[f"node{i}"] for i in range(1, 5))
        assert (one.id, one.model, one.tools, one.tags) == (
            swarm[1].node_id, "gpt-x", ["calculator"], ["math"]
        )  # fmt: skip
        assert (one.capacity, one.cost_multiplier) == (4, 0.5)
        assert one.endpoint == f"{swarm[1].address}:{swarm[1].port}"
        assert isinstance(one.last_heartbeat, float)
        assert (two.model, two.tools, two.capacity, two.cost_multiplier) == (
            "unknown", ["web_search"], 1, 1.0
        )  # fmt: skip
        assert two.tags == ["research", "review", "summarize"]
        assert (three.model, three.tags, three.capacity) == ("unknown", [], 1)
        assert four.tags == ["translate"]  # advertised capabilities become tags
        cards_seen = reg.cards()
        assert cards_seen[swarm[3].node_id] is None
        assert cards_seen[swarm[4].node_id] is None
        assert cards_seen[swarm[1].node_id] == AgentCard(
            "gpt-x", ("calculator",), ("math",), 4, 0.5
        )
        assert [a.id for a in reg.discover(tags=["research"])] == [two.id]
        assert [a.id for a in reg.discover(tools="calculator", min_capacity=4)] == [one.id]
        assert reg.discover(min_capacity=5) == []

    options = {"require_card": True, "capabilities_as_tags": False, "default_model": "m0"}
    async with agent_swarm(cards, 5, configure=lambda i: caps.get(i, {}),
                           registry_options=options) as (swarm, reg, _):  # fmt: skip
        agents = by_name(swarm, reg)
        assert sorted(agents) == ["node1", "node2"]
        assert agents["node2"].model == "m0"


async def test_routing_by_tags_tools_and_strategy() -> None:
    cards = {
        1: {"model": "small", "tags": ["math"], "capacity": 2, "cost_multiplier": 0.5},
        2: {"model": "large", "tags": ["math"], "capacity": 8, "cost_multiplier": 2.0},
        3: {"model": "web", "tools": ["web_search"], "tags": ["research"], "capacity": 3},
    }
    async with agent_swarm(cards, 4) as (swarm, registry, agents):
        federation = AgentFederation(registry=registry)
        turns = [(await federation.run("2+2", tags=["math"]))["by"] for _ in range(4)]
        assert sorted(turns) == ["node1", "node1", "node2", "node2"]
        assert turns[0] != turns[1]  # round robin alternates
        cheap = await federation.run("2+2", tags="math", strategy=RoutingStrategy.COST_AWARE)
        assert cheap["by"] == "node1"
        big = await federation.run("2+2", tags=["math"], strategy="capacity_aware")
        assert big["by"] == "node2"
        answer = await federation.run("news?", tools=["web_search"], user="ann", n=3)
        assert answer == {"by": "node3", "task": "news?", "context": {"user": "ann", "n": 3}}
        assert federation.select_agent(tools=["web_search"]).id == swarm[3].node_id
        direct = await federation.run("hi", agent_id=swarm[2].node_id)
        assert direct["by"] == "node2"
        with pytest.raises(NoAgentAvailableError):
            await federation.run("?", tags=["poetry"])
        assert sum(agents.handled.values()) == 8


async def test_capacity_limits_hold_under_100_concurrent_runs() -> None:
    cards = {i: {"tags": ["work"], "capacity": cap} for i, cap in ((1, 2), (2, 3), (3, 5))}
    async with agent_swarm(cards, 4, delay=0.02) as (_swarm, registry, agents):
        federation = AgentFederation(registry=registry, default_strategy="least_loaded")
        results: list[str] = []

        async def one(k: int) -> None:
            results.append((await federation.run(f"job {k}", tags=["work"], timeout=30))["by"])

        async with anyio.create_task_group() as tg:
            for k in range(100):
                tg.start_soon(one, k)
        assert len(results) == 100
        assert agents.peak == {"node1": 2, "node2": 3, "node3": 5}
        assert sum(agents.handled.values()) == 100
        assert all(count == 0 for count in agents.in_flight.values())
        assert all(s.in_flight == 0 for s in federation.statistics().agents.values())


async def test_failover_when_a_remote_handler_raises() -> None:
    cards = {1: {"tags": ["t"], "cost": 0.1}, 2: {"tags": ["t"], "cost": 1.0}}
    async with agent_swarm(cards, 3, failing=(1,)) as (swarm, registry, agents):
        federation = AgentFederation(registry=registry, default_strategy="cost_aware")
        for _ in range(3):
            assert (await federation.run("q", tags=["t"]))["by"] == "node2"
        assert agents.peak["node1"] == 1  # tried first (cheapest), failed, failed over
        assert agents.handled == {"node1": 0, "node2": 3}
        with pytest.raises(RemoteError) as info:  # one attempt: the error comes back unchanged
            await federation.run("q", agent_id=swarm[1].node_id)
        assert info.value.code == "internal_error"
        assert "node1 is broken" in info.value.message

    async with agent_swarm(cards, 3, failing=(1, 2)) as (swarm, registry, _agents):
        federation = AgentFederation(registry=registry)
        with pytest.raises(AllAgentsFailedError) as group:
            await federation.run("q", tags=["t"])
        assert {a.agent_id for a in group.value.attempts} == {swarm[1].node_id, swarm[2].node_id}
        assert all(isinstance(a.error, RemoteError) for a in group.value.attempts)


async def test_a_dead_node_stops_being_selected_within_failure_detection() -> None:
    interval, timeout = 0.1, 0.6
    cards = {i: {"tags": ["t"]} for i in (1, 2, 3)}
    settings: dict[str, Any] = {"heartbeat_interval": interval, "peer_timeout": timeout}
    async with agent_swarm(cards, 4, **settings) as (swarm, registry, _agents):
        federation = AgentFederation(registry=registry)
        dead = swarm[2]
        assert dead.node_id in {a.id for a in federation.discover(tags=["t"])}
        swarm.kill(dead)
        killed = anyio.current_time()
        answers: list[str] = []
        with anyio.fail_after(10):
            while dead.node_id in {a.id for a in registry.discover(tags=["t"])}:
                answers.append((await federation.run("q", tags=["t"]))["by"])  # fails over
                await anyio.sleep(0.01)
        assert anyio.current_time() - killed <= timeout + 2 * interval + 0.5
        assert "node2" not in answers
        assert not registry.is_healthy(dead.node_id)
        assert registry.get(dead.node_id) is None
        assert {federation.select_agent(tags=["t"]).id for _ in range(20)} == {
            swarm[1].node_id, swarm[3].node_id
        }  # fmt: skip
        with pytest.raises(UnknownAgentError):
            await federation.run("q", agent_id=dead.node_id)


async def test_cards_refresh_and_joining_peers_are_fetched() -> None:
    options = {"refresh": 0.2}
    async with agent_swarm({1: {"model": "v1"}}, 2, registry_options=options) as (
        swarm,
        registry,
        _agents,
    ):
        one = swarm[1].node_id
        swarm[1].artifact("agent-card", {"model": "v2"})
        with anyio.fail_after(5):
            while registry.get(one).model != "v2":  # type: ignore[union-attr]
                await anyio.sleep(0.02)  # the periodic refresh picks it up
        swarm[1].artifact("agent-card", {"model": "v3"})
        await registry.refresh()  # or at once, on demand
        assert registry.get(one).model == "v3"  # type: ignore[union-attr]

        assert swarm.network is not None
        late = Node(
            name="late", bind="10.0.9.1", port=7000, swarm="test",
            transport=swarm.network.transport("10.0.9.1"),
            seeds=[f"{swarm[0].address}:{swarm[0].port}"],
        )  # fmt: skip
        late.artifact("agent-card", {"model": "late-model", "tags": ["new"]})
        async with late:
            with anyio.fail_after(5):
                while not registry.discover(tags=["new"]):  # fetched on peer.joined
                    await anyio.sleep(0.02)
            assert registry.discover(tags=["new"])[0].model == "late-model"


async def test_local_overrides_hiding_and_heartbeats() -> None:
    async with agent_swarm({1: {"model": "card"}}, 3) as (swarm, registry, _agents):
        one, two = swarm[1].node_id, swarm[2].node_id
        stored = registry.register(AgentMetadata(id=one, model="pinned", tags=["vip"], capacity=7))
        assert (stored.model, stored.tags, stored.capacity) == ("pinned", ["vip"], 7)
        assert stored.endpoint == f"{swarm[1].address}:{swarm[1].port}"
        assert [a.id for a in registry.discover(tags=["vip"])] == [one]
        assert registry.register(AgentMetadata(id="future", model="m")).id == "future"
        assert registry.get("future") is None  # applies once such a peer is alive
        assert registry.unregister(two) is True
        assert registry.get(two) is None
        assert not registry.is_healthy(two)
        assert [a.id for a in registry.list()] == [one]
        assert registry.unregister("nobody") is False
        registry.reset(one)
        registry.reset(two)
        assert registry.get(one).model == "card"  # type: ignore[union-attr]
        assert {a.id for a in registry.list()} == {one, two}
        assert registry.heartbeat(one).id == one  # no effect: membership owns liveness
        with pytest.raises(UnknownAgentError):
            registry.heartbeat("nobody")
        with pytest.raises(ValueError):
            registry.heartbeat(one, float("nan"))
        assert registry.prune_stale() == []
        assert registry.stale_timeout == swarm[0].peer_timeout
        with pytest.raises(TypeError):
            registry.register({"id": one})  # type: ignore[arg-type]


async def test_node_agent_client() -> None:
    async with agent_swarm({}, 2, delay=0.2) as (swarm, registry, _agents):
        router, peer = swarm[0], swarm.nodes[1]
        client = NodeAgentClient(router, router.peers[peer.node_id], timeout=5)
        assert await client.run("t", a=1) == {"by": "node1", "task": "t", "context": {"a": 1}}
        assert registry.client_for(peer.node_id) is registry.client_for(peer.node_id)
        assert registry.client_for("nobody") is None
        with pytest.raises(CallTimeout):
            await NodeAgentClient(router, peer.node_id, timeout=0.05).run("slow")
        with pytest.raises(ConnectError):
            await NodeAgentClient(router, "no-such-peer").run("t")
        with pytest.raises(RuntimeError):
            await registry.run()  # already running
        for bad in [None, ""]:
            with pytest.raises(TypeError):
                NodeAgentClient(router, bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            NodeAgentClient(router, "x", timeout=0)
    # Stopped: the registry's subscription to membership events is gone.
    assert router.statistics().subscriptions == 0


def test_agent_card_parsing_is_lenient() -> None:
    assert AgentCard.parse({}) == AgentCard()
    assert AgentCard.parse('{"model": "m", "capacity": 3.0}') == AgentCard(model="m", capacity=3)
    bad: object
    for bad in (None, [], "[1]", "{", 3, b"{}"):
        assert AgentCard.parse(bad) is None
    odd = AgentCard.parse(
        {"model": 5, "tools": {"a": 1}, "tags": "solo", "capacity": True, "cost": float("nan")}
    )
    assert odd == AgentCard(tags=("solo",))
    assert AgentCard.parse({"capacity": 2.5, "cost_multiplier": "1"}) == AgentCard()
    assert AgentCard.parse({"capacity": -1, "cost": 0}) == AgentCard(cost_multiplier=0.0)
    many = AgentCard.parse({"tools": [f"t{i}" for i in range(1000)] + ["x" * 300]})
    assert many is not None
    assert len(many.tools) == 256
    assert AgentCard.parse({"tags": ["a", "a"], "capabilities": "a"}) == AgentCard(tags=("a",))


def test_registry_arguments_are_checked() -> None:
    node = Node(bind="127.0.0.1")
    bad_values: list[dict[str, Any]] = [
        {"refresh": 0}, {"fetch_timeout": -1}, {"max_concurrent_fetches": 0}
    ]  # fmt: skip
    for kwargs in bad_values:
        with pytest.raises(ValueError):
            SwarmAgentRegistry(node, **kwargs)
    bad_types: list[dict[str, Any]] = [{"card": ""}, {"default_model": 3}, {"refresh": "1"}]
    for kwargs in bad_types:
        with pytest.raises(TypeError):
            SwarmAgentRegistry(node, **kwargs)
    registry = SwarmAgentRegistry(node)
    assert registry.blocking is False
    assert registry.list() == []
    assert isinstance(AgentFederation(registry=registry).registry, SwarmAgentRegistry)


async def test_a_timed_out_call_does_not_keep_running_on_the_peer() -> None:
    """The call's lease ends with its timeout: the peer cancels the handler."""
    async with open_swarm(2) as swarm:
        router, peer = swarm[0], swarm[1]
        running: list[str] = []
        cancelled = anyio.Event()

        @peer.ask
        async def handle(task: str, context: dict[str, Any]) -> str:
            running.append(task)
            try:
                await anyio.sleep_forever()
            finally:
                cancelled.set()
            return "never"

        with pytest.raises(CallTimeout):
            await NodeAgentClient(router, peer.node_id, timeout=0.3).run("long")
        with anyio.fail_after(5):
            await cancelled.wait()
        assert running == ["long"]
        # A bad lease from another caller is refused before the handler runs.
        with pytest.raises(RemoteError, match="lease must be"):
            await router.call_peer(peer.self_peer(), "_node.ask", "t", lease=-1)
        assert running == ["long"]
