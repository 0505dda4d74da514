"""Nodes over WebSocket on both backends, real loopback sockets: RPC and asks with replies over
WebSocket alone, joining through a plain TCP forwarder (a reverse proxy's stand-in), ``wss://``
with a CA made here, and a secured swarm."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream, SocketStream
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from synapse_p2p import Client, Node
from synapse_p2p.errors import ConnectError, HandshakeError, JoinError
from synapse_p2p.transport import WebSocketTransport

FAST: dict[str, Any] = {"heartbeat_interval": 0.2, "peer_timeout": 3.0}


async def until(check: Callable[[], bool], timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)


class NoTcp:
    """A transport that refuses every TCP dial: what works must go over WebSocket."""

    async def connect(self, host: str, port: int, *, timeout: float) -> ByteStream:
        raise ConnectError(f"TCP to {host}:{port} is disabled in this test")

    async def listen(self, host: str | None, port: int) -> list[Any]:
        from synapse_p2p.transport import TcpTransport

        return await TcpTransport().listen(host, port)


class Directory(WebSocketTransport):
    """Dials a node known by its advertised TCP address at its WebSocket URL instead."""

    def __init__(self) -> None:
        super().__init__(NoTcp())
        self.nodes: list[Node] = []
        self.dials = 0

    async def connect(self, host: str, port: int, *, timeout: float) -> ByteStream:
        for node in self.nodes:
            if node.running and node.port == port and node.websocket_urls:
                self.add(node.websocket_urls[0], address=(host, port))
        if self.url_for(host, port) is not None:
            self.dials += 1
        return await super().connect(host, port, timeout=timeout)


async def test_rpc_and_asks_with_replies_over_websocket_alone(anyio_backend: str) -> None:
    directory = Directory()

    def node(name: str, seeds: list[str] | None = None) -> Node:
        made = Node(
            bind="127.0.0.1", name=name, websocket="ws://127.0.0.1:0/synapse", seeds=seeds,
            transport=directory, **FAST,
        )  # fmt: skip
        directory.nodes.append(made)

        @made.ask
        async def review(task: str, context: dict[str, Any]) -> str:
            return f"{name} read {task}"

        @made.endpoint("whoami", publish=False)
        async def whoami() -> str:
            return name

        return made

    a = node("a")
    async with a:
        seed = a.websocket_urls[0]
        b, c = node("b", [seed]), node("c", [seed])
        async with b, c:
            await until(lambda: all(len(n.peers) == 2 for n in (a, b, c)))
            assert await b.call_peer(c.self_peer(), "whoami") == "c"
            assert await c.call_peer(a.self_peer(), "whoami") == "a"
            broadcast = await a.broadcast("synapse.ask", "the plan", context={})
            replies = [r async for r in a.iter_replies(broadcast, timeout=10)]
            assert sorted(r.result for r in replies) == ["b read the plan", "c read the plan"]
    assert directory.dials >= 4  # joins, verifications, calls: all over WebSocket


@asynccontextmanager
async def tcp_forwarder(target_port: int) -> AsyncIterator[tuple[int, list[int]]]:
    """Accepts on a port of its own and pipes bytes both ways to ``target_port`` (what a
    reverse proxy does); yields its port and a list of bytes carried per connection."""
    carried: list[int] = []

    async def pipe(source: SocketStream, sink: SocketStream, index: int) -> None:
        try:
            async for chunk in source:
                carried[index] += len(chunk)
                await sink.send(chunk)
            await sink.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass

    async def handle(client: SocketStream) -> None:
        carried.append(0)
        index = len(carried) - 1
        async with client, await anyio.connect_tcp("127.0.0.1", target_port) as upstream:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pipe, client, upstream, index)
                await pipe(upstream, client, index)
                tg.cancel_scope.cancel()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield port, carried
        tg.cancel_scope.cancel()


async def test_a_node_joins_a_seed_through_a_tcp_forwarder(anyio_backend: str) -> None:
    seed = Node(bind="127.0.0.1", name="seed", websocket="ws://127.0.0.1:0/synapse", **FAST)
    async with seed:
        ws_port = int(seed.websocket_urls[0].split(":")[2].split("/")[0])
        async with tcp_forwarder(ws_port) as (port, carried):
            joiner = Node(
                bind="127.0.0.1", name="joiner", seeds=[f"ws://127.0.0.1:{port}/synapse"], **FAST
            )
            async with joiner:
                await until(lambda: len(seed.peers) == 1 and len(joiner.peers) == 1)
                assert next(iter(joiner.peers.values())).name == "seed"
                assert next(iter(seed.peers.values())).name == "joiner"
            assert carried
            assert carried[0] > 0  # the join went through the forwarder
            info = await Client(f"ws://127.0.0.1:{port}/synapse").call("_synapse.info")
            assert info["name"] == "seed"


def _certificates(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A test CA, a server certificate it signs for 127.0.0.1 and localhost, and the server
    and client contexts (the client trusts only that CA)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "synapse test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    (directory / "server.pem").write_bytes(
        cert.public_bytes(pem)
        + key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(directory / "server.pem")
    client = ssl.create_default_context(cadata=ca.public_bytes(pem).decode())
    return server, client


async def test_wss_with_a_test_ca(anyio_backend: str, tmp_path: Path) -> None:
    server_tls, client_tls = _certificates(tmp_path)
    seed = Node(
        bind="127.0.0.1", name="seed", websocket="wss://127.0.0.1:0/synapse",
        websocket_tls=server_tls, **FAST,
    )  # fmt: skip
    async with seed:
        (url,) = seed.websocket_urls
        assert url.startswith("wss://127.0.0.1:")
        joiner = Node(bind="127.0.0.1", name="joiner", seeds=[url], tls_client=client_tls, **FAST)
        async with joiner:
            await until(lambda: len(seed.peers) == 1 and len(joiner.peers) == 1)
        assert (await Client(url, tls=client_tls).call("_synapse.info"))["name"] == "seed"
        by_name = url.replace("127.0.0.1", "localhost")
        assert (await Client(by_name, tls=client_tls).call("_synapse.info"))["name"] == "seed"
        with pytest.raises(ConnectError, match=r"(?i)certificate"):
            await Client(url).call("_synapse.info")  # the system's CAs do not know ours
        # A plain ws:// client on the wss port: a TLS error on the server, not a stuck node.
        with pytest.raises(ConnectError):
            await Client(url.replace("wss://", "ws://"), connect_timeout=2).call("x")
        assert (await Client(url, tls=client_tls).call("_synapse.info"))["name"] == "seed"


async def test_a_secured_swarm_over_websocket(anyio_backend: str) -> None:
    calls: list[str] = []
    seed = Node(
        bind="127.0.0.1", name="seed", websocket="ws://127.0.0.1:0/synapse", secret="right",
        **FAST,
    )  # fmt: skip

    @seed.endpoint("touch", publish=False)
    async def touch(who: str) -> str:
        calls.append(who)
        return "ok"

    async with seed:
        (url,) = seed.websocket_urls
        member = Node(bind="127.0.0.1", name="member", seeds=[url], secret="right", **FAST)
        async with member:
            await until(lambda: len(seed.peers) == 1 and len(member.peers) == 1)
            assert await member.call_peer(seed.self_peer(), "touch", "member") == "ok"
        client = Client(url, secret="right")
        assert await client.call("touch", "client") == "ok"
        assert client.peer_node_id == seed.node_id  # the server proved its key over ws

        with pytest.raises(HandshakeError):
            await Client(url, secret="wrong").call("touch", "wrong secret")
        with pytest.raises(HandshakeError):
            await Client(url, secret=None).call("touch", "no secret")
        intruder = Node(bind="127.0.0.1", name="intruder", seeds=[url], secret="wrong", **FAST)
        async with intruder:
            with pytest.raises(JoinError, match=r"(?i)handshake|secret"):
                await intruder.join()
        assert calls == ["member", "client"]  # no endpoint ran for the refused ones
        assert "intruder" not in {p.name for p in seed.peers.values()}
