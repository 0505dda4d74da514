"""Membership benchmark: this package vs synapse-p2p 2.5.0, N = 10, 50, 100, one run.

    python benchmarks/membership.py [--sizes 10 50 100] [--idle 30] [--backends trio asyncio]

For each implementation and N, one process runs N nodes on one event loop (loopback TCP, the
default heartbeat_interval=5 and peer_timeout=20) joining through the first node, and reports:
time from the first join to full membership (every node knows every other), messages (RPC
calls) per node per second while idle, CPU % of one core for the whole process while idle, and
memory (RSS) per node. Idle CPU is measured twice: in the first window after full
membership, and again after ``--settle`` seconds, once gossip partners (random, a few per round)
have persistent connections open instead of opening them on first contact. The reference
never joins its seeds by itself, so its script calls
``join()`` on every node; it learns the rest of the swarm through a heartbeat round.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def run(python: str, impl: str, backend: str, n: int, idle: float) -> dict[str, float]:
    out = subprocess.run(
        [python, "_membership_run.py", impl, backend, str(n), str(idle)],
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=600,
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}  # type: ignore[dict-item]
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--backends", nargs="+", default=["trio", "asyncio"])
    parser.add_argument("--settle", type=float, default=60.0)
    args = parser.parse_args()
    import os

    os.environ["SYNAPSE_BENCH_SETTLE"] = str(args.settle)
    from tests.interop.refenv import build_reference_venv

    ref_py = str(build_reference_venv())
    rows = []
    for n in args.sizes:
        configs = [("ref (2.5.0, asyncio)", ref_py, "ref", "asyncio")] + [
            (f"ours ({b})", sys.executable, "ours", b) for b in args.backends
        ]
        for name, python, impl, backend in configs:
            result = run(python, impl, backend, n, args.idle)
            print(f"N={n} {name}: {result}", file=sys.stderr, flush=True)
            rows.append((n, name, result))
    print(
        f"\nMembership, all N nodes in one process on one event loop, idle window {args.idle:g} s\n"
    )
    print(
        "| N | implementation | full membership (s) | messages/node/s idle "
        "| idle CPU % of one core, first 30 s | idle CPU %, after settling | RSS/node KiB "
        "| still fully connected |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n, name, r in rows:
        if "error" in r:
            print(f"| {n} | {name} | failed: {r['error']} | | | | | |")
            continue
        conv = "not reached" if math.isnan(r["converge_s"]) else f"{r['converge_s']:.3f}"
        print(
            f"| {n} | {name} | {conv} | {r['msgs_per_node_s']:.2f} | {r['idle_cpu_pct']:.1f} "
            f"| {r['idle_cpu_pct_late']:.1f} | {r['rss_per_node_kib']:.0f} "
            f"| {'yes' if r['still_full'] else 'no'} |"
        )
    print("\n| N | backend | idle CPU vs reference (first 30 s) | (after settling) |")
    print("|---|---|---|---|")
    for n in args.sizes:
        ref = next(r for m, name, r in rows if m == n and name.startswith("ref"))
        for m, name, r in rows:
            if m == n and name.startswith("ours") and "error" not in r and "error" not in ref:
                first = r["idle_cpu_pct"] / max(ref["idle_cpu_pct"], 1e-9)
                late = r["idle_cpu_pct_late"] / max(ref["idle_cpu_pct_late"], 1e-9)
                print(f"| {n} | {name} | {first:.2f}x | {late:.2f}x |")


if __name__ == "__main__":
    main()
