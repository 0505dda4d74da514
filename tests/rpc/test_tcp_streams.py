"""The byte streams of TcpTransport (lean asyncio streams under asyncio, anyio's under trio):
the ByteStream contract the RPC layer relies on, on real loopback sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute

from synapse_p2p.transport import TcpTransport

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def stream_pair() -> AsyncIterator[tuple[ByteStream, ByteStream]]:
    """A connected (client, server) pair made by TcpTransport."""
    transport = TcpTransport()
    (listener,) = await transport.listen("127.0.0.1", 0)
    port = listener.extra(SocketAttribute.local_port)
    try:
        accepted: list[ByteStream] = []

        async def accept() -> None:
            accepted.append(await listener.accept())  # type: ignore[attr-defined]

        async with anyio.create_task_group() as tg:
            tg.start_soon(accept)
            client = await transport.connect("127.0.0.1", port, timeout=5)
        (server,) = accepted
        async with client, server:
            yield client, server
    finally:
        await listener.aclose()


async def receive_exactly(stream: ByteStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += await stream.receive()
    return data


async def test_half_close_then_answer(anyio_backend: str) -> None:
    async with stream_pair() as (client, server):
        await client.send(b"question")
        await client.send_eof()
        assert await receive_exactly(server, 8) == b"question"
        with pytest.raises(anyio.EndOfStream):
            await server.receive()
        await server.send(b"answer")  # the other direction still works
        assert await receive_exactly(client, 6) == b"answer"
        assert client.extra(SocketAttribute.remote_address)[0] == "127.0.0.1"


async def test_a_cancelled_receive_loses_no_data(anyio_backend: str) -> None:
    async with stream_pair() as (client, server):
        with anyio.move_on_after(0.05) as scope:
            await server.receive()
        assert scope.cancelled_caught
        await client.send(b"kept")
        assert await receive_exactly(server, 4) == b"kept"


async def test_closing_wakes_a_pending_receive(anyio_backend: str) -> None:
    async with stream_pair() as (_client, server):
        outcome: list[type[BaseException]] = []
        receiving = anyio.Event()

        async def receive() -> None:
            receiving.set()
            try:
                await server.receive()
            except (anyio.ClosedResourceError, anyio.EndOfStream) as exc:
                outcome.append(type(exc))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(receive)
                await receiving.wait()
                await anyio.lowlevel.checkpoint()
                await server.aclose()
        assert outcome == [anyio.ClosedResourceError]
        with pytest.raises(anyio.ClosedResourceError):
            await server.send(b"late")


async def test_many_senders_at_once_arrive_whole(anyio_backend: str) -> None:
    async with stream_pair() as (client, server):
        chunks = [bytes([i]) * (i + 1) for i in range(100)]
        lock = anyio.Lock()  # one sender at a time, as FrameChannel guarantees

        async def send(chunk: bytes) -> None:
            async with lock:
                await client.send(chunk)

        async with anyio.create_task_group() as tg:
            for chunk in chunks:
                tg.start_soon(send, chunk)
        expected = b"".join(chunks)
        received = await receive_exactly(server, len(expected))
        assert sorted(received) == sorted(expected)  # every byte arrives...
        pieces, pos = [], 0
        while pos < len(received):  # ...and each chunk whole
            size = received[pos] + 1
            assert received[pos : pos + size] == bytes([received[pos]]) * size
            pieces.append(received[pos])
            pos += size
        assert sorted(pieces) == list(range(100))


async def test_backpressure_holds_a_big_send_until_the_peer_reads(anyio_backend: str) -> None:
    payload = bytes(range(256)) * (128 * 1024)  # 32 MiB: more than the socket buffers hold
    async with stream_pair() as (client, server):
        received = bytearray()

        async def read_all() -> None:
            while len(received) < len(payload):
                received.extend(await server.receive())

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.send, payload)
                tg.start_soon(read_all)
        assert bytes(received) == payload


async def test_writes_to_a_peer_that_does_not_read_wait_and_stay_bounded(
    anyio_backend: str,
) -> None:
    """Back-to-back sends to a peer that reads nothing block once the buffers are full (on
    asyncio, writes made in the same turn used to pile up in memory without ever waiting)."""
    async with stream_pair() as (client, _server):
        chunk = b"x" * 65536
        sent = 0
        with anyio.move_on_after(1) as scope:
            while sent < 512 * 2**20:  # bounded: far beyond any socket buffer
                await client.send(chunk)
                sent += len(chunk)
        assert scope.cancelled_caught  # the sender was made to wait
        assert sent < 64 * 2**20
        protocol = getattr(client, "_protocol", None)
        if protocol is not None:  # the lean asyncio stream: nothing left waiting in memory
            assert protocol.outgoing_bytes <= 2**20
