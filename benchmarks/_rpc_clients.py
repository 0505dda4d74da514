"""Load generators for benchmarks/rpc.py. Prints one JSON line of results.

    python _rpc_clients.py ours|ours-secure|raw trio|asyncio PORT     (this environment)
    python _rpc_clients.py ref asyncio PORT               (synapse-p2p 2.5.0's interpreter)

Measures: sequential calls over one connection (latencies); 64 concurrent callers in two
shapes, all sharing one connection (``conc_calls_s``: requests matched to responses by id,
which is how our client works) and one persistent connection per caller
(``conc_conns_calls_s``: the connections are opened first, one after another, and only the
calls are timed); and 1 MiB echoes. The reference opens one connection per call
whatever the shape, so it only has ``conc_calls_s``. Every loop is bounded in count.

``ours`` calls in plaintext (the wire of 2.5.0, which our node still serves when it has no swarm
secret); ``ours-secure`` over the secure channel (Noise, what our clients and nodes use between
themselves by default). The server is the same in both cases.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

SEQUENTIAL = 3000
CONCURRENT_CALLERS = 64
CALLS_PER_CALLER = 60
BIG = b"x" * (1024 * 1024)
BIG_CALLS = 30
CONNECTS = 50
HEADER = struct.Struct("!I")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    call: Callable[[Any], Awaitable[Any]],
    concurrent: Callable[[int, int], Awaitable[None]],
    big_call: Callable[[bytes], Awaitable[Any]],
    concurrent_conns: Callable[[int, int], Awaitable[float]] | None = None,
) -> dict[str, float]:
    for _ in range(200):  # warm up
        await call(1)
    lat = []
    start = time.perf_counter()
    for i in range(SEQUENTIAL):
        t0 = time.perf_counter()
        assert await call(i) == i
        lat.append(time.perf_counter() - t0)
    seq_elapsed = time.perf_counter() - start
    start = time.perf_counter()
    await concurrent(CONCURRENT_CALLERS, CALLS_PER_CALLER)
    conc_elapsed = time.perf_counter() - start
    conns_rate = math.nan
    if concurrent_conns is not None:
        elapsed = await concurrent_conns(CONCURRENT_CALLERS, CALLS_PER_CALLER)
        conns_rate = CONCURRENT_CALLERS * CALLS_PER_CALLER / elapsed
    await big_call(BIG)
    start = time.perf_counter()
    for _ in range(BIG_CALLS):
        assert len(await big_call(BIG)) == len(BIG)
    big_elapsed = time.perf_counter() - start
    return {
        "seq_calls_s": SEQUENTIAL / seq_elapsed,
        "p50_us": percentile(lat, 0.5) * 1e6,
        "p99_us": percentile(lat, 0.99) * 1e6,
        "conc_calls_s": CONCURRENT_CALLERS * CALLS_PER_CALLER / conc_elapsed,
        "conc_conns_calls_s": conns_rate,
        "big_mib_s": BIG_CALLS / big_elapsed,
    }


async def run_ours(port: int, secure: bool) -> dict[str, float]:
    import anyio

    from synapse_p2p import Client
    from synapse_p2p.rpc import PlainDialer

    def connect() -> Client:
        client = Client("127.0.0.1", port)
        if not secure:
            client.dialer = PlainDialer(client.transport)
        return client

    async with connect() as client:

        async def call(v: Any) -> Any:
            return await client.call("echo", v)

        async def concurrent(callers: int, each: int) -> None:
            async def caller() -> None:
                for i in range(each):
                    await client.call("echo", i)

            async with anyio.create_task_group() as tg:
                for _ in range(callers):
                    tg.start_soon(caller)

        async def concurrent_conns(callers: int, each: int) -> float:
            async with AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(connect()) for _ in range(callers)]

                async def caller(own: Client) -> None:
                    for i in range(each):
                        await own.call("echo", i)

                start = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for own in clients:
                        tg.start_soon(caller, own)
                return time.perf_counter() - start

        result = await measure(call, concurrent, call, concurrent_conns)
        # Connect (+ handshake, for the secure channel) latency: a fresh connection to the
        # server, ready for a first call, closed again.
        samples = []
        for _ in range(CONNECTS):
            start = time.perf_counter()
            stream, _ = await client.dialer.connect("127.0.0.1", port, timeout=10)
            samples.append(time.perf_counter() - start)
            await stream.aclose()
        result["connect_ms"] = percentile(samples, 0.5) * 1000
        return result


class RawConnection:
    """A persistent raw msgpack connection on native trio or asyncio streams."""

    def __init__(
        self, send: Callable[[bytes], Awaitable[None]], receive: Callable[[], Awaitable[bytes]]
    ) -> None:
        self.send = send
        self.receive = receive
        self.buf = b""

    async def call(self, value: Any) -> Any:
        import msgpack

        body = msgpack.packb(
            {"endpoint": "echo", "id": "1", "args": [value], "kwargs": {}, "type": "request"},
            use_bin_type=True,
        )
        await self.send(HEADER.pack(len(body)) + body)
        while len(self.buf) < 4:
            self.buf += await self.receive()
        (size,) = HEADER.unpack_from(self.buf)
        while len(self.buf) < 4 + size:
            self.buf += await self.receive()
        payload, self.buf = self.buf[4 : 4 + size], self.buf[4 + size :]
        return msgpack.unpackb(payload, raw=False)["result"]


class RawMux:
    """A persistent raw msgpack connection shared by concurrent callers: each request carries
    an id, one reader task hands every response to its caller (the minimal multiplexer)."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.pending: dict[str, list[Any]] = {}  # id -> [wake-up, result]

    @staticmethod
    def frame(request_id: str, value: Any) -> bytes:
        import msgpack

        body: bytes = msgpack.packb(
            {
                "endpoint": "echo",
                "id": request_id,
                "args": [value],
                "kwargs": {},
                "type": "request",
            },
            use_bin_type=True,
        )
        return HEADER.pack(len(body)) + body

    def feed(self, buf: bytearray) -> None:
        """Hand every complete response in ``buf`` to its caller (``wake`` is called)."""
        import msgpack

        pos = 0
        while len(buf) - pos >= 4:
            (size,) = HEADER.unpack_from(buf, pos)
            if len(buf) - pos - 4 < size:
                break
            message = msgpack.unpackb(bytes(buf[pos + 4 : pos + 4 + size]), raw=False)
            pos += 4 + size
            slot = self.pending.pop(message["id"])
            slot[1] = message["result"]
            slot[0].set()
        del buf[:pos]


