"""Teams benchmark: this package vs synapse-p2p 2.5.0 in one run.

    python benchmarks/teams.py [--tasks 200] [--workers 5] [--runs 3] [--backends trio asyncio]

One architect and ``--workers`` workers, one process each, on 127.0.0.1. The architect offers
``--tasks`` tiny tasks (requiring ``python``) at once and waits for all. Reported per
implementation (median over runs): time until all are done, tasks/s, grants per attempt (must
be exactly 1), tasks done exactly once on the team's side, tasks executed more than once by
workers, and the split of executions among workers. 2.5.0 runs in its own virtual environment
(tests/interop/ref/ref_team_bench.py and ref_worker.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REF_SCRIPTS = ROOT / "tests" / "interop" / "ref"


class Proc:
    """A subprocess whose stdout lines (JSON) are collected by a thread."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                continue
            self._ready.set()

    def first(self, timeout: float = 60) -> dict[str, Any]:
        if not self._ready.wait(timeout):
            raise RuntimeError(f"{self.proc.args!r} did not start")
        return self.lines[0]

    def runs(self) -> int:
        return sum(1 for line in self.lines if "ran" in line)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


# -- our implementation ------------------------------------------------------------------------


def our_worker(seed: str, name: str, backend: str) -> None:
    """One of our workers (a process of its own): ``teams.py _worker SEED NAME BACKEND``."""
    sys.path.insert(0, str(ROOT))
    from synapse_p2p import Node
    from synapse_p2p.teams import Assignment, Worker

    node = Node(
        bind="127.0.0.1", name=name, swarm="bench-teams", capabilities=["python"], seeds=[seed]
    )
    worker = Worker(node)

    @worker.task
    async def tiny(assignment: Assignment) -> dict[str, Any]:
        print(json.dumps({"ran": assignment.id}), flush=True)
        return {"i": assignment.spec["i"]}

    print(json.dumps({"worker": name}), flush=True)
    node.run(backend="asyncio" if backend == "asyncio" else "trio")


