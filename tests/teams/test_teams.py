"""Teams on live nodes, under trio and asyncio: the seed's usage, context managers, exactly
one grant per attempt, fencing against forged results and grants, failures, restore."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from synapse_p2p import Identity, Node, SqliteConversationLog
from synapse_p2p.teams import Assignment, Team, TeamTaskError, Worker
from synapse_p2p.testing import open_swarm

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"heartbeat_interval": 0.5, "peer_timeout": 5}


def kinds(node: Node, task_id: str) -> list[str]:
    return [e.kind for e in node.conversation(task_id)]


async def eventually(check: Any, timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.01)


async def test_the_seed_usage_works_as_written(anyio_backend: str) -> None:
    async with Node(bind="127.0.0.1", name="architect", swarm="seed", **FAST) as node:
        coder = Node(
            bind="127.0.0.1",
            name="coder",
            swarm="seed",
            capabilities=["python"],
            seeds=[f"127.0.0.1:{node.port}"],
            **FAST,
        )
        # coder.py, up to node.run(): the worker is set up before its node runs.
        worker = Worker(coder)  # a node with capabilities=["python"]

        @worker.task
        async def implement(assignment: Assignment) -> dict[str, Any]:
            await assignment.progress("starting")
            return {"diff": f"{assignment.title}: {assignment.spec['file']}"}

        async with coder:  # node.run(), in a test
            await eventually(lambda: coder.node_id in node.peers)
            # architect.py
            team = Team(node)
            task = await team.offer(
                "implement the parser", spec={"file": "parser.py"}, requires=["python"]
            )
            result = await team.wait(task, timeout=600)
        assert result == {"diff": "implement the parser: parser.py"}
        assert kinds(node, task.id) == [
            "task.offer",
            "task.claim",
            "task.grant",
            "task.progress",
            "task.done",
        ]
        assert task.progress[0]["message"] == "starting"
        await team.aclose()


async def test_each_task_is_granted_once_to_a_capable_worker(anyio_backend: str) -> None:
    caps = {1: ["python"], 2: ["python", "go"], 3: ["go"]}
    async with open_swarm(4, configure=lambda i: {"capabilities": caps.get(i, [])}) as swarm:
        architect = swarm[0]
        ran: dict[str, list[str]] = {}
        async with anyio.create_task_group() as tg:
            workers = [Worker(node) for node in swarm.nodes[1:]]
            for worker in workers:

                @worker.task
                async def run(assignment: Assignment, worker: Worker = worker) -> str:
                    ran.setdefault(assignment.id, []).append(worker.node.name)
                    await anyio.sleep(0.01)
                    return worker.node.name

                await tg.start(worker.serve)
            async with Team(architect) as team:
                tasks = [await team.offer(f"t{i}", requires=["python"]) for i in range(20)]
                results = [await team.wait(t, timeout=20) for t in tasks]
            tg.cancel_scope.cancel()
        assert set(results) <= {"node1", "node2"}
        for task in tasks:
            events = architect.conversation(task.id)
            grants = [e for e in events if e.kind == "task.grant"]
            assert len(grants) == 1
            assert grants[0].payload["attempt"] == 1
            assert ran[task.id] == [grants[0].payload["worker_name"]]
            assert all(e.peer.name != "node3" for e in events if e.kind == "task.claim")
        assert team.statistics().grants == 20


async def test_failures_progress_and_wait_errors(anyio_backend: str) -> None:
    async with open_swarm(2, configure=lambda i: {"capabilities": ["python"]} if i else {}) as sw:
        architect, coder = sw.nodes
        refused: list[str] = []
        async with Team(architect) as team, Worker(coder) as worker:

            @worker.task
            async def run(assignment: Assignment) -> Any:
                if assignment.title == "boom":
                    raise ValueError("boom")
                if assignment.title == "opaque":
                    return object()  # not serializable
                try:
                    await assignment.progress("sneaky", task_id="other")
                except TypeError as exc:
                    refused.append(str(exc))
                await assignment.progress("half", pct=50)
                return "ok"

            boom = await team.offer("boom", requires=["python"])
            with pytest.raises(TeamTaskError, match=r"^boom$"):
                await team.wait(boom, timeout=10)
            opaque = await team.offer("opaque", requires=["python"])
            with pytest.raises(TeamTaskError, match="could not be sent"):
                await team.wait(opaque, timeout=10)
            fine = await team.offer("fine", requires=["python"])
            assert await team.wait(fine, timeout=10) == "ok"
            assert refused == ["progress data may not set task_id"]
            assert fine.progress == [
                {"pct": 50, "task_id": fine.id, "message": "half", "attempt": 1}
            ]
            nobody = await team.offer("nobody can", requires=["cobol"])
            with pytest.raises(TeamTaskError, match="timed out"):
                await team.wait(nobody, timeout=0.2)
            assert nobody.status == "offered"
            with pytest.raises(TeamTaskError, match="not known"):
                await team.wait("no-such-task")
            with pytest.raises(TypeError):
                await team.offer("bad", requires="python")  # type: ignore[arg-type]
        with pytest.raises(TeamTaskError, match="closed"):
            await team.wait(nobody)
        with pytest.raises(RuntimeError, match="closed"):
            await team.offer("after")


async def test_forged_results_from_other_peers_are_ignored(anyio_backend: str) -> None:
    async with open_swarm(
        3, configure=lambda i: {"capabilities": ["python"]} if i == 1 else {}
    ) as sw:
        architect, coder, mallory = sw.nodes
        go = anyio.Event()
        async with Team(architect) as team, Worker(coder) as worker:

            @worker.task
            async def run(assignment: Assignment) -> str:
                await go.wait()
                return "REAL"

            task = await team.offer("job", requires=["python"])
            await eventually(lambda: task.status == "claimed")
            for kind, extra in (
                ("task.done", {"result": "FORGED"}),
                ("task.failed", {"error": "x"}),
            ):
                for attempt in (None, 1):
                    payload = {"task_id": task.id, "attempt": attempt, **extra}
                    await mallory.emit_conversation_event(task.id, kind, payload)
            await eventually(lambda: kinds(architect, task.id).count("task.failed") == 2)
            await anyio.sleep(0.1)
            assert not task.finished
            go.set()
            assert await team.wait(task, timeout=10) == "REAL"


async def test_a_forged_grant_cannot_take_a_claim_away(anyio_backend: str) -> None:
    """The worker side, driven by a hand-made team: only the offer's author may grant."""
    async with open_swarm(
        3, configure=lambda i: {"capabilities": ["python"]} if i == 1 else {}
    ) as sw:
        boss, coder, mallory = sw.nodes
        async with Worker(coder) as worker:

            @worker.task
            async def run(assignment: Assignment) -> str:
                return f"ran attempt {assignment.attempt} for {assignment.team_id[:4]}"

            offer = await boss.emit_conversation_event(
                "job",
                "task.offer",
                {"task_id": "job", "title": "t", "spec": {}, "requires": [], "attempt": 1},
            )
            await eventually(lambda: "task.claim" in kinds(boss, "job"))
            claim = next(e for e in boss.conversation("job") if e.kind == "task.claim")
            assert claim.parent_id == offer.event_id
            assert claim.payload == {"task_id": "job", "attempt": 1, "capabilities": ["python"]}
            for worker_id in ("someone-else", coder.node_id):  # neither counts: wrong author
                grant = {"task_id": "job", "worker_id": worker_id, "worker_name": "x", "attempt": 1}
                await mallory.emit_conversation_event(
                    "job", "task.grant", grant, parent_id=claim.event_id
                )
            await anyio.sleep(0.3)
            assert "task.done" not in kinds(boss, "job")
            grant = {"task_id": "job", "worker_id": coder.node_id, "worker_name": "c", "attempt": 1}
            await boss.emit_conversation_event("job", "task.grant", grant, parent_id=claim.event_id)
            await eventually(lambda: "task.done" in kinds(boss, "job"))
            done = next(e for e in boss.conversation("job") if e.kind == "task.done")
            assert done.peer.id == coder.node_id
            assert done.payload == {
                "task_id": "job",
                "result": f"ran attempt 1 for {boss.node_id[:4]}",
                "attempt": 1,
            }
            assert worker.statistics().executions == 1


