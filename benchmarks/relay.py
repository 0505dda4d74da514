"""Through a relay against direct, same run, paired ratios, on each backend.

    python benchmarks/relay.py [--backend trio|asyncio] [--segments 15]

For each backend a relay (``Node(relay=True)``) and a target node (``relays=[the relay]``,
with an ``echo`` endpoint) run in processes of their own. This process holds two clients of
the target, both persistent and multiplexed over the secure channel: one dialing it directly,
one through the relay (a circuit, the end-to-end secure channel inside it). It alternates
short segments of each workload between them, the order alternating too, so both see the same
load on a shared machine. Each ratio is the median over the segments of relayed rate / direct
rate. Workloads: sequential calls (target >= 0.5x), 64 concurrent callers on the one
connection, 1 MiB echoes (target >= 0.5x). Every loop is bounded in count; the server
processes are killed at the end.
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

TARGETS = {"seq_calls_s": 0.5, "big_mib_s": 0.5}


def serve(role: str, backend: str, relay_port: int) -> None:
    import anyio

    from synapse_p2p import Node

    async def main() -> None:
        if role == "relay":
            node = Node(bind="127.0.0.1", relay=True, mdns=False, heartbeat_interval=None)
        else:
            node = Node(
                bind="127.0.0.1",
                relays=[f"127.0.0.1:{relay_port}"],
                mdns=False,
                heartbeat_interval=None,
            )

            @node.endpoint("echo", publish=False)
            async def echo(value: Any) -> Any:
                return value

        async with node:
            with anyio.fail_after(10):
                await node.relay.wait_reserved()
            print(json.dumps({"port": node.port, "node_id": node.node_id}), flush=True)
            await anyio.sleep(600)  # bounded: the parent kills it long before

    anyio.run(main, backend=backend)


async def measure(relay_port: int, port: int, node_id: str, segments: int) -> dict[str, Any]:
    from benchmarks._paired import compare
    from synapse_p2p import Client
    from synapse_p2p.relay import RelayTransport

    via = RelayTransport()
    via.add_route(("127.0.0.1", port), relay=("127.0.0.1", relay_port), node_id=node_id)
    async with (
        Client("127.0.0.1", port) as direct,
        Client("127.0.0.1", port, transport=via) as relayed,
    ):
        return await compare({"direct": direct, "relay": relayed}, segments)


def _start(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def run_backend(backend: str, segments: int) -> dict[str, Any]:
    import anyio

    processes: list[subprocess.Popen[str]] = []
    try:
        relay, relay_info = _start("--serve", "relay", "--serve-backend", backend)
        processes.append(relay)
        target, info = _start(
            "--serve", "target", "--serve-backend", backend, "--relay-port",
            str(relay_info["port"]),
        )  # fmt: skip
        processes.append(target)
        return anyio.run(
            measure, relay_info["port"], info["port"], info["node_id"], segments, backend=backend
        )
    finally:
        for process in processes:
            process.kill()
            process.wait()


def main() -> None:
    from benchmarks._paired import report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["trio", "asyncio"])
    parser.add_argument("--segments", type=int, default=15)
    parser.add_argument("--serve", choices=["relay", "target"], help=argparse.SUPPRESS)
    parser.add_argument("--serve-backend", default="trio", help=argparse.SUPPRESS)
    parser.add_argument("--relay-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.serve_backend, args.relay_port)
        return
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    results = {}
    for backend in [args.backend] if args.backend else ["trio", "asyncio"]:
        result = results[backend] = run_backend(backend, args.segments)
        print(f"\n{backend}: through a relay / direct (median of {args.segments} paired segments)")
        report(result, TARGETS)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
