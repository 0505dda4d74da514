"""The ``swarm`` and ``synapse_swarm`` fixtures of ``synapse_p2p.pytest_plugin``, used directly
(under trio and asyncio, from the root conftest's ``anyio_backend``)."""

from __future__ import annotations

from typing import Any

import pytest

from synapse_p2p import Client
from synapse_p2p.pytest_plugin import DEFAULT_SIZE, SwarmFactory, swarm_options
from synapse_p2p.testing import Swarm
from synapse_p2p.transport import MemoryNetwork

pytestmark = [pytest.mark.anyio, pytest.mark.synapse_swarm(swarm="module-swarm", n=2)]


def fully_joined(swarm: Swarm) -> bool:
    ids = {node.node_id for node in swarm.nodes}
    return all(set(node.peers) == ids - {node.node_id} for node in swarm.nodes)


def coders(i: int) -> dict[str, Any]:
    return {"name": "architect"} if i == 0 else {"name": f"coder{i}", "capabilities": ["python"]}


async def test_module_marker_sets_the_defaults(swarm: Swarm) -> None:
    assert len(swarm.nodes) == 2
    assert {node.swarm for node in swarm.nodes} == {"module-swarm"}
    assert isinstance(swarm.network, MemoryNetwork)
    assert all(node.running for node in swarm.nodes)
    assert fully_joined(swarm)


@pytest.mark.synapse_swarm(n=4, configure=coders)
async def test_test_marker_overrides_key_by_key(swarm: Swarm) -> None:
    assert [node.name for node in swarm.nodes] == ["architect", "coder1", "coder2", "coder3"]
    assert [c.name for c in swarm[1].capabilities] == ["python"]
    assert swarm[0].swarm == "module-swarm"  # kept from the module's marker
    assert fully_joined(swarm)


@pytest.mark.synapse_swarm(1, transport="tcp")
async def test_tcp_transport_serves_real_sockets(swarm: Swarm) -> None:
    (node,) = swarm.nodes
    assert swarm.network is None
    assert await Client(node.address, node.port).call("_synapse.ping") == "pong"


@pytest.mark.synapse_swarm(n=3)
class TestClassMarker:
    async def test_class_marker_applies(self, swarm: Swarm) -> None:
        assert len(swarm.nodes) == 3

    @pytest.mark.synapse_swarm(n=1)
    async def test_closest_marker_wins(self, swarm: Swarm) -> None:
        assert len(swarm.nodes) == 1
        assert swarm[0].swarm == "module-swarm"


@pytest.mark.parametrize("swarm", [1, {"n": 3, "swarm": "param"}], indirect=True)
async def test_indirect_parametrisation(swarm: Swarm, request: pytest.FixtureRequest) -> None:
    param = request.node.callspec.params["swarm"]
    expected = (1, "module-swarm") if param == 1 else (3, "param")
    assert (len(swarm.nodes), swarm[0].swarm) == expected


async def test_factory_uses_markers_and_call_arguments(synapse_swarm: SwarmFactory) -> None:
    assert synapse_swarm.defaults == {"swarm": "module-swarm", "n": 2}
    async with synapse_swarm() as first, synapse_swarm(1, swarm="other", name="solo") as second:
        assert len(first.nodes) == 2
        assert first[0].swarm == "module-swarm"
        assert (len(second.nodes), second[0].swarm, second[0].name) == (1, "other", "solo")
        # Two swarms, two separate memory networks: they cannot see each other.
        assert first.network is not second.network
        assert not set(first[0].peers) & {node.node_id for node in second.nodes}
    assert synapse_swarm.swarms == [first, second]
    assert not any(node.running for node in [*first.nodes, *second.nodes])


async def test_factory_rejects_bad_arguments(synapse_swarm: SwarmFactory) -> None:
    with pytest.raises(ValueError, match="n must be at least 1"):
        synapse_swarm(0)
    with pytest.raises(TypeError, match="n must be an int"):
        synapse_swarm(True)
    with pytest.raises(ValueError, match="transport must be 'memory' or 'tcp'"):
        synapse_swarm(transport="udp")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="configure must be a callable"):
        synapse_swarm(configure={"name": "x"})  # type: ignore[arg-type]


def test_factory_defaults_without_markers() -> None:
    factory = SwarmFactory()
    assert factory.options() == {"n": DEFAULT_SIZE}
    assert factory.options(5, transport="tcp") == {"n": 5, "transport": "tcp"}
    assert "SwarmFactory" in repr(factory)


class _Item:
    """Just enough of a pytest item for :func:`swarm_options`."""

    def __init__(self, *marks: pytest.MarkDecorator) -> None:
        self.marks = [mark.mark for mark in marks]  # closest first, like Node.iter_markers

    def iter_markers(self, name: str | None = None) -> Any:
        return (mark for mark in self.marks if name is None or mark.name == name)


def test_swarm_options_merge_and_validate() -> None:
    mark = pytest.mark.synapse_swarm
    item = _Item(mark(5), mark(n=2, transport="tcp", swarm="s"))
    assert swarm_options(item) == {"n": 5, "transport": "tcp", "swarm": "s"}
    assert swarm_options(_Item()) == {}
    with pytest.raises(TypeError, match="at most one positional"):
        swarm_options(_Item(mark(1, 2)))
    with pytest.raises(TypeError, match="n given both"):
        swarm_options(_Item(mark(1, n=2)))
    with pytest.raises(ValueError, match="transport"):
        swarm_options(_Item(mark(transport="carrier-pigeon")))