def run_ours(backend: str, workers: int, count: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    import anyio

    from synapse_p2p import Node
    from synapse_p2p.teams import Team, TeamTask

    async def main() -> dict[str, Any]:
        async with Node(bind="127.0.0.1", name="architect", swarm="bench-teams") as node:
            seed = f"127.0.0.1:{node.port}"
            procs = [
                Proc([sys.executable, __file__, "_worker", seed, f"w{i}", backend], ROOT)
                for i in range(workers)
            ]
            try:
                with anyio.fail_after(60):
                    while len(node.peers) < workers:
                        await anyio.sleep(0.05)
                await anyio.sleep(1)  # as for 2.5.0: let the workers learn each other
                async with Team(node) as team:
                    tasks: list[TeamTask] = [None] * count  # type: ignore[list-item]
                    started = time.perf_counter()

                    async def one(i: int) -> None:
                        tasks[i] = await team.offer(f"t{i}", spec={"i": i}, requires=["python"])
                        await team.wait(tasks[i], timeout=300)

                    async with anyio.create_task_group() as tg:
                        for i in range(count):
                            tg.start_soon(one, i)
                    elapsed = time.perf_counter() - started
                    finished = team.statistics().finished
                per_task = []
                for task in tasks:
                    kinds = [e.kind for e in node.conversation(task.id)]
                    per_task.append(
                        [kinds.count("task.grant"), kinds.count("task.done"), task.attempts]
                    )
                await anyio.sleep(0.2)  # the last "ran" lines
                return {
                    "elapsed": elapsed,
                    "status": [t.status for t in tasks],
                    "per_task": per_task,
                    "finished_once": finished,
                    "split": sorted((p.runs() for p in procs), reverse=True),
                }
            finally:
                for proc in procs:
                    proc.stop()

    result: dict[str, Any] = anyio.run(main, backend=backend)
    return result


# -- synapse-p2p 2.5.0 -------------------------------------------------------------------------


def run_ref(python: str, workers: int, count: int) -> dict[str, Any]:
    architect = Proc(
        [python, str(REF_SCRIPTS / "ref_team_bench.py"), str(workers), str(count)], REF_SCRIPTS
    )
    procs: list[Proc] = []
    try:
        seed = f"127.0.0.1:{architect.first()['port']}"
        procs = [
            Proc(
                [python, str(REF_SCRIPTS / "ref_worker.py"), "bench-teams", seed, f"ref-{i}"],
                REF_SCRIPTS,
            )
            for i in range(workers)
        ]
        deadline = time.monotonic() + 900
        while len(architect.lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        if len(architect.lines) < 2:
            return {"error": "timed out"}
        result = dict(architect.lines[1])
        time.sleep(0.2)
        result["split"] = sorted((p.runs() for p in procs), reverse=True)
        return result
    finally:
        for proc in [architect, *procs]:
            proc.stop()


# -- report --------------------------------------------------------------------------------------


def summarize(result: dict[str, Any], count: int) -> dict[str, Any]:
    per_task = result["per_task"]
    attempts = sum(a for _, _, a in per_task)
    grants = sum(g for g, _, _ in per_task)
    done = sum(s == "done" for s in result["status"])
    return {
        "elapsed": result["elapsed"],
        "tasks_s": count / result["elapsed"],
        "grants_per_attempt": grants / attempts,
        "grants_per_task": grants / count,
        "done": done,
        "one_grant_each": all(g == a for g, _, a in per_task),
        "executed_twice": sum(result["split"]) - done if done == count else None,
        "split": result["split"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["trio", "asyncio"])
    parser.add_argument("--no-ref", action="store_true", help="skip synapse-p2p 2.5.0")
    args = parser.parse_args()
    configs: list[tuple[str, Any]] = [(f"ours ({b})", b) for b in args.backends]
    if not args.no_ref:
        sys.path.insert(0, str(ROOT))
        from tests.interop.refenv import build_reference_venv

        configs.insert(0, ("synapse-p2p 2.5.0", str(build_reference_venv())))
    rows: dict[str, list[dict[str, Any]]] = {}
    for run in range(args.runs):
        for name, arg in configs:
            if name.startswith("ours"):
                raw = run_ours(arg, args.workers, args.tasks)
            else:
                raw = run_ref(arg, args.workers, args.tasks)
            if "error" in raw:
                print(f"run {run + 1} {name}: {raw['error']}", file=sys.stderr, flush=True)
                continue
            row = summarize(raw, args.tasks)
            print(f"run {run + 1} {name}: {row}", file=sys.stderr, flush=True)
            rows.setdefault(name, []).append(row)
    print(
        f"\nTeams: 1 architect + {args.workers} workers (one process each), {args.tasks} "
        f"tiny tasks offered at once, loopback; medians of {args.runs} runs\n"
    )
    print(
        "| implementation | all done (s) | tasks/s | grants per attempt | done | "
        "one grant per attempt | executed twice | executions per worker (last run) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    medians: dict[str, float] = {}
    for name, runs in rows.items():
        elapsed = statistics.median(r["elapsed"] for r in runs)
        rate = statistics.median(r["tasks_s"] for r in runs)
        medians[name] = rate
        grants = max(r["grants_per_attempt"] for r in runs)
        done = min(r["done"] for r in runs)
        once = all(r["one_grant_each"] for r in runs)
        twice = Counter(str(r["executed_twice"]) for r in runs)
        print(
            f"| {name} | {elapsed:.2f} | {rate:.1f} | {grants:.2f} | {done}/{args.tasks} "
            f"| {'yes' if once else 'NO'} | {dict(twice)} | {runs[-1]['split']} |"
        )
    ref = medians.get("synapse-p2p 2.5.0")
    if ref:
        for name, rate in medians.items():
            if name.startswith("ours"):
                print(f"\n{name}: {rate / ref:.1f}x the tasks/s of synapse-p2p 2.5.0", end="")
        print()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        our_worker(*sys.argv[2:5])
    else:
        main()
