"""Teams in mixed swarms with synapse-p2p 2.5.0: its workers complete our team's tasks, our
worker serves its team, and a killed 2.5.0 worker's task is re-offered to one of ours."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from synapse_p2p import Node
from synapse_p2p.teams import Assignment, Team, Worker
from tests.interop.refenv import RefProcess, ref_python

__all__ = ["ref_python"]

pytestmark = [pytest.mark.interop, pytest.mark.anyio]

FAST: dict[str, Any] = {"heartbeat_interval": 0.5, "peer_timeout": 3}


async def command(ref: RefProcess, cmd: dict[str, Any], timeout: float = 60) -> Any:
    assert ref.proc.stdin is not None
    assert ref.proc.stdout is not None
    ref.proc.stdin.write(json.dumps(cmd) + "\n")
    ref.proc.stdin.flush()
    with anyio.fail_after(timeout):
        line = await anyio.to_thread.run_sync(ref.proc.stdout.readline, abandon_on_cancel=True)
    return json.loads(line)


async def read_line(ref: RefProcess, timeout: float = 20) -> Any:
    assert ref.proc.stdout is not None
    with anyio.fail_after(timeout):
        line = await anyio.to_thread.run_sync(ref.proc.stdout.readline, abandon_on_cancel=True)
    return json.loads(line)


async def until_peers(node: Node, ids: list[str], timeout: float = 15) -> None:
    with anyio.fail_after(timeout):
        while not all(i in node.peers for i in ids):
            await anyio.sleep(0.05)


async def test_reference_workers_complete_our_teams_tasks(
    ref_python: Path, anyio_backend: str
) -> None:
    async with Node(bind="127.0.0.1", name="architect", swarm="teams", **FAST) as ours:
        seed = f"127.0.0.1:{ours.port}"
        refs = [
            await RefProcess.start(ref_python, "ref_worker.py", "teams", seed, f"ref-{i}")
            for i in range(2)
        ]
        try:
            await until_peers(ours, [r.ready["id"] for r in refs])
            async with Team(ours) as team:
                tasks = [
                    await team.offer(f"task {i}", spec={"i": i}, requires=["python"])
                    for i in range(10)
                ]
                results = [await team.wait(t, timeout=60) for t in tasks]
            for i, (task, result) in enumerate(zip(tasks, results, strict=True)):
                assert result["title"] == f"task {i}"
                assert result["spec"] == {"i": i}
                events = ours.conversation(task.id)
                grants = [e for e in events if e.kind == "task.grant"]
                assert len(grants) == 1
                done = [e for e in events if e.kind == "task.done"]
                assert task.assignee is not None
                assert done[0].peer.id == task.assignee.id == grants[0].payload["worker_id"]
                assert result["by"] == task.assignee.name
            assert {r["by"] for r in results} <= {"ref-0", "ref-1"}
        finally:
            for ref in refs:
                ref.stop()


async def test_our_worker_serves_a_reference_team(ref_python: Path, anyio_backend: str) -> None:
    coder = Node(bind="127.0.0.1", name="ours", swarm="teams", capabilities=["python"], **FAST)
    worker = Worker(coder)

    @worker.task
    async def run(assignment: Assignment) -> dict[str, Any]:
        await assignment.progress("working on it", step=1)
        return {"by": "ours", "i": assignment.spec["i"], "attempt": assignment.attempt}

    async with coder:
        ref = await RefProcess.start(
            ref_python, "ref_team.py", "teams", f"127.0.0.1:{coder.port}", "ref-team"
        )
        try:
            await until_peers(coder, [ref.ready["id"]])  # or our claims would go nowhere
            assert (await command(ref, {"op": "wait_peer", "id": coder.node_id}))["ok"]
            out = await command(ref, {"op": "run", "n": 5, "lease": 30})
        finally:
            ref.stop()
    assert out["status"] == ["done"] * 5
    assert out["results"] == [{"by": "ours", "i": i, "attempt": 1} for i in range(5)]
    for kinds in out["kinds"]:
        assert [k for k in kinds if k[0] != "task.progress"] == [
            ["task.offer", "ref-team"],
            ["task.claim", "ours"],
            ["task.grant", "ref-team"],
            ["task.done", "ours"],
        ]
        assert ["task.progress", "ours"] in kinds
    assert worker.statistics().executions == 5


async def test_a_killed_reference_worker_is_replaced_by_ours(
    ref_python: Path, anyio_backend: str
) -> None:
    async with Node(bind="127.0.0.1", name="architect", swarm="teams", **FAST) as ours:
        seed = f"127.0.0.1:{ours.port}"
        ref = await RefProcess.start(ref_python, "ref_worker.py", "teams", seed, "ref-slow", "60")
        try:
            await until_peers(ours, [ref.ready["id"]])
            async with Team(ours, lease=300) as team:
                task = await team.offer("slow", requires=["python"])
                assert (await read_line(ref))["ran"] == task.id
                ref.proc.kill()
                coder = Node(
                    bind="127.0.0.1",
                    name="ours",
                    swarm="teams",
                    capabilities=["python"],
                    seeds=[seed],
                    **FAST,
                )
                async with coder, Worker(coder) as worker:

                    @worker.task
                    async def run(assignment: Assignment) -> str:
                        return f"ours, attempt {assignment.attempt}"

                    with anyio.fail_after(30):  # membership notices well before the lease
                        assert await team.wait(task) == "ours, attempt 2"
        finally:
            ref.stop()
