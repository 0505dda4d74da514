"""AgentMetadata: fields, defaults, validation, serialisation, health rule."""

from __future__ import annotations

import dataclasses
import math

import pytest

from synapse_p2p.federation import AgentMetadata


def test_fields_and_defaults_match_the_seed() -> None:
    names = [f.name for f in dataclasses.fields(AgentMetadata)]
    assert names == [
        "id", "model", "tools", "capacity", "cost_multiplier", "tags", "endpoint",
        "last_heartbeat",
    ]  # fmt: skip
    agent = AgentMetadata(id="a", model="m")
    assert (agent.tools, agent.capacity, agent.cost_multiplier, agent.tags) == ([], 1, 1.0, [])
    assert agent.endpoint is None
    assert agent.last_heartbeat is None
    assert not hasattr(agent, "__dict__")  # slots


def test_normalisation() -> None:
    agent = AgentMetadata(
        "a", "m", tools="search", capacity="3", cost_multiplier=2, tags=("x", "y", "x"),  # type: ignore[arg-type]
        last_heartbeat=5,
    )  # fmt: skip
    assert agent.tools == ["search"]
    assert agent.tags == ["x", "y"]  # duplicates dropped, order kept
    assert agent.capacity == 3
    assert isinstance(agent.capacity, int)
    assert agent.cost_multiplier == 2.0
    assert isinstance(agent.cost_multiplier, float)
    assert agent.last_heartbeat == 5.0
    assert AgentMetadata("a", "m", capacity=2.9).capacity == 2  # type: ignore[arg-type]  # int()
    assert AgentMetadata("a", "m", tools=None).tools == []  # type: ignore[arg-type]
    assert AgentMetadata("a", "m", capacity=0, cost_multiplier=0).capacity == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"capacity": math.nan}, ValueError, "capacity"),
        ({"capacity": -1}, ValueError, "capacity"),
        ({"capacity": math.inf}, ValueError, "capacity"),
        ({"capacity": "lots"}, ValueError, "capacity"),
        ({"capacity": None}, TypeError, "capacity"),
        ({"capacity": True}, TypeError, "capacity"),
        ({"capacity": [1]}, TypeError, "capacity"),
        ({"cost_multiplier": math.nan}, ValueError, "cost_multiplier"),
        ({"cost_multiplier": math.inf}, ValueError, "cost_multiplier"),
        ({"cost_multiplier": -0.5}, ValueError, "cost_multiplier"),
        ({"cost_multiplier": object()}, TypeError, "cost_multiplier"),
        ({"id": ""}, ValueError, "id"),
        ({"id": None}, TypeError, "id"),
        ({"model": 3}, TypeError, "model"),
        ({"model": ""}, ValueError, "model"),
        ({"tools": 5}, TypeError, "tools"),
        ({"tools": [1]}, TypeError, "tools"),
        ({"tags": [""]}, ValueError, "tags"),
        ({"endpoint": 80}, TypeError, "endpoint"),
        ({"last_heartbeat": math.nan}, ValueError, "last_heartbeat"),
    ],
)
def test_validation_names_the_field(kwargs: dict[str, object], error: type, field: str) -> None:
    fields: dict[str, object] = {"id": "a", "model": "m", **kwargs}
    with pytest.raises(error, match=field):
        AgentMetadata(**fields)  # type: ignore[arg-type]


def test_to_dict_from_dict_copy() -> None:
    agent = AgentMetadata("a", "m", ["t"], 2, 0.5, ["g"], "http://h:1", 10.0)
    data = agent.to_dict()
    assert list(data) == [
        "id", "model", "tools", "capacity", "cost_multiplier", "tags", "endpoint",
        "last_heartbeat",
    ]  # fmt: skip
    assert AgentMetadata.from_dict({**data, "extra": 1}) == agent
    assert AgentMetadata.from_dict({"id": "b", "model": "m"}) == AgentMetadata("b", "m")
    with pytest.raises(KeyError):
        AgentMetadata.from_dict({"id": "b"})
    copy = agent.copy()
    copy.tools.append("other")
    assert agent.tools == ["t"]
    assert copy == AgentMetadata.from_dict(copy.to_dict())
    data["tools"].append("x")
    assert agent.tools == ["t"]


def test_health_rule_is_inclusive() -> None:
    agent = AgentMetadata("a", "m", last_heartbeat=100.0)
    assert agent.is_healthy(10, now=110.0)
    assert not agent.is_healthy(10, now=110.0001)
    assert agent.is_healthy(10, now=50.0)  # a heartbeat in the future is fresh
    assert not AgentMetadata("a", "m").is_healthy(10, now=0.0)
