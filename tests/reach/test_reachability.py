"""``node.reachability`` from members' dial-backs, and automatic relays: a private node with
no ``relays=`` reserves on relay members by itself, advertises them in its signed record,
and moves to another relay when one dies (loopback, both backends; a node's port that the
others' transport refuses to dial stands for a NAT)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from synapse_p2p import Client, Node, RemoteError
from synapse_p2p.relay import Verdicts
from synapse_p2p.rpc._client import PlainDialer
from tests.relay.test_relay_client import Unreachable
from tests.relay.test_relay_swarm import free_port

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"bind": "127.0.0.1", "heartbeat_interval": 0.2, "peer_timeout": 3.0}


@pytest.fixture(autouse=True)
def _no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNAPSE_SECRET", raising=False)


async def until(check: Callable[[], bool], timeout: float = 20) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)


# -- the rule -----------------------------------------------------------------------------------

T = ("10.1.0.2", 7000)


def test_public_after_one_successful_dial_back() -> None:
    v = Verdicts()
    v.record(T, "s", False)
    v.record(T, "a", True)
    assert v.state(T, members=5) == "public"


def test_private_after_failures_from_two_distinct_members() -> None:
    v = Verdicts()
    assert v.state(T, members=3) == "unknown"
    v.record(T, "s", False)
    assert v.state(T, members=3) == "unknown"
    v.record(T, "s", False)  # the same member again: still one
    assert v.state(T, members=3) == "unknown"
    v.record(T, "a", False)
    assert v.state(T, members=3) == "private"
    v.record(T, "s", True)  # its latest answer counts
    assert v.state(T, members=3) == "public"


def test_the_only_member_decides_alone() -> None:
    v = Verdicts()
    v.record(T, "seed", False)
    assert v.state(T, members=1) == "private"
    assert v.state(T, members=2) == "unknown"


def test_a_new_address_starts_over() -> None:
    v = Verdicts()
    v.record(T, "s", False)
    v.record(T, "a", False)
    assert v.state(("10.1.0.2", 7001), members=2) == "unknown"
    v.record(("10.1.0.2", 7001), "s", True)
    assert v.answers == {"s": True}


# -- dial-backs ---------------------------------------------------------------------------------


async def _hold(node: Node, stop: anyio.Event, *, task_status: Any) -> None:
    async with node:
        task_status.started()
        await stop.wait()


@contextlib.asynccontextmanager
async def swarm(
    private_port: int, *, relays: int = 1, secret: str | None = None, **private: Any
) -> AsyncIterator[tuple[list[Node], Node, Node, dict[str, anyio.Event]]]:
    """Relays (the first is the seed; each stops when its event in the dict yielded last is
    set), a public node A, and B on ``private_port``, which no one else can dial."""
    stops: dict[str, anyio.Event] = {}
    async with anyio.create_task_group() as tg:
        relay_nodes: list[Node] = []
        for i in range(relays):
            seeds = [f"127.0.0.1:{relay_nodes[0].port}"] if relay_nodes else []
            node = Node(name=f"r{i}", relay=True, transport=Unreachable(private_port),
                        seeds=seeds, secret=secret, **FAST)  # fmt: skip
            stops[node.node_id] = anyio.Event()
            await tg.start(_hold, node, stops[node.node_id])
            relay_nodes.append(node)
        seed = [f"127.0.0.1:{relay_nodes[0].port}"]
        a = Node(name="a", transport=Unreachable(private_port), seeds=seed, secret=secret, **FAST)
        b = Node(name="b", port=private_port, seeds=seed, secret=secret, **{**FAST, **private})

        @b.endpoint("whoami", publish=False)
        async def whoami() -> str:
            return "b"

        async with a, b:
            yield relay_nodes, a, b, stops
        for stop in stops.values():
            stop.set()


async def test_reachability_public_and_private(anyio_backend: str) -> None:
    b_port = free_port()
    async with swarm(b_port, relays=1) as ([relay], a, b, _):
        assert b.reachability == "unknown"
        await until(lambda: b.reachability == "private")
        await until(lambda: a.reachability == "public" and relay.reachability == "public")
        answers = b.relay.reach.verdicts.answers if b.relay.reach else {}
        assert len(answers) >= 2
        assert not any(answers.values())


async def test_a_dial_back_needs_a_secure_caller_and_good_arguments(anyio_backend: str) -> None:
    async with Node(name="s", **FAST) as s:
        client = Client("127.0.0.1", s.port)
        closed = free_port()
        answer = await client.call("_synapse.dialback", "127.0.0.1", closed)
        assert answer["ok"] is False
        assert answer["error"] == "not reached"  # never why (refused, silent, another service)
        assert answer["observed"] == "127.0.0.1"
        # one dial of a target every few seconds, whoever asks: fresh keys do not scan faster
        other = Client("127.0.0.1", s.port)
        with pytest.raises(RemoteError, match="busy"):
            await other.call("_synapse.dialback", "127.0.0.1", closed)
        with pytest.raises(RemoteError, match="port"):
            await client.call("_synapse.dialback", "127.0.0.1", 0)
        with pytest.raises(RemoteError, match="address"):
            await client.call("_synapse.dialback", 5, 80)
        plain = Client("127.0.0.1", s.port)
        plain.dialer = PlainDialer(plain.transport)  # as a 2.5.0 node would call
        with pytest.raises(RemoteError, match="secure channel"):
            await plain.call("_synapse.dialback", "127.0.0.1", 80)
        assert await client.call("_synapse.ping") == "pong"


# -- automatic relays ---------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "members only"])
async def test_a_private_node_reserves_on_a_relay_member_by_itself(
    anyio_backend: str, secret: str | None
) -> None:
    b_port = free_port()
    async with swarm(b_port, relays=1, secret=secret) as ([relay], a, b, _):
        await until(lambda: [s.reserved for s in b.relay.states()] == [True])
        assert b.relay.states()[0].relay == ("127.0.0.1", relay.port)
        await until(lambda: all(b.node_id in n.peers for n in (relay, a)))
        assert await a.call_peer(a.peers[b.node_id], "whoami") == "b"
        # public nodes reserve nowhere
        assert a.relay.states() == []
        assert relay.relay.states() == []


async def test_a_private_node_moves_to_another_relay_when_one_dies(anyio_backend: str) -> None:
    b_port = free_port()
    async with swarm(b_port, relays=3) as (relays, a, b, stops):
        await until(lambda: sum(s.reserved for s in b.relay.states()) == 2)
        await until(lambda: b.node_id in a.peers)
        chosen = {s.relay for s in b.relay.states()}
        victim = next(r for r in relays[1:] if ("127.0.0.1", r.port) in chosen)
        spare = next(r for r in relays if ("127.0.0.1", r.port) not in chosen)
        dead, new = ("127.0.0.1", victim.port), ("127.0.0.1", spare.port)
        victim.membership.say_goodbye = False  # a crash, not a clean leave
        stops[victim.node_id].set()
        await until(
            lambda: {s.relay for s in b.relay.states() if s.reserved} == chosen - {dead} | {new}
        )
        # A follows B's new record: its route goes through a live relay, and calls work
        await until(
            lambda: (
                (route := a.relay.routes.get(("127.0.0.1", b_port))) is not None
                and route.relay != dead
            )
        )
        assert await a.call_peer(a.peers[b.node_id], "whoami") == "b"
