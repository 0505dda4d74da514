"""Partial views against the full mesh, real loopback TCP, all nodes in one process.

    python benchmarks/views.py [--sizes 200 500] [--modes views mesh] [--backends trio]
                               [--idle 120] [--converge-timeout 300] [--gc default tuned]

Each (mode, backend, N) runs in its own process (``_views_run.py``), one after the other, and prints
a table: time to full membership after the last node started, sockets per node (the node's inbound
and pooled outbound connections, mean and max) along the idle window, whether membership stayed
complete, idle CPU of the whole swarm (% of one core) and RSS per node. A full mesh of 200 or more
nodes may die of ``Too many open files``: that is reported, not hidden. The issue's target is at
most 20 sockets per node after 5 minutes idle (``--idle 300``). A second table gives what the start
cost until full membership (or until ``--converge-timeout``): CPU seconds, handshakes, address
checks, gossip calls and view messages. ``--gc tuned`` raises the garbage collector's thresholds in
the measured process (``_views_run.TUNED_GC``): all nodes share one heap there, and the time spent
collecting is printed beside the CPU either way; ``--gc freeze`` also freezes the objects alive
(``gc.freeze()``) as the swarm starts, so that collections scan only newer ones. ``--start-rate R``
starts the nodes one by one, R a second, as a deployed swarm grows, instead of all at once (the
start's CPU, % of one core, is printed with the counters); ``--grow B`` starts them B at a time,
each batch once the swarm before it has full membership (a swarm grown in steps: full membership
is then timed from the last batch's start, and the batches' times are printed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def one(
    mode: str,
    backend: str,
    n: int,
    idle: float,
    limit: float,
    gc: str,
    rate: float = 0.0,
    grow: int = 0,
) -> dict[str, Any]:
    argv = [sys.executable, "_views_run.py", mode, backend, str(n), str(idle), str(limit), gc]
    if rate > 0:
        argv.append(f"start_rate={rate:g}")
    elif grow > 0:
        argv.append(f"grow={grow}")
    try:
        out = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            text=True,
            cwd=HERE,
            timeout=idle
            + limit * (1 + (n // grow if grow > 0 else 0))
            + 600
            + (n / rate if rate > 0 else 0),
        )
    except subprocess.TimeoutExpired:
        return {"mode": mode, "backend": backend, "n": n, "error": "timed out"}
    lines = out.stdout.strip().splitlines()
    if not lines:
        return {"mode": mode, "backend": backend, "n": n, "error": f"exit {out.returncode}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 500])
    parser.add_argument("--modes", nargs="+", default=["views", "mesh"])
    parser.add_argument("--backends", nargs="+", default=["trio"])
    parser.add_argument("--idle", type=float, default=120.0)
    parser.add_argument("--converge-timeout", type=float, default=300.0)
    parser.add_argument(
        "--gc",
        nargs="+",
        choices=["default", "tuned", "freeze"],
        default=["default"],
        help="garbage collector thresholds: CPython's defaults, raised (_views_run.TUNED_GC), or "
        "raised with the long-lived objects frozen (gc.freeze) as the swarm starts",
    )
    parser.add_argument(
        "--start-rate",
        type=float,
        default=0.0,
        help="start the nodes one by one, this many a second (default: all at once)",
    )
    parser.add_argument(
        "--grow",
        type=int,
        default=0,
        metavar="B",
        help="start the nodes B at a time, each batch once the swarm before it has full "
        "membership and 5 s of idle; full membership is timed from the last batch's start",
    )
    args = parser.parse_args()
    rows = [
        one(mode, backend, n, args.idle, args.converge_timeout, gc, args.start_rate, args.grow)
        for n in args.sizes
        for backend in args.backends
        for mode in args.modes
        for gc in args.gc
    ]
    started = "all at once" if args.start_rate <= 0 else f"{args.start_rate:g} a second"
    if args.grow > 0:
        started = f"{args.grow} at a time, each batch after the last converged"
    print(f"\nAll nodes in one process, loopback TCP, started {started}, idle {args.idle:g} s\n")
    print(
        "| N | mode | backend | gc | full membership after last start (s) "
        "| sockets/node mean, max over idle (s: mean/max) | complete at end "
        "| idle CPU % of one core (GC s, full GCs) | RSS/node KiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        head = f"| {r['n']} | {r['mode']} | {r['backend']} | {r.get('gc', 'default')} "
        if "idle" not in r:
            print(head + f"| failed: {r.get('error')} | | | | |")
            continue
        conv = "not reached" if r["converge_s"] is None else f"{r['converge_s']:.2f}"
        trend = ", ".join(f"{s['t']}: {s['sockets_mean']:g}/{s['sockets_max']}" for s in r["idle"])
        last = r["idle"][-1]
        print(
            head + f"| {conv} | {trend} | {last['complete']}/{r['n']} "
            f"| {r['idle_cpu_pct']:.1f} ({_gc(r.get('idle_gc'))}) | {r['rss_per_node_kib']} |"
        )
        if "error" in r:
            print(f"|  | (then: {r['error']}) | | | | | | | |")
    print("\nWhat the start cost, until full membership (or the timeout)\n")
    print("| N | mode | backend | gc | CPU s (GC s, full GCs) | counters |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "start" in r:
            events = r.get("start_events", {})
            counts = ", ".join(
                [f"{k} {v}" for k, v in r["start"].items()]
                + [f"peer.{k} events {v}" for k, v in events.items()]
            )
            cpu = f"{r['start_cpu_s']} ({_gc(r.get('start_gc'))})"
            if "pace_cpu_pct" in r:
                cpu += f"; paced start {r['pace_s']} s at {r['pace_cpu_pct']} % of a core"
            if r.get("batches"):
                steps = ", ".join(
                    f"{b['n']}: {'-' if b['converge_s'] is None else b['converge_s']} s "
                    f"({b['cpu_s']} s CPU)"
                    for b in r["batches"]
                )
                cpu += f"; grown in {r['pace_s']} s, full membership after each batch: {steps}"
            print(f"| {r['n']} | {r['mode']} | {r['backend']} | {r['gc']} | {cpu} | {counts} |")


def _gc(taken: dict[str, Any] | None) -> str:
    if not taken:
        return "-"
    return f"{taken['gc_s']} s, {taken['full_gcs']}"


if __name__ == "__main__":
    main()
