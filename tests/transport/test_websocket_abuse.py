"""Hostile WebSocket clients against real listeners on loopback, both backends: connections
reset mid-handshake, endless empty fragments, web pages (an ``Origin`` header) and one address
holding the handshake slots. Each time the listener (and the node) keeps serving."""

from __future__ import annotations

import gc
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, cast

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute

from synapse_p2p import Client, Node
from synapse_p2p.errors import RemoteError
from synapse_p2p.rpc import PlainDialer
from synapse_p2p.transport import (
    TcpTransport,
    WebSocketListener,
    WebSocketUrl,
    listen_websocket,
    open_websocket,
)
from synapse_p2p.transport._websocket import _server_driver
from synapse_p2p.transport._ws_frames import BINARY, CONTINUATION, mask


def _upgrade(path: str, *headers: str) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _answer(tcp: ByteStream) -> bytes:
    data = b""
    with anyio.fail_after(5):
        try:
            while b"\r\n\r\n" not in data:
                data += await tcp.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass
    return data


def _node() -> Node:
    node = Node(bind="127.0.0.1", websocket="ws://127.0.0.1:0/synapse", mdns=False)

    @node.endpoint("echo", publish=False)
    async def echo(value: Any) -> Any:
        return value

    return node


async def test_clients_that_reset_during_the_upgrade_do_not_stop_the_node(
    anyio_backend: str,
) -> None:
    """20 clients send an upgrade request (half to another path) and reset the connection
    before the answer: answering them fails, and the node must go on serving."""
    node = _node()
    async with node:
        url = node.websocket_urls[0]
        port = WebSocketUrl.parse(url).port
        clients: list[socket.socket] = []
        try:
            for i in range(20):
                request = _upgrade("/synapse" if i % 2 else "/elsewhere")
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                clients.append(sock)
                sock.sendall(request[:-2])  # all but the last line end
            # Let the listener accept them and read what came (there is nothing to wait on).
            await anyio.sleep(0.3)
            for sock in clients:  # the rest, then a reset, before the listener can answer
                sock.sendall(b"\r\n")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
        finally:
            for sock in clients:
                sock.close()
        with anyio.fail_after(10):
            assert await Client(url).call("echo", "alive") == "alive"
            assert await Client(url).call("_synapse.ping") is not None
            assert node.running


@pytest.mark.parametrize("path", ["/synapse", "/elsewhere"])
async def test_the_handshake_driver_yields_none_for_a_client_gone_before_the_answer(
    anyio_backend: str, path: str
) -> None:
    """The same at the driver (trio-websocket under trio, wsproto elsewhere), made certain:
    the request and the reset are both in before the driver reads, so its answer (101 or
    404) meets a broken connection."""
    (tcp,) = await TcpTransport().listen("127.0.0.1", 0)
    port = tcp.extra(SocketAttribute.local_port)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        stream: ByteStream = await cast(Any, tcp).accept()
        sock.sendall(_upgrade(path))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        await anyio.sleep(0.2)  # let the reset land (there is nothing to wait on)
        with anyio.fail_after(5):
            async with _server_driver()(
                stream, "/synapse", timeout=5, max_message_size=1 << 20
            ) as connection:
                assert connection is None
    finally:
        sock.close()
        await tcp.aclose()


def _client_frame(opcode: int, payload: bytes, *, fin: bool) -> bytes:
    key = b"\x01\x02\x03\x04"
    assert len(payload) < 126
    return bytes(((0x80 if fin else 0) | opcode, 0x80 | len(payload))) + key + mask(payload, key)


async def test_endless_empty_fragments_close_the_connection_with_1009(
    anyio_backend: str,
) -> None:
    node = _node()
    async with node:
        url = node.websocket_urls[0]
        async with await anyio.connect_tcp("127.0.0.1", WebSocketUrl.parse(url).port) as tcp:
            await tcp.send(_upgrade("/synapse"))
            assert (await _answer(tcp)).startswith(b"HTTP/1.1 101")
            await tcp.send(_client_frame(BINARY, b"x", fin=False))
            empty = _client_frame(CONTINUATION, b"", fin=False) * 1000
            received = b""

            async def flood() -> None:
                try:
                    for _ in range(200):  # 200,000 empty fragments at most
                        await tcp.send(empty)
                except (anyio.BrokenResourceError, OSError):
                    pass

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(flood)
                    try:  # read while sending: what comes back before the connection ends
                        while True:
                            received += await tcp.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        pass
                    tg.cancel_scope.cancel()
            # A close frame (0x88) with code 1009, then the connection ends.
            assert received[:1] == b"\x88", received[:40]
            assert received[2:4] == (1009).to_bytes(2, "big"), received[:40]
        with anyio.fail_after(10):
            assert await Client(url).call("echo", 1) == 1


async def test_a_web_page_origin_is_refused_unless_allowed(anyio_backend: str) -> None:
    node = Node(
        bind="127.0.0.1",
        websocket="ws://127.0.0.1:0/synapse",
        websocket_origins=["https://Dashboard.example"],
        mdns=False,
    )

    @node.endpoint("echo", publish=False)
    async def echo(value: Any) -> Any:
        return value

    async with node:
        url = node.websocket_urls[0]
        port = WebSocketUrl.parse(url).port
        for origin, status in (
            ("http://evil.example", b"403"),
            ("null", b"403"),
            ("https://dashboard.example", b"101"),
        ):
            async with await anyio.connect_tcp("127.0.0.1", port) as tcp:
                await tcp.send(_upgrade("/synapse", f"Origin: {origin}"))
                answer = await _answer(tcp)
                assert answer.startswith(b"HTTP/1.1 " + status), (origin, answer)
        with anyio.fail_after(10):  # our own clients send no Origin
            assert await Client(url).call("echo", "ok") == "ok"


