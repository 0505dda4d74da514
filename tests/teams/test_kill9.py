"""Workers in their own processes, killed with SIGKILL (or frozen with SIGSTOP) in the middle
of a task, in real time: every task ends done exactly once on the team's side, each task ran
at least once, and no stale completion is ever accepted. A few runs here; 20 more under the
``slow`` marker."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from synapse_p2p import Node
from synapse_p2p.teams import Team

SCRIPT = Path(__file__).resolve().parent / "worker_proc.py"
TASKS = 10


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


def read_log(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.count(" ") == 3]


async def one_run(tmp_path: Path, mode: str) -> None:
    logfile = tmp_path / f"runs-{mode}.log"
    fast: dict[str, Any] = {"heartbeat_interval": 0.2, "peer_timeout": 1.5}
    async with Node(bind="127.0.0.1", name="architect", swarm="kill9", **fast) as architect:
        seed = f"127.0.0.1:{architect.port}"
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(SCRIPT),
                    seed,
                    f"w{i}",
                    str(logfile),
                    "asyncio" if i % 2 else "trio",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(3)
        ]
        try:
            with anyio.fail_after(30):
                while len(architect.peers) < 3:
                    await anyio.sleep(0.05)
            async with Team(architect, lease=3) as team:
                tasks = [await team.offer(f"t{i}", requires=["python"]) for i in range(TASKS)]
                victim: str | None = None
                with anyio.fail_after(30):
                    while victim is None:  # the first worker seen starting a task
                        starts = [r for r in read_log(logfile) if r[0] == "start"]
                        victim = starts[0][3] if starts else None
                        await anyio.sleep(0.01)
                proc = procs[int(victim[1:])]
                if mode == "kill":
                    proc.send_signal(signal.SIGKILL)
                else:  # frozen past its lease; thawed once its work was redone elsewhere
                    proc.send_signal(signal.SIGSTOP)
                with anyio.fail_after(60):
                    results = [await team.wait(t) for t in tasks]
                if mode == "stop":
                    proc.send_signal(signal.SIGCONT)
                    await anyio.sleep(1.5)  # its stale result, if any, arrives and is refused
                stats = team.statistics()
            log = read_log(logfile)
            assert stats.finished == TASKS  # each task finished once on the team's side
            for task, result in zip(tasks, results, strict=True):
                assert task.status == "done"
                assert task.assignee is not None
                # The accepted result is the current assignee's, for the current attempt.
                assert result == {"by": task.assignee.name, "attempt": task.attempts}
                runs = [r for r in log if r[0] == "start" and r[1] == task.id]
                assert len(runs) >= 1
                assert [task.id, str(task.attempts), result["by"]] in [r[1:] for r in runs]
                grants = [e for e in architect.conversation(task.id) if e.kind == "task.grant"]
                assert sorted(g.payload["attempt"] for g in grants) == list(
                    range(1, task.attempts + 1)
                )  # exactly one grant per attempt
            interrupted = {r[1] for r in log if r[0] == "start" and r[3] == victim} - {
                r[1] for r in log if r[0] == "end" and r[3] == victim
            }
            if mode == "kill":
                assert interrupted, "the victim was killed in the middle of a task"
            for task in tasks:
                if task.id in interrupted:
                    assert task.attempts >= 2
                    assert task.assignee.name != victim  # type: ignore[union-attr]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
                    proc.kill()
                proc.wait(timeout=10)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["kill", "stop"])
async def test_a_worker_killed_mid_task(anyio_backend: str, tmp_path: Path, mode: str) -> None:
    await one_run(tmp_path, mode)


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize("run", range(20))
async def test_a_worker_killed_mid_task_repeatedly(
    anyio_backend: str, tmp_path: Path, run: int
) -> None:
    await one_run(tmp_path, "stop" if run % 4 == 3 else "kill")
