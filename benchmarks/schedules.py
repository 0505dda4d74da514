"""Scheduler overhead: 1,000 busy jobs and 1,000 idle jobs, side by side.

Run ``python benchmarks/schedules.py`` (about a minute). Every measurement runs in a fresh
subprocess; this file is also the worker (``--worker IMPL BACKEND SCENARIO``).

* ``fire``: 1,000 jobs, each due every 0.05 s (their grids spread evenly over the period), for
  a few seconds after a warm-up. Prints runs vs expected, lateness (start of the run minus its
  due time on the wall clock) and process CPU time per run.
* ``idle``: 1,000 ``cron("0 0 1 1 *")`` jobs (next occurrence far away); process CPU time as a
  share of one core over several seconds (a scheduler that polls shows up here), and how many
  runs happened at start-up (2.5.0 ran cron jobs at once).

Implementations: ``synapse_p2p.schedules.Scheduler`` from this tree under trio and asyncio, and,
when the virtual environment given by ``--reference-python`` (default ``/tmp/refvenv/bin/python``)
exists, synapse-p2p 2.5.0's ``PeriodicTaskHandler`` (asyncio only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

JOBS = 1_000
PERIOD = 0.05
WARM_UP = 0.5
FIRE_SECONDS = 3.0
IDLE_SECONDS = 6.0
ROOT = Path(__file__).resolve().parent.parent


class Grid:
    """A schedule due at ``origin + k * period``: due times are known, so lateness is exact."""

    def __init__(self, period: float, origin: float) -> None:
        self.period = period
        self.origin = origin
        self.seconds = period  # what 2.5.0's PeriodicTask.period reads

    def next_after(self, t: datetime) -> datetime:
        k = math.floor((t.timestamp() - self.origin) / self.period + 1e-3) + 1  # t may be a due
        return datetime.fromtimestamp(self.origin + k * self.period, UTC)

    def lateness(self, now: float) -> float:
        late = (now - self.origin) % self.period
        return late - self.period if late > self.period - 1e-3 else late  # rounding: "early"


class Probe:
    """Records the runs of every job within the measurement window."""

    def __init__(self) -> None:
        self.window: tuple[float, float] = (math.inf, math.inf)
        self.late: list[float] = []
        self.outside = 0

    def job(self, grid: Grid | None) -> Callable[[], Any]:
        async def run() -> None:
            now = time.time()
            start, end = self.window
            if start <= now < end:
                self.late.append(grid.lateness(now) if grid is not None else 0.0)
            else:
                self.outside += 1

        return run


def _schedules(scenario: str, probe: Probe) -> list[tuple[Callable[[], Any], Any]]:
    from synapse_p2p.schedules import cron  # the same name in 2.5.0 and in this tree

    base = time.time()
    jobs: list[tuple[Callable[[], Any], Any]] = []
    for i in range(JOBS):
        if scenario == "fire":
            grid = Grid(PERIOD, base + i * PERIOD / JOBS)
            jobs.append((probe.job(grid), grid))
        else:  # New Year's midnight: far away, unless run on Dec 31 (then the figures show it)
            jobs.append((probe.job(None), cron("0 0 1 1 *")))
    return jobs


async def _measure(probe: Probe, sleep: Callable[[float], Any], seconds: float) -> dict[str, Any]:
    await sleep(WARM_UP)
    wall0, cpu0 = time.time(), time.process_time()
    probe.window = (wall0, wall0 + seconds)
    await sleep(seconds)
    wall1, cpu1 = time.time(), time.process_time()
    late = sorted(probe.late)
    return {
        "seconds": wall1 - wall0,
        "cpu": cpu1 - cpu0,
        "runs": len(late),
        "late_mean": statistics.fmean(late) if late else None,
        "late_p99": late[int(0.99 * (len(late) - 1))] if late else None,
        "before": probe.outside,  # runs before the window: the start-up runs
    }


def worker_ours(backend: str, scenario: str) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    import anyio

    from synapse_p2p.schedules import Scheduler

    async def main() -> dict[str, Any]:
        probe = Probe()
        scheduler = Scheduler()
        for i, (fn, schedule) in enumerate(_schedules(scenario, probe)):
            scheduler.add(fn, schedule, name=f"job{i}")
        async with anyio.create_task_group() as tg:
            await tg.start(scheduler.run)
            result = await _measure(probe, anyio.sleep, _seconds(scenario))
            tg.cancel_scope.cancel()
        jobs = scheduler.statistics().jobs.values()
        result["coalesced"] = sum(j.coalesced for j in jobs)
        result["skipped"] = sum(j.skipped for j in jobs)
        return result

    return anyio.run(main, backend=backend)


def worker_reference(scenario: str) -> dict[str, Any]:
    import asyncio
    import importlib

    # synapse-p2p 2.5.0's package (this runs in the reference's interpreter): its API is not
    # this tree's, so it is imported untyped rather than checked against our annotations.
    PeriodicTaskHandler = importlib.import_module("synapse_p2p.periodic").PeriodicTaskHandler
    PeriodicTask = importlib.import_module("synapse_p2p.types").PeriodicTask

    async def main() -> dict[str, Any]:
        probe = Probe()
        handler = PeriodicTaskHandler()
        for i, (fn, schedule) in enumerate(_schedules(scenario, probe)):
            handler.add_task(PeriodicTask(name=f"job{i}", callable=fn, schedule=schedule))
        handler.start()
        result = await _measure(probe, asyncio.sleep, _seconds(scenario))
        await handler.stop()
        return result

    return asyncio.run(main())


def _seconds(scenario: str) -> float:
    return FIRE_SECONDS if scenario == "fire" else IDLE_SECONDS


def _spawn(python: str, impl: str, backend: str, scenario: str) -> dict[str, Any] | str:
    command = [python, str(Path(__file__).resolve()), "--worker", impl, backend, scenario]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"failed: {exc}"
    if done.returncode != 0:
        return "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference-python", default="/tmp/refvenv/bin/python")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "BACKEND", "SCENARIO"))
    args = parser.parse_args()
    if args.worker:
        impl, backend, scenario = args.worker
        out = worker_ours(backend, scenario) if impl == "ours" else worker_reference(scenario)
        print(json.dumps(out))
        return

    runs = [("this tree", sys.executable, "ours", b) for b in ("trio", "asyncio")]
    if os.access(args.reference_python, os.X_OK):
        runs.append(("2.5.0", args.reference_python, "reference", "asyncio"))
    else:
        print(f"(no reference interpreter at {args.reference_python}: 2.5.0 rows skipped)\n")

    expected = round(JOBS * FIRE_SECONDS / PERIOD)
    print(f"fire: {JOBS:,} jobs due every {PERIOD} s, measured over {FIRE_SECONDS} s")
    header = f"{'impl':<10} {'backend':<8} {'runs':>7} {'expected':>8} {'ratio':>6}"
    print(header + f" {'mean late':>10} {'p99 late':>10} {'CPU/run':>9} {'coalesced':>9}")
    for label, python, impl, backend in runs:
        r = _spawn(python, impl, backend, "fire")
        if isinstance(r, str):
            print(f"{label:<10} {backend:<8} {r}")
            continue
        per_run = f"{r['cpu'] / r['runs'] * 1e6:.0f} us" if r["runs"] else "-"
        print(
            f"{label:<10} {backend:<8} {r['runs']:>7,} {expected:>8,} "
            f"{r['runs'] / expected:>6.2f} {_ms(r['late_mean']):>10} {_ms(r['late_p99']):>10} "
            f"{per_run:>9} {r.get('coalesced', '-')!s:>9}"
        )

    print(f"\nidle: {JOBS:,} jobs with their next occurrence far away, over {IDLE_SECONDS} s")
    print(f"{'impl':<10} {'backend':<8} {'CPU % of one core':>18} {'runs':>6} {'at start-up':>11}")
    for label, python, impl, backend in runs:
        r = _spawn(python, impl, backend, "idle")
        if isinstance(r, str):
            print(f"{label:<10} {backend:<8} {r}")
            continue
        cpu = 100 * r["cpu"] / r["seconds"]
        print(f"{label:<10} {backend:<8} {cpu:>17.2f}% {r['runs']:>6} {r['before']:>11}")


if __name__ == "__main__":
    main()
