"""RPC benchmark: this package vs synapse-p2p 2.5.0 vs a raw msgpack server, one run.

    python benchmarks/rpc.py [--rounds 3]

Every server runs in its own process and is loaded by a client in another process, on
127.0.0.1. "raw" is a minimal length-prefixed msgpack echo server with persistent connections
on the same backend (native trio / asyncio streams, no framework), driven by equally minimal
raw clients: the practical limit. The reference runs in its own virtual environment
(.cache/ref-2.5.0, built on first use). Medians of the rounds are printed with ratios; figures
from different runs are not comparable on a shared machine, ratios within one run are.

64 concurrent callers are measured in two shapes, each compared like for like: all 64 sharing
one connection (our client multiplexes its calls over one connection; the raw client does the
same with request ids and one reader task), and one persistent connection per caller (64 of
our clients; 64 raw connections). The reference's client opens a connection for every call,
whatever the shape; its figure stands in the shared-connection column.

A last section measures how long a pathological 4 MiB frame blocks the event loop while it is
decoded, inline versus the way the server does it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

METRICS = ["seq_calls_s", "p50_us", "p99_us", "conc_calls_s", "conc_conns_calls_s", "big_mib_s"]


def ref_python() -> Path:
    from tests.interop.refenv import build_reference_venv

    return build_reference_venv()


def run_pair(server_cmd: list[str], client_cmd: list[str]) -> dict[str, float]:
    server = subprocess.Popen(server_cmd, stdout=subprocess.PIPE, text=True, cwd=HERE)
    try:
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["port"]
        out = subprocess.run(
            [*client_cmd, str(port)], capture_output=True, text=True, cwd=HERE, timeout=300
        )
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
    finally:
        server.kill()
        server.wait()


def decode_stall() -> dict[str, float]:
    import anyio
    import msgpack

    from synapse_p2p.rpc._channel import decode_payload
    from synapse_p2p.wire import unpack_payload

    payload = msgpack.packb({"endpoint": "x", "args": [[[]] * (4 * 1024 * 1024 - 64)]})

    async def worst_gap(decode: Any) -> float:
        gaps = [0.0]
        stop = anyio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await anyio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await anyio.sleep(0.02)
            await decode()
            stop.set()
        return max(gaps) * 1000

    async def inline() -> None:
        unpack_payload(payload)

    async def offloaded() -> None:
        try:
            await decode_payload(payload)
        except Exception:
            pass  # not a valid request; only the decode time matters

    async def main() -> dict[str, float]:
        return {"inline_ms": await worst_gap(inline), "server_ms": await worst_gap(offloaded)}

    return anyio.run(main, backend="trio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ours_py = sys.executable
    ref_py = str(ref_python())
    configs: dict[str, tuple[list[str], list[str]]] = {
        "ref (2.5.0, asyncio)": (
            [ref_py, "_rpc_servers.py", "ref"],
            [ref_py, "_rpc_clients.py", "ref", "asyncio"],
        ),
    }
    for backend in ("trio", "asyncio"):
        configs[f"ours ({backend})"] = (
            [ours_py, "_rpc_servers.py", "ours", backend],
            [ours_py, "_rpc_clients.py", "ours", backend],
        )
        configs[f"raw ({backend})"] = (
            [ours_py, "_rpc_servers.py", "raw", backend],
            [ours_py, "_rpc_clients.py", "raw", backend],
        )
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    for r in range(args.rounds):
        for name, (server, client) in configs.items():
            samples[name].append(run_pair(server, client))
            print(f"round {r + 1}/{args.rounds}: {name} done", file=sys.stderr, flush=True)
    med = {
        name: {m: statistics.median(s.get(m, math.nan) for s in runs) for m in METRICS}
        for name, runs in samples.items()
    }
    print(f"\nRPC, server and client in separate processes, median of {args.rounds} rounds\n")
    print(
        "| implementation | sequential calls/s | p50 us | p99 us "
        "| 64 callers, 1 shared connection, calls/s | 64 callers, 64 connections, calls/s "
        "| 1 MiB echo MiB/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, m in med.items():
        conns = "n/a" if math.isnan(m["conc_conns_calls_s"]) else f"{m['conc_conns_calls_s']:,.0f}"
        print(
            f"| {name} | {m['seq_calls_s']:,.0f} | {m['p50_us']:,.0f} | {m['p99_us']:,.0f} "
            f"| {m['conc_calls_s']:,.0f} | {conns} | {m['big_mib_s']:,.0f} |"
        )
    ref = med["ref (2.5.0, asyncio)"]
    print(
        "\n| backend | seq vs ref | seq vs raw | 64-conc vs ref "
        "| 64-conc vs raw, 1 shared connection | 64-conc vs raw, 64 connections "
        "| 1 MiB vs raw |"
    )
    print("|---|---|---|---|---|---|---|")
    for backend in ("trio", "asyncio"):
        o, raw = med[f"ours ({backend})"], med[f"raw ({backend})"]
        print(
            f"| {backend} | {o['seq_calls_s'] / ref['seq_calls_s']:.2f}x "
            f"| {o['seq_calls_s'] / raw['seq_calls_s']:.2f}x "
            f"| {o['conc_calls_s'] / ref['conc_calls_s']:.2f}x "
            f"| {o['conc_calls_s'] / raw['conc_calls_s']:.2f}x "
            f"| {o['conc_conns_calls_s'] / raw['conc_conns_calls_s']:.2f}x "
            f"| {o['big_mib_s'] / raw['big_mib_s']:.2f}x |"
        )
    stall = decode_stall()
    print("\nEvent-loop stall while decoding a 4 MiB frame of 4M empty arrays (trio):")
    print(
        f"  decoded inline: {stall['inline_ms']:.0f} ms; as the server does it: "
        f"{stall['server_ms']:.0f} ms"
    )


if __name__ == "__main__":
    main()
