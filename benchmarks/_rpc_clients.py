"""Load generators for benchmarks/rpc.py. Prints one JSON line of results.

    python _rpc_clients.py ours|raw trio|asyncio PORT     (this environment)
    python _rpc_clients.py ref asyncio PORT               (synapse-p2p 2.5.0's interpreter)

Measures: sequential calls over one connection (latencies), 64 concurrent callers, and
1 MiB echoes. Every loop is bounded in count.
"""

from __future__ import annotations

import json
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

SEQUENTIAL = 3000
CONCURRENT_CALLERS = 64
CALLS_PER_CALLER = 60
BIG = b"x" * (1024 * 1024)
BIG_CALLS = 30
HEADER = struct.Struct("!I")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    call: Callable[[Any], Awaitable[Any]],
    concurrent: Callable[[int, int], Awaitable[None]],
    big_call: Callable[[bytes], Awaitable[Any]],
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
        "big_mib_s": BIG_CALLS / big_elapsed,
    }


async def run_ours(port: int) -> dict[str, float]:
    import anyio

    from synapse_p2p import Client

    async with Client("127.0.0.1", port) as client:

        async def call(v: Any) -> Any:
            return await client.call("echo", v)

        async def concurrent(callers: int, each: int) -> None:
            async def caller() -> None:
                for i in range(each):
                    await client.call("echo", i)

            async with anyio.create_task_group() as tg:
                for _ in range(callers):
                    tg.start_soon(caller)

        return await measure(call, concurrent, call)


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
        async def caller() -> None:
            c = await raw_connect_trio(port)
            for i in range(each):
                await c.call(i)

        async with trio.open_nursery() as nursery:
            for _ in range(callers):
                nursery.start_soon(caller)

    return await measure(conn.call, concurrent, conn.call)


async def run_raw_asyncio(port: int) -> dict[str, float]:
    import asyncio

    conn = await raw_connect_asyncio(port)

    async def concurrent(callers: int, each: int) -> None:
        async def caller() -> None:
            c = await raw_connect_asyncio(port)
            for i in range(each):
                await c.call(i)

        await asyncio.gather(*(caller() for _ in range(callers)))

    return await measure(conn.call, concurrent, conn.call)


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

        result = anyio.run(run_ours, port, backend=backend)
    print(json.dumps(result), flush=True)
