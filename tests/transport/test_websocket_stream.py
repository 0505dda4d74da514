"""The WebSocket transport on its own: URLs, the byte stream, handshakes and bad input, on real
loopback sockets under trio (trio-websocket) and asyncio (wsproto on anyio streams)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute

from synapse_p2p import Client, Node
from synapse_p2p._config import NodeConfig
from synapse_p2p.errors import ConnectError, SynapseConnectionError
from synapse_p2p.transport import (
    WebSocketListener,
    WebSocketStream,
    WebSocketTransport,
    WebSocketUrl,
    listen_websocket,
    open_websocket,
)


def test_urls_parse_and_print() -> None:
    url = WebSocketUrl.parse("ws://127.0.0.1:8080/synapse")
    assert (url.secure, url.host, url.port, url.path) == (False, "127.0.0.1", 8080, "/synapse")
    assert str(url) == "ws://127.0.0.1:8080/synapse"
    assert WebSocketUrl.parse("wss://example.com").address == ("example.com", 443)
    assert WebSocketUrl.parse("wss://example.com").host_header == "example.com"
    assert str(WebSocketUrl.parse("ws://[::1]:81/p")) == "ws://[::1]:81/p"
    assert WebSocketUrl.parse("ws://h:0/x", listen=True).port == 0
    for bad in (
        "http://h/x",
        "ws://",
        "ws://h:0/x",
        "ws://u:p@h/x",
        "ws://h/x?q=1",
        "ws://h:99999",
    ):
        with pytest.raises(ValueError):
            WebSocketUrl.parse(bad)


def test_node_settings_are_validated() -> None:
    config = NodeConfig.build(seeds=["ws://127.0.0.1:8080/s", "10.0.0.1:9999"])
    assert config.seeds == (("127.0.0.1", 8080), ("10.0.0.1", 9999))
    assert [str(u) for u in config.websocket_seeds] == ["ws://127.0.0.1:8080/s"]
    with pytest.raises(ValueError, match="websocket_tls"):
        NodeConfig.build(websocket="wss://127.0.0.1:0/s")
    with pytest.raises(ValueError, match="no wss"):
        NodeConfig.build(websocket="ws://127.0.0.1:0/s", websocket_tls=_server_context_stub())
    with pytest.raises(TypeError, match="tls_client"):
        NodeConfig.build(tls_client="yes")
    with pytest.raises(ValueError, match="websocket"):
        Node(websocket="http://127.0.0.1:0/")


def _server_context_stub() -> Any:
    import ssl

    return ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)


async def _echo(stream: ByteStream) -> None:
    try:
        while True:
            await stream.send(await stream.receive())
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()


@asynccontextmanager
async def echo_server(path: str = "/synapse") -> AsyncIterator[WebSocketListener]:
    (listener,) = await listen_websocket(f"ws://127.0.0.1:0{path}", handshake_timeout=2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, _echo)
        try:
            yield listener
        finally:
            tg.cancel_scope.cancel()
    await listener.aclose()


async def _read(stream: ByteStream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        data += await stream.receive()
    return data


async def test_a_byte_stream_over_messages(anyio_backend: str) -> None:
    async with echo_server() as server:
        assert server.url.port > 0
        assert str(server.url).startswith("ws://127.0.0.1:")
        stream = await open_websocket(server.url, timeout=5)
        assert isinstance(stream, WebSocketStream)
        assert stream.extra(SocketAttribute.remote_address) == ("127.0.0.1", server.url.port)
        payload = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4: several messages
        await stream.send(payload)
        assert await _read(stream, len(payload)) == payload
        if anyio_backend == "asyncio":  # the lean TCP stream's fast path, passed through
            assert stream.send_nowait(b"now") == 3  # type: ignore[attr-defined]
            assert await _read(stream, 3) == b"now"
        else:
            assert not hasattr(stream, "send_nowait")
        await stream.send(b"abcdef")
        first = await stream.receive(2)  # smaller reads split a message
        assert first == b"ab"
        assert await _read(stream, 4) == b"cdef"
        await stream.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await stream.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await stream.send(b"x")


async def test_end_of_stream_and_dropped_connections(anyio_backend: str) -> None:
    async with echo_server() as server:
        stream = await open_websocket(server.url, timeout=5)
        await stream.send(b"bye")
        assert await _read(stream, 3) == b"bye"
        await stream.send_eof()  # a close handshake: the server's echo loop ends normally
        with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
            await stream.receive()
        await stream.aclose()

    # A peer whose TCP connection drops without a close frame: BrokenResourceError.
    accepted: list[ByteStream] = []
    got = anyio.Event()

    async def hold(stream: ByteStream) -> None:
        accepted.append(stream)
        got.set()
        await anyio.sleep_forever()

    (listener,) = await listen_websocket("ws://127.0.0.1:0/", handshake_timeout=2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, hold)
        stream = await open_websocket(listener.url, timeout=5)
        await got.wait()
        server_side = accepted[0]
        assert isinstance(server_side, WebSocketStream)
        await server_side.connection._stream.aclose()  # type: ignore[attr-defined]
        with anyio.fail_after(5), pytest.raises(anyio.BrokenResourceError):
            await stream.receive()
        await stream.aclose()
        tg.cancel_scope.cancel()
    await listener.aclose()


async def _http(port: int, request: bytes) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as tcp:
        await tcp.send(request)
        data = b""
        with anyio.fail_after(5):
            try:
                while b"\r\n\r\n" not in data:
                    data += await tcp.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
        return data


async def test_bad_requests_get_http_errors_and_the_node_keeps_serving(anyio_backend: str) -> None:
    node = Node(bind="127.0.0.1", websocket="ws://127.0.0.1:0/synapse")

    @node.endpoint("echo", publish=False)
    async def echo(value: Any) -> Any:
        return value

    async with node:
        (url,) = node.websocket_urls
        port = WebSocketUrl.parse(url).port
        plain = await _http(port, b"GET /synapse HTTP/1.1\r\nHost: x\r\n\r\n")
        assert plain.startswith(b"HTTP/1.1 400"), plain
        garbage = await _http(port, b"\x00\x01 not http at all\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400"), garbage
        with pytest.raises(ConnectError, match="404"):
            await Client(url.replace("/synapse", "/elsewhere")).call("echo", 1)
        # A node's RPC port is not a WebSocket port either: a clear error, not a hang.
        with pytest.raises(SynapseConnectionError):
            await Client(f"ws://127.0.0.1:{node.port}/synapse", connect_timeout=2).call("x")
        assert await Client(url).call("echo", "still serving") == "still serving"


async def test_an_oversize_message_closes_that_connection_only(anyio_backend: str) -> None:
    node = Node(bind="127.0.0.1", websocket="ws://127.0.0.1:0/synapse")

    @node.endpoint("echo", publish=False)
    async def echo(value: Any) -> Any:
        return value

    async with node, Client(node.websocket_urls[0]) as steady:
        assert await steady.call("echo", 1) == 1
        rogue = await open_websocket(WebSocketUrl.parse(node.websocket_urls[0]), timeout=5)
        # One 2 MiB message (past the 1 MiB limit), bypassing the stream's splitting.
        await rogue.connection.send_message(b"\x00" * (2 * 1024 * 1024))
        with anyio.fail_after(5), pytest.raises(anyio.BrokenResourceError, match="1009"):
            await rogue.receive()
        await rogue.aclose()
        assert await steady.call("echo", 2) == 2  # the other connection is untouched
        big = "x" * (3 * 1024 * 1024)  # a large call is split into messages under the limit
        assert await steady.call("echo", big) == big


async def test_unreachable_and_dead_peers_are_clear_errors(anyio_backend: str) -> None:
    with anyio.fail_after(10):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(SocketAttribute.local_port)
        await listener.aclose()  # nothing listens there now
        with pytest.raises(ConnectError, match=f"ws://127.0.0.1:{port}/"):
            await open_websocket(WebSocketUrl(False, "127.0.0.1", port), timeout=2)
        transport = WebSocketTransport(urls=[f"ws://127.0.0.1:{port}/x"])
        with pytest.raises(ConnectError):
            await transport.connect("127.0.0.1", port, timeout=2)

    node = Node(bind="127.0.0.1", websocket="ws://127.0.0.1:0/synapse")
    started = anyio.Event()

    @node.endpoint("slow", publish=False)
    async def slow() -> None:
        started.set()
        await anyio.sleep_forever()

    errors: list[BaseException] = []
    done = anyio.Event()
    node_scope = anyio.CancelScope()

    async def run_node(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        with node_scope:
            await node.serve(task_status=task_status)

    async with anyio.create_task_group() as tg:
        await tg.start(run_node)
        client = Client(node.websocket_urls[0], timeout=10)

        async def call() -> None:
            try:
                await client.call("slow")
            except SynapseConnectionError as exc:
                errors.append(exc)
            finally:
                done.set()

        tg.start_soon(call)
        with anyio.fail_after(5):
            await started.wait()
        node_scope.cancel()  # the node dies mid-call
        with anyio.fail_after(5):
            await done.wait()
    assert len(errors) == 1
    assert isinstance(errors[0], SynapseConnectionError)


def test_the_frame_codec() -> None:
    from synapse_p2p.transport._ws_frames import (
        BINARY,
        PING,
        FrameError,
        FrameReader,
        encode_frame,
    )

    server = FrameReader(masked=True, max_payload=70_000)
    for size in (0, 125, 126, 65535, 65536):
        data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        frame = encode_frame(BINARY, data, masked=True)
        server.feed(frame[:3])  # split anywhere
        assert server.next_frame() is None
        server.feed(frame[3:])
        assert server.next_frame() == (BINARY, True, data)
    server.feed(encode_frame(BINARY, b"x", masked=False))
    with pytest.raises(FrameError, match="masked"):
        server.next_frame()
    big = FrameReader(masked=False, max_payload=10)
    big.feed(encode_frame(BINARY, b"x" * 11, masked=False)[:4])  # the header alone decides
    with pytest.raises(FrameError) as info:
        big.next_frame()
    assert info.value.code == 1009
    control = FrameReader(masked=False, max_payload=10)
    control.feed(bytes((0x80 | PING, 126)) + (200).to_bytes(2, "big"))
    with pytest.raises(FrameError, match="control"):
        control.next_frame()


async def test_pings_fragments_and_close_from_an_independent_client(anyio_backend: str) -> None:
    """A client written with wsproto alone: the server answers pings, joins fragments and
    completes a close handshake (both drivers)."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import (
        AcceptConnection,
        BytesMessage,
        CloseConnection,
        Event,
        Ping,
        Pong,
        Request,
    )

    async with echo_server() as server:
        ws = WSConnection(ConnectionType.CLIENT)
        async with await anyio.connect_tcp("127.0.0.1", server.url.port) as tcp:
            pending: list[Event] = []

            async def next_event() -> Event:
                while not pending:
                    ws.receive_data(await tcp.receive())
                    pending.extend(ws.events())
                return pending.pop(0)

            with anyio.fail_after(5):
                await tcp.send(ws.send(Request(host="127.0.0.1", target="/synapse")))
                assert isinstance(await next_event(), AcceptConnection)
                await tcp.send(ws.send(Ping(payload=b"are you there")))
                pong = await next_event()
                assert isinstance(pong, Pong)
                assert pong.payload == b"are you there"
                await tcp.send(ws.send(BytesMessage(data=b"two ", message_finished=False)))
                await tcp.send(ws.send(BytesMessage(data=b"parts", message_finished=True)))
                echoed = b""
                while echoed != b"two parts":
                    event = await next_event()
                    assert isinstance(event, BytesMessage)
                    echoed += event.data
                await tcp.send(ws.send(CloseConnection(code=1000)))
                closed = await next_event()
                assert isinstance(closed, CloseConnection)
                assert closed.code == 1000


async def test_a_silent_client_is_dropped_after_the_handshake_timeout(anyio_backend: str) -> None:
    (listener,) = await listen_websocket("ws://127.0.0.1:0/synapse", handshake_timeout=0.3)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, _echo)
        async with await anyio.connect_tcp("127.0.0.1", listener.url.port) as silent:
            await silent.send(b"GET /synapse HTTP/1.1\r\n")  # and never the rest
            start = anyio.current_time()
            with anyio.fail_after(5), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await silent.receive()
            assert anyio.current_time() - start >= 0.2
        stream = await open_websocket(listener.url, timeout=5)  # others are still served
        await stream.send(b"hi")
        assert await _read(stream, 2) == b"hi"
        await stream.aclose()
        tg.cancel_scope.cancel()
    await listener.aclose()