@asynccontextmanager
async def _listener(**kwargs: Any) -> AsyncIterator[WebSocketListener]:
    (tcp,) = await TcpTransport().listen("127.0.0.1", 0)
    port = tcp.extra(SocketAttribute.local_port)
    listener = WebSocketListener(
        tcp, WebSocketUrl(False, "127.0.0.1", port, "/synapse"), handshake_timeout=10, **kwargs
    )

    async def echo(stream: ByteStream) -> None:
        """Fails if the first bytes are ``fail``, else echoes what follows them."""
        if await stream.receive() == b"fail":
            raise RuntimeError("a handler that fails")
        try:
            while True:
                await stream.send(await stream.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        try:
            yield listener
        finally:
            tg.cancel_scope.cancel()
    await listener.aclose()


async def test_one_address_cannot_hold_every_handshake_slot(anyio_backend: str) -> None:
    async with _listener(max_handshakes=80) as listener, AsyncExitStack() as idle:
        port = listener.url.port
        with anyio.fail_after(10):
            for _ in range(100):  # idle upgrades from 127.0.0.2: they never finish
                tcp = await anyio.connect_tcp("127.0.0.1", port, local_host="127.0.0.2")
                await idle.enter_async_context(tcp)
                await tcp.send(b"GET /synapse HTTP/1.1\r\n")
            stream = await open_websocket(listener.url, timeout=5)
            await stream.send(b"hello")
            await stream.send(b"through")
            assert await stream.receive() == b"through"
            await stream.aclose()


async def test_by_default_every_origin_is_refused(anyio_backend: str) -> None:
    node = _node()
    async with node:
        port = WebSocketUrl.parse(node.websocket_urls[0]).port
        async with await anyio.connect_tcp("127.0.0.1", port) as tcp:
            await tcp.send(_upgrade("/synapse", "Origin: http://127.0.0.1:8000"))
            answer = await _answer(tcp)
            assert answer.startswith(b"HTTP/1.1 403"), answer


async def test_a_failing_connection_task_does_not_stop_the_listener(anyio_backend: str) -> None:
    async with _listener() as listener:
        with anyio.fail_after(10):
            failing = await open_websocket(listener.url, timeout=5)
            await failing.send(b"fail")
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await failing.receive()  # the handler raised: that connection is closed
            await failing.aclose()
            stream = await open_websocket(listener.url, timeout=5)
            await stream.send(b"hello")
            await stream.send(b"still serving")
            assert await stream.receive() == b"still serving"
            await stream.aclose()


async def test_a_dropped_trio_client_connection_stops_its_reader(anyio_backend: str) -> None:
    """Under trio the dialing side reads in a system task (no owner): a connection closed, or
    dropped and garbage-collected without closing, must end that task and its socket."""
    if anyio_backend != "trio":
        pytest.skip("only the trio driver (trio-websocket) reads in a task of its own")
    ended: list[anyio.Event] = []

    async def serve(stream: ByteStream) -> None:
        done = anyio.Event()
        ended.append(done)
        try:
            while True:
                await stream.send(await stream.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            done.set()

    (listener,) = await listen_websocket("ws://127.0.0.1:0/synapse", handshake_timeout=5)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        with anyio.fail_after(10):
            closed = await open_websocket(listener.url, timeout=5)
            await closed.send(b"x")
            assert await closed.receive() == b"x"
            await closed.aclose()
            await ended[0].wait()

            dropped = await open_websocket(listener.url, timeout=5)
            await dropped.send(b"y")
            assert await dropped.receive() == b"y"
            del dropped
            gc.collect()
            await ended[1].wait()  # the reader ended, closed the socket: the server saw it
        tg.cancel_scope.cancel()
    await listener.aclose()


async def test_a_websocket_listener_refuses_plaintext_rpc(anyio_backend: str) -> None:
    """No synapse-p2p 2.5.0 peer speaks WebSocket: a plaintext call over one is refused (with
    a clear error), even without a swarm secret; the secure channel is served as ever."""
    node = _node()
    async with node:
        url = node.websocket_urls[0]
        plain = Client(url, timeout=5)
        plain.dialer = PlainDialer(plain.transport)
        with anyio.fail_after(10):
            with pytest.raises(RemoteError, match="secure channel"):
                await plain.call("echo", 1)
            assert await Client(url).call("echo", 2) == 2
            # Plaintext over TCP is still served (2.5.0 peers), without a secret.
            tcp = Client("127.0.0.1", node.port, timeout=5)
            tcp.dialer = PlainDialer(tcp.transport)
            assert await tcp.call("echo", 3) == 3


def test_websocket_origins_are_validated() -> None:
    from synapse_p2p._config import NodeConfig

    assert NodeConfig.build(websocket_origins=["https://a.example"]).websocket_origins == (
        "https://a.example",
    )
    with pytest.raises(TypeError, match="websocket_origins"):
        NodeConfig.build(websocket_origins="https://a.example")
    with pytest.raises(ValueError, match="websocket_origins"):
        NodeConfig.build(websocket_origins=["a.example/"])
