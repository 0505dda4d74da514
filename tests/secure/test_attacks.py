"""The attacks of the trust issue that the channel and the secret stop, as an attacker on
loopback would try them. Each failed on the code before the secure channel (plaintext
traffic, open built-ins, no handshake limits). Real sockets, both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream

from synapse_p2p import Client, Node
from synapse_p2p.errors import HandshakeError, RemoteError
from synapse_p2p.rpc import PlainDialer

pytestmark = pytest.mark.anyio

SECRET_TEXT = "the-launch-code-is-0451"


@asynccontextmanager
async def recording_proxy(port: int, seen: bytearray) -> AsyncIterator[int]:
    """A TCP forwarder to 127.0.0.1:``port`` that keeps every byte it carries."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")

    async def pipe(src: SocketStream, dst: SocketStream) -> None:
        try:
            async for chunk in src:
                seen.extend(chunk)
                await dst.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            await dst.aclose()

    async def handle(client: SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", port) as upstream:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pipe, client, upstream)
                tg.start_soon(pipe, upstream, client)

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def test_an_eavesdropper_between_two_nodes_reads_nothing(anyio_backend: str) -> None:
    """Before: every byte between nodes was plaintext msgpack; the text was in the capture."""
    seen = bytearray()
    server = Node(bind="127.0.0.1", heartbeat_interval=None, name="server")
    got: list[str] = []

    @server.endpoint
    async def keep(text: str) -> str:
        got.append(text)
        return text

    async with server, recording_proxy(server.port, seen) as proxy_port:
        async with Node(bind="127.0.0.1", heartbeat_interval=None) as client:
            reply = await client.call_peer(("127.0.0.1", proxy_port), "keep", SECRET_TEXT)
    assert reply == SECRET_TEXT
    assert got == [SECRET_TEXT]
    assert len(seen) > 200  # the call went through the proxy
    assert SECRET_TEXT.encode() not in seen
    assert b"keep" not in seen  # not even the endpoint's name


@pytest.mark.parametrize(
    ("endpoint", "args"),
    [
        ("_synapse.join", [{"id": "x" * 64, "address": "127.0.0.1", "port": 1, "swarm": "s"}]),
        ("_synapse.peers", []),
        ("_synapse.conversation.sync", ["some-conversation"]),
        ("_synapse.conversation.digest", []),
        ("_synapse.info", []),
        ("_synapse.stats", []),
        ("broadcast", [{"nonce": "n", "origin": {}, "endpoint": "synapse.ask"}]),
    ],
)
async def test_a_non_member_can_neither_read_nor_write_a_secured_swarm(
    anyio_backend: str, endpoint: str, args: list[Any]
) -> None:
    """Before: join returned the peer table, sync every event, broadcast ran the ask handler
    of every node for free. Now nothing runs: the connection closes during the handshake
    (secure channel) or is refused at once (plaintext)."""
    node = Node(bind="127.0.0.1", heartbeat_interval=None, swarm="s", secret="members-only")
    asked: list[str] = []

    @node.ask
    async def handler(task: str, context: dict[str, Any]) -> str:
        asked.append(task)
        return "ok"

    async with node:
        for secret in ((), "guess"):
            with pytest.raises(HandshakeError):
                await Client("127.0.0.1", node.port, secret=secret, timeout=5).call(endpoint, *args)
        plain = Client("127.0.0.1", node.port, secret=(), timeout=5)
        plain.dialer = PlainDialer(plain.transport)
        with pytest.raises(RemoteError, match="secret"):
            await plain.call(endpoint, *args)
        assert node.peers == {}
        assert asked == []
        member = Client("127.0.0.1", node.port, secret="members-only")
        assert await member.call("_synapse.ping") == "pong"