async def raw_mux_trio(port: int, callers: int, each: int) -> None:
    import trio

    stream = await trio.open_tcp_stream("127.0.0.1", port)
    mux = RawMux()
    outgoing: list[bytes] = []  # frames queued while a caller is writing
    writing = False

    async def send(frame: bytes) -> None:
        # One caller writes at a time (trio streams allow one sender); frames queued
        # meanwhile leave together with its next write.
        nonlocal writing
        if writing:
            outgoing.append(frame)
            return
        writing = True
        try:
            data = frame
            while True:
                await stream.send_all(data)
                if not outgoing:
                    break
                data = b"".join(outgoing)
                outgoing.clear()
        finally:
            writing = False

    async def reader() -> None:
        buf = bytearray()
        while True:
            data = await stream.receive_some(262144)
            if not data:
                return
            buf += data
            mux.feed(buf)

    async def caller() -> None:
        for i in range(each):
            request_id = str(next(mux.ids))
            slot: list[Any] = [trio.Event(), None]
            mux.pending[request_id] = slot
            await send(mux.frame(request_id, i))
            await slot[0].wait()
            assert slot[1] == i

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        async with trio.open_nursery() as callers_nursery:
            for _ in range(callers):
                callers_nursery.start_soon(caller)
        nursery.cancel_scope.cancel()
    await stream.aclose()


async def raw_mux_asyncio(port: int, callers: int, each: int) -> None:
    import asyncio

    reader_stream, writer = await asyncio.open_connection("127.0.0.1", port)
    mux = RawMux()

    async def reader() -> None:
        buf = bytearray()
        while True:
            data = await reader_stream.read(262144)
            if not data:
                return
            buf += data
            mux.feed(buf)

    async def caller() -> None:
        for i in range(each):
            request_id = str(next(mux.ids))
            slot: list[Any] = [asyncio.Event(), None]
            mux.pending[request_id] = slot
            writer.write(mux.frame(request_id, i))
            await writer.drain()
            await slot[0].wait()
            assert slot[1] == i

    read_task = asyncio.create_task(reader())
    await asyncio.gather(*(caller() for _ in range(callers)))
    read_task.cancel()
    writer.close()


async def raw_connect_trio(port: int) -> RawConnection:
    import trio

    stream = await trio.open_tcp_stream("127.0.0.1", port)
    return RawConnection(stream.send_all, lambda: stream.receive_some(262144))


async def raw_connect_asyncio(port: int) -> RawConnection:
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    return RawConnection(send, lambda: reader.read(262144))


async def run_raw_trio(port: int) -> dict[str, float]:
    import trio

    conn = await raw_connect_trio(port)

    async def concurrent(callers: int, each: int) -> None:
        await raw_mux_trio(port, callers, each)

    async def concurrent_conns(callers: int, each: int) -> float:
        conns = [await raw_connect_trio(port) for _ in range(callers)]

        async def caller(c: RawConnection) -> None:
            for i in range(each):
                await c.call(i)

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for c in conns:
                nursery.start_soon(caller, c)
        return time.perf_counter() - start

    return await measure(conn.call, concurrent, conn.call, concurrent_conns)


async def run_raw_asyncio(port: int) -> dict[str, float]:
    import asyncio

    conn = await raw_connect_asyncio(port)

    async def concurrent(callers: int, each: int) -> None:
        await raw_mux_asyncio(port, callers, each)

    async def concurrent_conns(callers: int, each: int) -> float:
        conns = [await raw_connect_asyncio(port) for _ in range(callers)]

        async def caller(c: RawConnection) -> None:
            for i in range(each):
                await c.call(i)

        start = time.perf_counter()
        await asyncio.gather(*(caller(c) for c in conns))
        return time.perf_counter() - start

    return await measure(conn.call, concurrent, conn.call, concurrent_conns)


async def run_ref(port: int) -> dict[str, float]:
    import asyncio

    from synapse_p2p import Client  # synapse-p2p 2.5.0

    client = Client("127.0.0.1", port)

    async def call(v: Any) -> Any:
        return await client.call("echo", v)

    async def concurrent(callers: int, each: int) -> None:
        async def caller() -> None:
            for i in range(each):
                await client.call("echo", i)

        await asyncio.gather(*(caller() for _ in range(callers)))

    return await measure(call, concurrent, call)


if __name__ == "__main__":
    impl, backend, port_text = sys.argv[1:4]
    port = int(port_text)
    if impl == "ref":
        import asyncio

        result = asyncio.run(run_ref(port))
    elif impl == "raw" and backend == "trio":
        import trio

        result = trio.run(run_raw_trio, port)
    elif impl == "raw":
        import asyncio

        result = asyncio.run(run_raw_asyncio(port))
    else:
        import anyio

        result = anyio.run(run_ours, port, impl == "ours-secure", backend=backend)
    print(json.dumps(result), flush=True)