async def test_drain_lets_running_tasks_finish(anyio_backend: str) -> None:
    async with open_swarm(2, configure=lambda i: {"capabilities": ["python"]} if i else {}) as sw:
        architect, coder = sw.nodes
        async with Team(architect) as team:
            async with Worker(coder) as worker:

                @worker.task
                async def run(assignment: Assignment) -> str:
                    await anyio.sleep(0.2)
                    return "finished"

                task = await team.offer("job")
                await eventually(lambda: bool(worker.running))
                await worker.drain()
                assert worker.running == frozenset()
                later = await team.offer("not claimed: the worker is draining")
                await anyio.sleep(0.1)
            assert await team.wait(task, timeout=5) == "finished"
            assert "task.release" not in kinds(architect, task.id)
            assert later.status == "offered"


async def test_restore_adopts_by_node_identity_from_a_durable_log(
    anyio_backend: str, tmp_path: Path
) -> None:
    path = tmp_path / "architect.db"
    ident = Identity.generate()  # the architect keeps its key, so its id
    caps = {1: ["python"]}

    def first(i: int) -> dict[str, Any]:
        if i == 0:
            return {"identity": ident, "name": "architect", "conversation_log": log}
        return {"capabilities": caps.get(i, [])}

    async with SqliteConversationLog(path) as log:
        async with open_swarm(2, configure=first) as swarm:
            async with Team(swarm[0]) as team, Worker(swarm[1]) as worker:

                @worker.task
                async def run(assignment: Assignment) -> str:
                    return f"built {assignment.spec['what']}"

                done = await team.offer("build", spec={"what": "parser"}, requires=["python"])
                assert await team.wait(done, timeout=10) == "built parser"
                pending = await team.offer("port", spec={"what": "to rust"}, requires=["rust"])
    # A node with the same name but another identity adopts nothing.
    async with SqliteConversationLog(path) as log:
        impostor = Node(name="architect", conversation_log=log)
        assert Team(impostor).restore() == 0

    def second(i: int) -> dict[str, Any]:
        if i == 0:
            return {"identity": ident, "name": "architect-2", "conversation_log": log}
        return {"capabilities": ["rust"]}

    async with SqliteConversationLog(path) as log:
        async with open_swarm(2, configure=second) as swarm:
            async with Team(swarm[0]) as team:
                assert team.restore() == 2
                assert team.restore() == 0
                restored = team.tasks[done.id]
                assert restored.status == "done"
                assert await team.wait(done.id) == "built parser"
                assert team.tasks[pending.id].status == "offered"
                async with Worker(swarm[1]) as rust:

                    @rust.task
                    async def port(assignment: Assignment) -> str:
                        return f"ported {assignment.spec['what']}"

                    assert await team.wait(pending.id, timeout=10) == "ported to rust"


async def test_constructor_arguments_are_checked(anyio_backend: str) -> None:
    node = Node()
    with pytest.raises(ValueError, match="lease"):
        Team(node, lease=0)
    with pytest.raises(TypeError, match="max_attempts"):
        Team(node, max_attempts=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_attempts"):
        Team(node, max_attempts=0)
    with pytest.raises(ValueError, match="task_retention"):
        Team(node, task_retention=-1)
    with pytest.raises(ValueError, match="renew_interval"):
        Worker(node, renew_interval=0)
    with pytest.raises(ValueError, match="max_concurrent"):
        Worker(node, max_concurrent=0)
    worker = Worker(node)
    with pytest.raises(TypeError, match="async"):
        worker.task(lambda a: a)  # type: ignore[arg-type, return-value]
    with pytest.raises(RuntimeError, match="already has a Worker"):
        Worker(node)  # two would both run what the node is granted
    await worker.aclose()
    await Worker(node).aclose()
