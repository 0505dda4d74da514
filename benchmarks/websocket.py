"""WebSocket against TCP, same run, paired ratios, on each backend.

    python benchmarks/websocket.py [--backend trio|asyncio] [--segments 15]
                                   [--trio-driver trio-websocket|shared|both]

For each backend a node runs in its own process (``--serve``), listening on TCP and on
``ws://127.0.0.1:0/synapse`` beside it, with an ``echo`` endpoint. This process holds one TCP
client and one WebSocket client of that node (both persistent, multiplexed, over the secure
channel: what nodes and clients use by default) and alternates short segments of each workload
between them, the order alternating too, so both see the same load on a shared machine. Each
ratio is the median over the segments of WebSocket rate / TCP rate. Workloads: sequential
calls (target >= 0.7x), 64 concurrent callers on the one connection, 1 MiB echoes. Every
loop is bounded in count; the server process is killed at the end.

Under trio the WebSocket is trio-websocket's; ``--trio-driver shared`` (or ``both``) also
measures the wsproto driver the asyncio backend uses, run under trio on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SEQUENTIAL = 300
CALLERS = 64
CALLS_PER_CALLER = 10
BIG = b"x" * (1024 * 1024)
BIG_CALLS = 4
TARGETS = {"seq_calls_s": 0.7}


def use_driver(driver: str) -> None:
    from synapse_p2p.transport import _websocket

    _websocket._TRIO_WEBSOCKET = driver == "trio-websocket"


def serve(backend: str, driver: str) -> None:
    import anyio

    from synapse_p2p import Node

    use_driver(driver)

    async def main() -> None:
        node = Node(bind="127.0.0.1", websocket="ws://127.0.0.1:0/synapse", mdns=False)

        @node.endpoint("echo", publish=False)
        async def echo(value: Any) -> Any:
            return value

        async with node:
            print(json.dumps({"port": node.port, "ws": node.websocket_urls[0]}), flush=True)
            await anyio.sleep(600)  # bounded: the parent kills it long before

    anyio.run(main, backend=backend)


async def measure(port: int, url: str, segments: int) -> dict[str, Any]:
    import anyio

    from synapse_p2p import Client

    async def sequential(client: Client) -> int:
        for i in range(SEQUENTIAL):
            await client.call("echo", i)
        return SEQUENTIAL

    async def callers(client: Client) -> int:
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

    workloads: dict[str, Callable[[Client], Awaitable[int]]] = {
        "seq_calls_s": sequential,
        "conc_calls_s": callers,
        "big_mib_s": big,
    }
    rates: dict[str, dict[str, list[float]]] = {name: {"tcp": [], "ws": []} for name in workloads}
    ratios: dict[str, list[float]] = {name: [] for name in workloads}
    async with Client("127.0.0.1", port) as tcp, Client(url) as ws:
        clients = {"tcp": tcp, "ws": ws}
        for client in clients.values():  # warm up
            await sequential(client)
            await big(client)
        for segment in range(segments):
            for name, work in workloads.items():
                rate = {}
                for kind in ("tcp", "ws") if segment % 2 else ("ws", "tcp"):
                    start = time.perf_counter()
                    count = await work(clients[kind])
                    rate[kind] = count / (time.perf_counter() - start)
                    rates[name][kind].append(rate[kind])
                ratios[name].append(rate["ws"] / rate["tcp"])
    return {
        "ratios": {name: statistics.median(values) for name, values in ratios.items()},
        "rates": {
            name: {kind: statistics.median(v) for kind, v in by_kind.items()}
            for name, by_kind in rates.items()
        },
    }


def run_backend(backend: str, segments: int, driver: str) -> dict[str, Any]:
    import anyio

    use_driver(driver)
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", backend, "--trio-driver", driver],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        return anyio.run(measure, info["port"], info["ws"], segments, backend=backend)
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["trio", "asyncio"])
    parser.add_argument("--segments", type=int, default=15)
    parser.add_argument(
        "--trio-driver", choices=["trio-websocket", "shared", "both"], default="trio-websocket"
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.trio_driver)
        return
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    runs = []
    for backend in [args.backend] if args.backend else ["trio", "asyncio"]:
        if backend == "trio" and args.trio_driver == "both":
            runs += [("trio", "trio-websocket"), ("trio", "shared")]
        elif backend == "trio":
            runs.append(("trio", args.trio_driver))
        else:
            runs.append((backend, "shared"))
    results = {}
    for backend, driver in runs:
        label = backend if backend == "asyncio" else f"trio ({driver} driver)"
        result = results[label] = run_backend(backend, args.segments, driver)
        print(f"\n{label}: WebSocket / TCP (median of {args.segments} paired segments)")
        for name, ratio in result["ratios"].items():
            rate = result["rates"][name]
            target = TARGETS.get(name)
            verdict = (
                ""
                if target is None
                else f"  target >= {target}x: " + ("met" if ratio >= target else "MISSED")
            )
            print(
                f"  {name:14} tcp {rate['tcp']:10.1f}  ws {rate['ws']:10.1f}  "
                f"ratio {ratio:.2f}x{verdict}"
            )
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
