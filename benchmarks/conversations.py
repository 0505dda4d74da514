"""Conversation benchmark: this package vs synapse-p2p 2.5.0, N = 10, 30, 50, one run.

    python benchmarks/conversations.py [--sizes 10 30 50] [--backends trio asyncio]
                                       [--modes views tree mesh] [--no-reference]
                                       [--gc default tuned]

For each implementation and N, one process runs N nodes on one event loop (loopback TCP)
joined through the first, and reports: time for one event emitted by node 0 to be stored by
all N (median of 10), requests handled per event (``tree``: the broadcast tree's pushes, lazy
announcements and grafts per event, counted over 2.5 s after the ten events), one event
after 6 s without traffic (ours: its time to all N and the handshakes it cost, once the
connections outside the views have closed), sustained events/s from one emitter (200
events; 20 for 2.5.0 at N >= 30, which is too slow for more), time from
``broadcast("synapse.ask", ...)`` to all N-1 replies at the origin, failed calls, and (ours
only) the whole swarm's CPU time per ask (from the broadcast until every delivery is done) and
the garbage collector's part of it with the objects it tracks: N nodes in one heap make each
full collection N times the work it is for a node in a process of its own. ``--modes``
runs our nodes with partial views (``views``, the default settings), with partial views and
events on the broadcast tree (``tree``, ``event_tree=True``), and/or the full mesh (``mesh``,
``partial_views=False``); views and mesh by default; ``--partial-views`` is
``--modes views``;
``--no-reference`` leaves 2.5.0 out (it takes
minutes per ask past N=50); ``--gc tuned`` raises the garbage collector's thresholds in our
measured process (``_views_run.TUNED_GC``), as a process hosting many nodes should. SQLite
appends/s are measured by
``benchmarks/conversation_log.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def run(
    python: str, impl: str, backend: str, n: int, mode: str = "mesh", gc: str = "default"
) -> dict[str, float]:
    extra = ([mode] if mode != "mesh" else []) + (["tuned"] if gc == "tuned" else [])
    try:
        out = subprocess.run(
            [python, "_conversations_run.py", impl, backend, str(n), *extra],
            capture_output=True, text=True, cwd=HERE, timeout=900,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 900 s"}  # type: ignore[dict-item]
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else "failed"}  # type: ignore[dict-item]
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def fmt(value: float, spec: str) -> str:
    return "n/a" if isinstance(value, float) and math.isnan(value) else format(value, spec)


def gc_column(result: dict[str, float]) -> str:
    if "gc_per_ask_ms" not in result:
        return "n/a"
    return f"{result['gc_per_ask_ms']:.0f}, {result['gc_objects']:,.0f}"


def tree_column(result: dict[str, float]) -> str:
    if not result.get("tree_pushes_per_event"):
        return "-"  # (no tree: the author sends each member its copy)
    keys = ("tree_pushes_per_event", "tree_announcements_per_event", "tree_grafts_per_event")
    return " / ".join(fmt(result[k], ".1f") for k in keys)


def sparse_column(result: dict[str, float]) -> str:
    if "sparse_event_ms" not in result:
        return "-"
    return f"{result['sparse_event_ms']:.1f}, {result['sparse_handshakes']:.0f}"


def cpu_column(result: dict[str, float]) -> str:
    return f"{result['cpu_per_ask_ms']:.0f}" if "cpu_per_ask_ms" in result else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 50])
    parser.add_argument("--backends", nargs="+", default=["trio", "asyncio"])
    parser.add_argument(
        "--modes", nargs="+", choices=["views", "tree", "mesh"], default=["views", "mesh"]
    )
    parser.add_argument("--partial-views", action="store_true", help="same as --modes views")
    parser.add_argument("--no-reference", action="store_true", help="leave 2.5.0 out")
    parser.add_argument(
        "--gc",
        nargs="+",
        choices=["default", "tuned"],
        default=["default"],
        help="ours: garbage collector thresholds, CPython's defaults or raised",
    )
    args = parser.parse_args()
    modes = ["views"] if args.partial_views else args.modes
    configs: list[tuple[str, str, str, str, str]] = []
    if not args.no_reference:
        from tests.interop.refenv import build_reference_venv

        reference = str(build_reference_venv())
        configs.append(("ref (2.5.0, asyncio)", reference, "ref", "asyncio", "mesh"))
    configs += [
        (
            f"ours ({b}, {mode}{', gc tuned' if gc == 'tuned' else ''})",
            sys.executable,
            "ours",
            b,
            mode,
        )
        for b in args.backends
        for mode in modes
        for gc in args.gc
    ]
    rows = []
    for n in args.sizes:
        for name, python, impl, backend, mode in configs:
            gc = "tuned" if "gc tuned" in name else "default"
            result = run(python, impl, backend, n, mode, gc)
            print(f"N={n} {name}: {result}", file=sys.stderr, flush=True)
            rows.append((n, name, result))
    print("\nConversations, all N nodes in one process on one event loop (loopback TCP)\n")
    print(
        "| N | implementation | one event -> all N (ms) | requests per event "
        "| tree pushes / announcements / grafts per event | sustained events/s "
        "| broadcast ask -> N-1 replies (ms) | failed calls | CPU per ask (ms) "
        "| GC per ask (ms), objects | sparse event -> all N (ms), handshakes |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n, name, r in rows:
        if "error" in r:
            print(f"| {n} | {name} | failed: {r['error']} | | | | | | | | | |")
            continue
        print(
            f"| {n} | {name} | {fmt(r['event_to_all_ms'], '.1f')} "
            f"| {fmt(r['requests_per_event'], '.0f')} | {tree_column(r)} "
            f"| {fmt(r['sustained_events_s'], '.1f')} "
            f"| {fmt(r['ask_all_replies_ms'], '.0f')} | {r['failed_calls']:.0f} "
            f"| {cpu_column(r)} | {gc_column(r)} | {sparse_column(r)} |"
        )


if __name__ == "__main__":
    main()
