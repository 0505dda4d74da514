"""Encrypted / plaintext ratios for benchmarks/rpc.py, measured in pairs. Prints one JSON line.

    python _rpc_paired.py trio|asyncio PORT     (a server of ``_rpc_servers.py ours``)

One process holds a plaintext and an encrypted client of the same server and alternates short
segments of each workload between them (which goes first alternates too), so both see the same
load on a shared machine; each ratio is the median over the segments of encrypted rate /
plaintext rate. Workloads as in ``_rpc_clients.py``: sequential calls, 64 concurrent callers
on one connection, 64 callers with a connection each (opened before any timing), 1 MiB echoes.
Every loop is bounded in count.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

SEGMENTS = 15
SEQUENTIAL = 500
CALLERS = 64
CALLS_PER_CALLER = 15
BIG = b"x" * (1024 * 1024)
BIG_CALLS = 5


async def run(port: int) -> dict[str, Any]:
    import anyio

    from synapse_p2p import Client
    from synapse_p2p.rpc import PlainDialer

    def connect(secure: bool) -> Client:
        client = Client("127.0.0.1", port)
        if not secure:
            client.dialer = PlainDialer(client.transport)
        return client

    async def sequential(clients: list[Client]) -> None:
        for i in range(SEQUENTIAL):
            await clients[0].call("echo", i)

    async def callers(clients: list[Client]) -> None:
        async def caller(client: Client) -> None:
            for i in range(CALLS_PER_CALLER):
                await client.call("echo", i)

        async with anyio.create_task_group() as tg:
            for n in range(CALLERS):
                tg.start_soon(caller, clients[n % len(clients)])

    async def big(clients: list[Client]) -> None:
        for _ in range(BIG_CALLS):
            await clients[0].call("echo", BIG)

    workloads: dict[str, tuple[Callable[[list[Client]], Awaitable[None]], bool]] = {
        "seq_calls_s": (sequential, False),
        "conc_calls_s": (callers, False),
        "conc_conns_calls_s": (callers, True),
        "big_mib_s": (big, False),
    }
    async with AsyncExitStack() as stack:
        shared = {s: [await stack.enter_async_context(connect(s))] for s in (False, True)}
        own = {
            s: [await stack.enter_async_context(connect(s)) for _ in range(CALLERS)]
            for s in (False, True)
        }
        for clients in (*shared.values(), *own.values()):  # warm up every connection
            for client in clients:
                await client.call("echo", 0)
            await big(clients)
        ratios: dict[str, list[float]] = {name: [] for name in workloads}
        for segment in range(SEGMENTS):
            for name, (work, per_caller) in workloads.items():
                elapsed = {}
                for secure in (False, True) if segment % 2 else (True, False):
                    start = time.perf_counter()
                    await work((own if per_caller else shared)[secure])
                    elapsed[secure] = time.perf_counter() - start
                ratios[name].append(elapsed[False] / elapsed[True])
    return {
        "ratios": {name: statistics.median(values) for name, values in ratios.items()},
        "segments": ratios,
    }


if __name__ == "__main__":
    import anyio

    backend, port_text = sys.argv[1:3]
    print(json.dumps(anyio.run(run, int(port_text), backend=backend)), flush=True)
