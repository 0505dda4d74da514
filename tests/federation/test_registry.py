"""The registry protocol: one suite, run against the in-memory and the Redis registry."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from synapse_p2p.federation import (
    AgentMetadata,
    AgentRegistryBackend,
    InMemoryAgentRegistry,
    UnknownAgentError,
)

MakeRegistry = Callable[..., Any]


def _agent(agent_id: str, **kwargs: Any) -> AgentMetadata:
    return AgentMetadata(id=agent_id, model="m", **kwargs)


def test_implements_the_protocol(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    assert isinstance(registry, AgentRegistryBackend)
    assert registry.stale_timeout == 30.0


def test_register_fills_heartbeat_and_returns_a_copy(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    before = registry.now()
    stored = registry.register(_agent("a", tools=["x"]))
    assert stored.last_heartbeat is not None
    assert before - 1 <= stored.last_heartbeat <= registry.now() + 1
    stored.tools.append("mutated")
    fetched = registry.get("a")
    assert fetched is not None
    assert fetched.tools == ["x"]
    fetched.tags.append("mutated")
    assert registry.get("a") == stored.__class__.from_dict({**fetched.to_dict(), "tags": []})


def test_register_keeps_an_explicit_heartbeat_and_upserts(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    registry.register(_agent("a", last_heartbeat=123.5))
    assert registry.get("a").last_heartbeat == 123.5
    registry.register(_agent("a", capacity=7, last_heartbeat=200.25))
    agent = registry.get("a")
    assert (agent.capacity, agent.last_heartbeat) == (7, 200.25)
    assert [a.id for a in registry.list()] == ["a"]


def test_register_validates(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    agent = _agent("a")
    agent.capacity = -3  # attribute writes are not checked; register re-validates
    with pytest.raises(ValueError, match="capacity"):
        registry.register(agent)
    with pytest.raises(TypeError):
        registry.register({"id": "a", "model": "m"})
    assert registry.list() == []


def test_unregister_get_list(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    for agent_id in ("a", "b", "c"):
        registry.register(_agent(agent_id))
    assert [a.id for a in registry.list()] == ["a", "b", "c"]
    assert registry.unregister("b") is True
    assert registry.unregister("b") is False
    assert registry.get("b") is None
    assert [a.id for a in registry.list()] == ["a", "c"]


def test_heartbeat(make_registry: MakeRegistry) -> None:
    registry = make_registry(stale_timeout=10)
    registry.register(_agent("a", last_heartbeat=registry.now() - 100))
    assert not registry.is_healthy("a")
    beat = registry.heartbeat("a")
    assert beat.id == "a"
    assert registry.is_healthy("a")
    assert registry.heartbeat("a", timestamp=42).last_heartbeat == 42.0
    assert registry.get("a").last_heartbeat == 42.0
    with pytest.raises(KeyError, match="Unknown agent id: ghost"):
        registry.heartbeat("ghost")
    with pytest.raises(UnknownAgentError):
        registry.heartbeat("ghost")
    with pytest.raises(ValueError, match="timestamp"):
        registry.heartbeat("a", timestamp=float("nan"))
    assert registry.is_healthy("ghost") is False


def test_discover_filters(make_registry: MakeRegistry) -> None:
    registry = make_registry(stale_timeout=10)
    now = registry.now()
    registry.register(_agent("r1", tools=["search", "web"], tags=["research"], capacity=3))
    registry.register(_agent("r2", tools=["search"], tags=["research", "eu"], capacity=1))
    registry.register(_agent("s1", tools=["ticket"], tags=["support"], capacity=2))
    registry.register(_agent("x1", tools=["search"], tags=["research"], last_heartbeat=now - 60))

    def ids(**kwargs: Any) -> list[str]:
        return [a.id for a in registry.discover(**kwargs)]

    assert ids() == ["r1", "r2", "s1"]
    assert ids(healthy_only=False) == ["r1", "r2", "s1", "x1"]
    assert ids(tools=["search"]) == ["r1", "r2"]
    assert ids(tools=["search", "web"]) == ["r1"]  # all-of
    assert ids(tools="ticket", tags="support") == ["s1"]  # bare strings
    assert ids(tags=["research", "eu"]) == ["r2"]
    assert ids(min_capacity=2) == ["r1", "s1"]  # inclusive
    assert ids(min_capacity=0) == ["r1", "r2", "s1"]
    assert ids(tools=[], tags=None) == ["r1", "r2", "s1"]  # empty means no filter
    assert ids(tools=["search"], tags=["research"], min_capacity=2) == ["r1"]
    assert ids(tools=["missing"]) == []
    with pytest.raises(ValueError, match="tools"):
        registry.discover(tools="")
    with pytest.raises(TypeError):
        registry.discover(["search"])  # keyword-only


def test_prune_stale(make_registry: MakeRegistry) -> None:
    registry = make_registry(stale_timeout=10)
    now = registry.now()
    registry.register(_agent("old", last_heartbeat=now - 100))
    registry.register(_agent("fresh"))
    registry.register(_agent("older", last_heartbeat=now - 1000))
    assert registry.prune_stale() == ["old", "older"]
    assert [a.id for a in registry.list()] == ["fresh"]
    assert registry.prune_stale() == []
    time.sleep(0.002)
    assert registry.prune_stale(stale_timeout=0.001) == ["fresh"]
    registry.register(_agent("mid", last_heartbeat=registry.now() - 50))
    assert registry.prune_stale(stale_timeout=1000) == []
    assert registry.prune_stale(stale_timeout=20) == ["mid"]
    with pytest.raises(ValueError, match="stale_timeout"):
        registry.prune_stale(stale_timeout=-1)


def test_synapsekit_aliases(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    registry.register_agent(_agent("a"))
    assert registry.get_agent("a").id == "a"
    assert [a.id for a in registry.list_agents()] == ["a"]
    assert registry.update_heartbeat("a").id == "a"
    assert [a.id for a in registry.discover_agents()] == ["a"]
    assert registry.prune_stale_agents() == []
    assert registry.unregister_agent("a") is True


def test_concurrent_registrations_from_threads(make_registry: MakeRegistry) -> None:
    registry = make_registry()

    def work(worker: int) -> None:
        for i in range(25):
            registry.register(_agent(f"w{worker}-{i}"))
            registry.heartbeat(f"w{worker}-{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(registry.list()) == 100


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "soon"])
def test_stale_timeout_is_validated(make_registry: MakeRegistry, bad: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="stale_timeout"):
        make_registry(stale_timeout=bad)


# -- in-memory specifics ---------------------------------------------------------------


class ManualClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_memory_clock_boundaries_and_order() -> None:
    clock = ManualClock(100.0)
    registry = InMemoryAgentRegistry(stale_timeout=10, clock=clock)
    registry.register(_agent("z"))
    registry.register(_agent("a", last_heartbeat=90.0))
    z = registry.get("z")
    assert z is not None
    assert z.last_heartbeat == 100.0
    assert registry.is_healthy("a")  # exactly 10 s old: inclusive
    clock.now = 100.5
    assert not registry.is_healthy("a")
    registry.register(_agent("z", capacity=4))  # re-register keeps the slot
    assert [a.id for a in registry.list()] == ["z", "a"]
    clock.now = 111.0
    assert registry.prune_stale() == ["z", "a"]


def test_memory_revision_tracks_changes() -> None:
    clock = ManualClock(100.0)
    registry = InMemoryAgentRegistry(stale_timeout=10, clock=clock)
    seen = [registry.revision]
    registry.register(_agent("a"))
    seen.append(registry.revision)
    registry.heartbeat("a")  # refreshing a healthy agent changes no discovery result
    seen.append(registry.revision)
    clock.now = 200.0
    registry.heartbeat("a")  # revives a stale agent
    seen.append(registry.revision)
    registry.heartbeat("a", timestamp=150.0)  # moves backwards
    seen.append(registry.revision)
    registry.unregister("a")
    seen.append(registry.revision)
    registry.unregister("a")
    seen.append(registry.revision)
    assert seen == [0, 1, 1, 2, 3, 4, 4]
