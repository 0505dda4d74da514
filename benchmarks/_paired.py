"""Two clients of one node compared in pairs (``relay.py``: through a relay against direct;
``websocket.py``: WebSocket against TCP).

:func:`compare` warms both clients up, then alternates short segments of each workload between
them, the order alternating too, so both see the same load on a shared machine. Each ratio is
the median over the segments of the second client's rate / the first's. Workloads: sequential
calls, 64 concurrent callers on the one connection, 1 MiB echoes (calls of the node's ``echo``
endpoint). Every loop is bounded in count. :func:`report` prints the rates and ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from synapse_p2p import Client

SEQUENTIAL = 300
CALLERS = 64
CALLS_PER_CALLER = 10
BIG = b"x" * (1024 * 1024)
BIG_CALLS = 4


async def sequential(client: Client) -> int:
    for i in range(SEQUENTIAL):
        await client.call("echo", i)
    return SEQUENTIAL


async def callers(client: Client) -> int:
    import anyio

    async def caller() -> None:
        for i in range(CALLS_PER_CALLER):
            await client.call("echo", i)

    async with anyio.create_task_group() as tg:
        for _ in range(CALLERS):
            tg.start_soon(caller)
    return CALLERS * CALLS_PER_CALLER


async def big(client: Client) -> int:
    for _ in range(BIG_CALLS):
        await client.call("echo", BIG)
    return BIG_CALLS  # MiB each way


WORKLOADS: dict[str, Callable[[Client], Awaitable[int]]] = {
    "seq_calls_s": sequential,
    "conc_calls_s": callers,
    "big_mib_s": big,
}


async def compare(clients: Mapping[str, Client], segments: int) -> dict[str, Any]:
    """``clients``: the baseline first, then the one measured against it (two entries)."""
    base, other = clients
    rates: dict[str, dict[str, list[float]]] = {name: {base: [], other: []} for name in WORKLOADS}
    ratios: dict[str, list[float]] = {name: [] for name in WORKLOADS}
    for client in clients.values():  # warm up
        await sequential(client)
        await big(client)
    for segment in range(segments):
        for name, work in WORKLOADS.items():
            rate = {}
            for kind in (base, other) if segment % 2 else (other, base):
                start = time.perf_counter()
                count = await work(clients[kind])
                rate[kind] = count / (time.perf_counter() - start)
                rates[name][kind].append(rate[kind])
            ratios[name].append(rate[other] / rate[base])
    return {
        "ratios": {name: statistics.median(values) for name, values in ratios.items()},
        "rates": {
            name: {kind: statistics.median(v) for kind, v in by_kind.items()}
            for name, by_kind in rates.items()
        },
    }


def report(result: dict[str, Any], targets: Mapping[str, float]) -> None:
    """Print each workload's median rates and ratio, against its target if it has one."""
    for name, ratio in result["ratios"].items():
        rate = result["rates"][name]
        target = targets.get(name)
        verdict = (
            ""
            if target is None
            else f"  target >= {target}x: " + ("met" if ratio >= target else "MISSED")
        )
        kinds = "  ".join(f"{kind} {value:10.1f}" for kind, value in rate.items())
        print(f"  {name:14} {kinds}  ratio {ratio:.2f}x{verdict}")
