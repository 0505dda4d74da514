"""The scale targets of a swarm of a thousand (and ten thousand), on the simulator.

    python benchmarks/simulate.py            # everything (several minutes of wall time)
    python benchmarks/simulate.py --quick    # smaller swarms, same table

Virtual time, one process, seeded (same seed, same figures). See docs/scale.md for the model.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Callable
from typing import Any

from synapse_p2p.conversations._plumtree import PlumtreeConfig
from synapse_p2p.membership._swim import SwimConfig
from synapse_p2p.simulation import LAN, WAN, NetworkModel, Swarm

ROWS: list[tuple[str, str, str, str]] = []


def row(what: str, value: str, target: str = "", ok: bool | None = None) -> None:
    mark = "" if ok is None else ("yes" if ok else "NO")
    ROWS.append((what, value, target, mark))
    print(f"  {what:<58} {value:>22}  {target:<14} {mark}", flush=True)


def timed(label: str, run: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = run()
    print(f"  ({label}: {time.perf_counter() - start:.1f} s wall)", flush=True)
    return result


def secs(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.3f} s"


def thousand(n: int, seed: int) -> None:
    print(f"\n== {n} nodes, LAN model (latency 0.2 ms + Exp(0.5 ms), 0.5 ms per message) ==")
    swarm = Swarm(n, seed=seed)
    full = timed("start and converge", lambda: swarm.converge(timeout=60, spread=1.0))
    row("full membership after the last start (starts over 1 s)", secs(full), "< 3 s", full < 3)
    swarm.run_until(swarm.sim.now + 10.0)
    sizes = swarm.view_sizes()
    row(
        "active view min / mean / max",
        f"{sizes.active_min} / {sizes.active_mean:.1f} / {sizes.active_max}",
        f"cap {swarm.views.active_max}",
        sizes.active_max <= swarm.views.active_max,
    )
    row("passive view mean", f"{sizes.passive_mean:.1f}")
    row("max connections held by any node (incl. pending dials)", str(sizes.max_connections))
    swarm.sim.measure_bytes = True
    msgs, nbytes = timed("idle 30 s", lambda: swarm.idle(30.0))
    swarm.sim.measure_bytes = False
    row("idle messages per node per second", f"{msgs:.2f}")
    row("idle bytes per node per second (msgpack)", f"{nbytes:.0f}")
    for k in range(3):
        swarm.broadcast(swarm.order[k * 17 % n], f"warm{k}")
    event = swarm.broadcast(swarm.order[n // 3], "event")
    row("one event: time to 99% / 100%", f"{secs(event.t99)} / {secs(event.t100)}")
    row(
        "one event: eager messages (per N)",
        f"{event.eager} ({event.eager / n:.3f} N)",
        "<= 1.2 N",
        event.eager <= 1.2 * n,
    )
    row("one event: lazy IHAVE announcements, grafts", f"{event.lazy}, {event.grafts}")
    ask = swarm.broadcast(swarm.order[n // 2], "ask", ask=True)
    row(
        f"ask: origin has all {ask.replies} replies after",
        secs(ask.t_replies),
        "< 1 s",
        ask.t_replies < 1.0,
    )
    victim = swarm.order[n - 5]
    crash = timed("crash", lambda: swarm.crash(victim, timeout=60))
    row("a crash known dead by every live node after", secs(crash), "< 10 s", crash < 10)
    row(
        "false accusations (live nodes declared dead)",
        str(swarm.false_accusations),
        "0",
        swarm.false_accusations == 0,
    )


def lossy(n: int, seed: int, duration: float) -> None:
    print(f"\n== {n} nodes, 5% message loss, one node 10x slower, {duration:.0f} s ==")
    swarm = Swarm(n, seed=seed)
    swarm.order[n // 2].slow = True
    full = timed("start and converge", lambda: swarm.converge(timeout=60, spread=1.0))
    row("full membership after the last start (no loss yet)", secs(full))
    swarm.sim.model = NetworkModel(loss=0.05)
    timed("run", lambda: swarm.run_until(swarm.sim.now + duration))
    row("false accusations", str(swarm.false_accusations), "0", swarm.false_accusations == 0)
    crash = swarm.crash(swarm.order[3], timeout=60)
    row(
        "a crash known dead by every live node after (with loss)", secs(crash), "< 10 s", crash < 10
    )
    row(
        "false accusations after the crash",
        str(swarm.false_accusations),
        "0",
        swarm.false_accusations == 0,
    )


def ten_thousand(
    n: int, seed: int, model: NetworkModel, label: str, plumtree: PlumtreeConfig
) -> None:
    print(f"\n== {n} nodes, {label}, views and trees only ==")
    swarm = Swarm(n, seed=seed, swim=None, model=model, plumtree=plumtree)
    swarm.start(2.0)
    timed("start and settle the views (60 s)", lambda: swarm.run_until(60.0))
    sizes = swarm.view_sizes()
    row(
        "active view min / mean / max",
        f"{sizes.active_min} / {sizes.active_mean:.1f} / {sizes.active_max}",
    )
    cold = timed("first broadcast", lambda: swarm.broadcast(swarm.order[1], "cold"))
    row("first (cold) event: eager messages, t100", f"{cold.eager}, {secs(cold.t100)}")
    for k in range(2):
        swarm.broadcast(swarm.order[k * 31 + 5], f"warm{k}")
    event = timed("broadcast", lambda: swarm.broadcast(swarm.order[n // 2], "event"))
    row(
        "one event: time to 99% / 99.99% / 100%",
        f"{secs(event.t99)} / {secs(event.t9999)} / {secs(event.t100)}",
        "99.99% < 2.6 s",
        event.t9999 < 2.6,
    )
    row(
        "one event: eager messages (per N)",
        f"{event.eager} ({event.eager / n:.3f} N)",
        "<= 1.2 N",
        event.eager <= 1.2 * n,
    )
    row("one event: lazy IHAVE announcements, grafts", f"{event.lazy}, {event.grafts}")


def over_views(n: int, seed: int) -> None:
    print(f"\n== {n} nodes, SWIM over each node's active view (Swim(neighbors=...)), LAN ==")
    for hook in (False, True):
        label = "over the views" if hook else "to any member"
        swarm = Swarm(n, seed=seed, swim_over_views=hook)
        full = timed(f"{label}: start", functools.partial(swarm.converge, 60, 1.0))
        swarm.run_until(swarm.sim.now + 10.0)
        mean, most, off = timed(f"{label}: idle 60 s", functools.partial(swarm.swim_contacts, 60.0))
        row(f"SWIM {label}: full membership", secs(full), "< 3 s", full < 3)
        row(
            f"SWIM {label}: distinct peers per node in 60 s idle (mean / max)",
            f"{mean:.1f} / {most}",
        )
        row(
            f"SWIM {label}: idle messages to peers outside the active view",
            str(off),
            "0" if hook else "",
            off == 0 if hook else None,
        )
        crash = swarm.crash(swarm.order[n // 2 + 1], timeout=60)
        row(f"SWIM {label}: a crash known dead by all", secs(crash), "< 10 s", crash < 10)
        row(
            f"SWIM {label}: false accusations",
            str(swarm.false_accusations),
            "0",
            swarm.false_accusations == 0,
        )
    swarm = Swarm(n, seed=seed, swim_over_views=True)
    swarm.order[n // 2].slow = True
    swarm.converge(timeout=60, spread=1.0)
    swarm.sim.model = NetworkModel(loss=0.05)
    timed(
        "over the views, 5% loss and a slow node: 60 s", lambda: swarm.run_until(swarm.sim.now + 60)
    )
    row(
        "SWIM over the views, 5% loss + a slow node: false accusations",
        str(swarm.false_accusations),
        "0",
        swarm.false_accusations == 0,
    )


def idle_by_n(sizes: list[int], seed: int) -> None:
    print("\n== idle traffic per node by swarm size (SWIM + views, LAN) ==")
    for n in sizes:
        swarm = Swarm(n, seed=seed, measure_bytes=False, swim=SwimConfig())
        swarm.converge(timeout=60, spread=1.0)
        swarm.run_until(swarm.sim.now + 10.0)
        swarm.sim.measure_bytes = True
        msgs, nbytes = timed(f"N={n}", functools.partial(swarm.idle, 60.0))
        row(f"N={n}: idle messages / bytes per node per second", f"{msgs:.2f} / {nbytes:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller swarms")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    big, huge = (300, 2000) if args.quick else (1000, 10_000)
    thousand(big, args.seed)
    lossy(big, args.seed, 30.0 if args.quick else 60.0)
    over_views(big, args.seed)
    ten_thousand(huge, args.seed, LAN, "LAN model", PlumtreeConfig())
    wan = "WAN model (latency 10 ms + Exp(20 ms)), PlumtreeConfig.wan()"
    ten_thousand(huge, args.seed, WAN, wan, PlumtreeConfig.wan())
    idle_by_n([100, 250, 500] if args.quick else [125, 250, 500, 1000], args.seed)
    print(f"\n== summary ({time.perf_counter() - start:.0f} s wall) ==")
    for what, value, target, mark in ROWS:
        if target:
            print(f"  {what:<58} {value:>22}  {target:<14} {mark}")


if __name__ == "__main__":
    main()
