"""Nodes and clients over the secure channel: secrets, keyrings, rotation, access rules,
handshake and connection quotas. Real sockets on loopback, both backends."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from synapse_p2p import Client, Identity, Node
from synapse_p2p.errors import HandshakeError, JoinError, RemoteError
from synapse_p2p.rpc import Connection, PlainDialer
from synapse_p2p.testing import open_swarm
from tests.helpers import read_frame, request_frame

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def running(*nodes: Node) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        for node in nodes:
            await tg.start(node.serve)
        yield
        tg.cancel_scope.cancel()


def quiet(**kwargs: Any) -> Node:
    kwargs.setdefault("bind", "127.0.0.1")
    kwargs.setdefault("heartbeat_interval", None)
    return Node(**kwargs)


async def test_a_secured_swarm_forms_and_every_call_carries_the_callers_verified_id(
    anyio_backend: str,
) -> None:
    async with open_swarm(3, transport="tcp", secret="s3cret") as swarm:
        seen: list[str | None] = []
        target = swarm[0]

        @target.endpoint
        async def whoami(connection: Connection) -> str | None:
            seen.append(connection.node_id)
            return connection.node_id

        for node in swarm.nodes[1:]:
            assert len(node.peers) == 2
            assert await node.call_peer(target.self_peer(), "whoami") == node.node_id
        assert seen == [swarm[1].node_id, swarm[2].node_id]
        async with Client("127.0.0.1", target.port, secret="s3cret") as client:
            assert await client.call("whoami") == client.identity.node_id


async def test_a_wrong_or_missing_secret_closes_during_the_handshake_and_runs_nothing(
    anyio_backend: str,
) -> None:
    node = quiet(secret="right", swarm="s")
    calls = 0

    @node.endpoint
    async def touch() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    async with running(node):
        for secret in ("wrong", ["wrong", "right"], ()):  # a secondary secret is not used
            with pytest.raises(HandshakeError):
                await Client("127.0.0.1", node.port, secret=secret, timeout=5).call("touch")
        plain = Client("127.0.0.1", node.port, secret=(), timeout=5)
        plain.dialer = PlainDialer(plain.transport)  # as synapse-p2p 2.5.0 would
        with pytest.raises(RemoteError, match="secret"):
            await plain.call("touch")
        # A raw plaintext frame gets a clear error and the connection closes.
        async with await anyio.connect_tcp("127.0.0.1", node.port) as stream:
            await stream.send(request_frame("touch"))
            with anyio.fail_after(5):
                reply = await read_frame(stream)
        assert reply is not None
        assert "secret" in reply["error"]["message"]
        # A node with another secret cannot join: no peer, no candidate recorded.
        intruder = quiet(secret="wrong", swarm="s", seeds=[f"127.0.0.1:{node.port}"])
        async with running(intruder):
            with pytest.raises(JoinError):
                await intruder.join()
        assert calls == 0
        assert node.peers == {}
        assert intruder.peers == {}
        assert await Client("127.0.0.1", node.port, secret="right").call("touch") == "ok"
        assert calls == 1


async def test_secret_from_the_environment(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNAPSE_SECRET", "new, old")
    node = quiet()
    assert node.secured
    async with running(node):
        monkeypatch.setenv("SYNAPSE_SECRET", "old")  # a secondary secret is accepted
        assert await Client("127.0.0.1", node.port).call("_synapse.ping") == "pong"
        monkeypatch.delenv("SYNAPSE_SECRET")
        with pytest.raises(HandshakeError):
            await Client("127.0.0.1", node.port, timeout=5).call("_synapse.ping")


async def test_disjoint_keyrings_never_connect(anyio_backend: str) -> None:
    a = quiet(secret=["a1", "a2"], swarm="s")
    b = quiet(secret=["b1", "b2"], swarm="s", seeds=[])
    async with running(a, b):
        for src, dst in ((a, b), (b, a)):
            with pytest.raises(HandshakeError):
                await src.call_peer(("127.0.0.1", dst.port), "_synapse.ping", timeout=5)
        assert a.peers == {}
        assert b.peers == {}


async def test_rotation_across_three_nodes_with_zero_failed_calls(anyio_backend: str) -> None:
    """Install the new secret second, then first, then remove the old one, while every node
    keeps calling every other over fresh connections: no call fails."""
    nodes = [quiet(secret="old", name=f"n{i}") for i in range(3)]
    failures: list[BaseException] = []
    calls = 0
    stop = anyio.Event()

    async def keep_calling(src: Node) -> None:
        nonlocal calls
        while not stop.is_set():
            for dst in nodes:
                if dst is src:
                    continue
                try:  # a new connection each time, with the caller's current keyring
                    client = Client("127.0.0.1", dst.port, secret=src.keyring)
                    assert await client.call("_synapse.ping") == "pong"
                    calls += 1
                except Exception as exc:
                    failures.append(exc)
            await anyio.sleep(0)

    async def step(secret: list[str]) -> None:
        for node in nodes:  # one node at a time, calls running meanwhile
            node.set_secret(secret)
            start = calls
            with anyio.fail_after(10):
                while calls < start + 6:
                    await anyio.sleep(0.001)

    async with running(*nodes):
        async with anyio.create_task_group() as tg:
            for node in nodes:
                tg.start_soon(keep_calling, node)
            await step(["old", "new"])
            await step(["new", "old"])
            await step(["new"])
            stop.set()
        assert failures == []
        assert calls >= 54
        old = Client("127.0.0.1", nodes[0].port, secret="old", timeout=5)
        with pytest.raises(HandshakeError):
            await old.call("_synapse.ping")


async def test_set_secret_keeps_a_node_secured(anyio_backend: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        quiet(secret="x").set_secret([])
    with pytest.raises(ValueError, match="without a swarm secret"):
        quiet(secret=()).set_secret("x")
    with pytest.raises(ValueError, match="identity"):
        quiet(secret="x", node_id="my-own-id")


async def test_allow_rules(anyio_backend: str) -> None:
    friend = Identity.generate()
    node = quiet(secret=())

    @node.endpoint(allow="anyone")
    async def open_() -> str:
        return "open"

    @node.endpoint(allow="members")
    async def members() -> str:
        return "members"

    @node.endpoint(allow={friend.node_id})
    async def friends() -> str:
        return "friends"

    @node.endpoint(allow=lambda node_id: node_id is not None and node_id.startswith("0"))
    async def picky() -> str:
        return "picky"

    with pytest.raises(ValueError, match="allow"):
        node.endpoint("bad", allow="everyone")(open_)

    async with running(node):
        async with Client("127.0.0.1", node.port, identity=friend) as client:
            assert await client.call("open_") == "open"
            assert await client.call("members") == "members"  # verified, no secret set
            assert await client.call("friends") == "friends"
        stranger = Client("127.0.0.1", node.port)
        assert await stranger.call("members") == "members"
        with pytest.raises(RemoteError) as info:
            await stranger.call("friends")
        assert info.value.code == "forbidden"
        zero = next(i for i in iter(Identity.generate, None) if i.node_id.startswith("0"))
        assert await Client("127.0.0.1", node.port, identity=zero).call("picky") == "picky"
        plain = Client("127.0.0.1", node.port)
        plain.dialer = PlainDialer(plain.transport)  # unverified: plaintext
        assert await plain.call("open_") == "open"
        for name in ("members", "friends", "picky"):
            with pytest.raises(RemoteError) as info:
                await plain.call(name)
            assert info.value.code == "forbidden"


def _idle_socket(port: int, source: str, first: bytes) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    if first:
        sock.sendall(first)
    return sock


async def test_one_address_cannot_exhaust_the_connections_of_others(anyio_backend: str) -> None:
    """Idle sockets from one address (stuck in the handshake, or plaintext and idle) are
    capped per address (64 handshakes at once, ``max_connections_per_peer`` connections); an
    honest caller from another address is served. Without the quotas the 240 sockets took all
    200 connections and the honest caller got ``overloaded``."""
    node = quiet(max_connections=200, max_connections_per_peer=64)
    async with running(node):
        socks: list[socket.socket] = []
        try:
            for i in range(240):
                first = b"\xf3" if i % 3 == 0 else b"\x00"  # 80 mid-handshake, 160 plaintext
                socks.append(_idle_socket(node.port, "127.0.0.2", first))

            def turned_away() -> int:
                stats = node.statistics()
                assert stats.server is not None
                assert stats.handshakes is not None
                return stats.server.rejected_connections + stats.handshakes.refused

            with anyio.fail_after(10):
                while turned_away() < 240 - 64 - 64:
                    await anyio.sleep(0.01)
            for _ in range(3):
                assert await Client("127.0.0.1", node.port).call("_synapse.ping") == "pong"
            server = node.statistics().server
            assert server is not None
            assert server.open_connections <= 64 + 64 + 1  # (+ the honest one, closing)
        finally:
            for sock in socks:
                sock.close()


async def test_a_refused_caller_stores_nothing_even_with_a_broadcast(anyio_backend: str) -> None:
    """The access rule is checked before the broadcast hook: a caller that may not call an
    endpoint cannot slip a conversation event in by calling it as a broadcast."""
    node = quiet(secret=(), team="default")

    @node.endpoint(allow=set())
    async def nobody() -> str:
        return "no"

    origin = {"id": "a" * 64, "address": "127.0.0.1", "port": 1, "swarm": None,
              "team": "default", "name": "x", "kind": "node", "capabilities": [],
              "last_seen": time.time()}  # fmt: skip
    broadcast = {"nonce": "n" * 32, "origin": origin, "endpoint": "nobody"}
    async with running(node):
        with pytest.raises(RemoteError) as info:
            await Client("127.0.0.1", node.port).request("nobody", [], {"broadcast": broadcast})
        assert info.value.code == "forbidden"
        assert node.conversations() == []
