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
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

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
    from benchmarks._paired import compare
    from synapse_p2p import Client

    async with Client("127.0.0.1", port) as tcp, Client(url) as ws:
        return await compare({"tcp": tcp, "ws": ws}, segments)


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
    from benchmarks._paired import report

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
        report(result, TARGETS)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
