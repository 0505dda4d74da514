"""Team tasks read off their conversations: the sans-IO view, and ``sn tasks``."""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import pytest

from synapse_p2p import ConversationEvent, Peer
from synapse_p2p.teams import Assignment, Team, Worker, task_view
from synapse_p2p.testing import open_swarm
from tests.cli.conftest import ROOT, env

TEAM = Peer("t" * 64, "10.0.0.1", 1, name="architect")
CODER = Peer("c" * 64, "10.0.0.2", 1, name="coder")


def ev(i: int, kind: str, payload: dict[str, Any], peer: Peer = TEAM) -> ConversationEvent:
    return ConversationEvent("task-1", f"e{i}", kind, peer, payload, created_at=100.0 + i)


def test_only_the_assignee_moves_a_granted_task_and_old_attempts_are_ignored() -> None:
    """The rules the team applies: before, ``sn tasks`` showed a ``task.done`` from anyone
    as done."""
    stranger = Peer("s" * 64, "10.0.0.3", 1, name="stranger")
    events = [
        ev(0, "task.offer", {"task_id": "task-1", "title": "parse", "attempt": 1}),
        ev(1, "task.grant", {"task_id": "task-1", "worker_id": CODER.id, "attempt": 1}),
        ev(2, "task.done", {"task_id": "task-1", "result": "forged", "attempt": 1}, stranger),
        ev(3, "task.progress", {"task_id": "task-1", "message": "forged"}, stranger),
        ev(4, "task.offer", {"task_id": "task-1", "title": "parse", "attempt": 2}),
        ev(5, "task.done", {"task_id": "task-1", "result": "late", "attempt": 1}, CODER),
    ]
    view = task_view(events)
    assert view is not None
    assert (view.status, view.attempt, view.result, view.last_progress) == (
        "offered",
        2,
        None,
        None,
    )


def test_a_task_is_read_off_its_conversation() -> None:
    events = [ev(0, "task.offer", {"task_id": "task-1", "title": "parse", "requires": ["py"],
                                   "attempt": 1})]  # fmt: skip
    view = task_view(events)
    assert view is not None
    assert (view.status, view.attempt, view.assignee) == ("offered", 1, None)
    events.append(ev(1, "task.claim", {"task_id": "task-1", "attempt": 1}, CODER))
    events.append(ev(2, "task.grant", {"task_id": "task-1", "worker_id": CODER.id,
                                       "worker_name": "coder", "attempt": 1, "lease": 30}))  # fmt: skip
    view = task_view(events)
    assert view is not None
    assert (view.status, view.assignee, view.lease_deadline, view.claims) == (
        "granted",
        "coder",
        132.0,
        1,
    )
    events.append(ev(3, "task.progress", {"task_id": "task-1", "message": "halfway"}, CODER))
    events.append(ev(4, "task.progress", {"task_id": "task-1", "heartbeat": True}, CODER))
    view = task_view(events)
    assert view is not None
    assert (view.status, view.last_progress, view.lease_deadline) == ("working", "halfway", 134.0)
    events.append(ev(5, "task.release", {"task_id": "task-1", "attempt": 1}, CODER))
    events.append(ev(6, "task.offer", {"task_id": "task-1", "title": "parse", "attempt": 2}))
    view = task_view(events)
    assert view is not None
    assert (view.status, view.attempt, view.assignee) == ("offered", 2, None)
    events.append(ev(7, "task.failed", {"task_id": "task-1", "error": "KeyError"}, CODER))
    view = task_view(events)
    assert view is not None
    assert (view.status, view.error, view.lease_deadline) == ("failed", "KeyError", None)
    assert task_view([ev(0, "message", {})]) is None
    assert task_view([]) is None


def test_malformed_payloads_do_not_break_the_view() -> None:
    events = [
        ev(0, "task.offer", {"title": 5, "requires": "py", "attempt": "x"}),
        ev(1, "task.grant", {"lease": "soon", "attempt": True}),
        ev(2, "task.done", {}),
    ]
    view = task_view(events)
    assert view is not None
    assert (view.status, view.attempt, view.lease_deadline) == ("done", 1, None)


@pytest.mark.anyio
async def test_sn_tasks_lists_the_open_tasks_of_the_swarm(anyio_backend: str) -> None:
    configure = {1: {"capabilities": ["py"]}}
    async with open_swarm(
        2, transport="tcp", swarm="lab", configure=lambda i: configure.get(i, {})
    ) as swarm:
        architect, coder = swarm.nodes
        release = anyio.Event()
        async with Worker(coder) as worker, Team(architect) as team:

            @worker.task
            async def run(assignment: Assignment) -> str:
                await assignment.progress("halfway")
                await release.wait()
                return "ok"

            finished = await team.offer("finished one", requires=["py"])
            release.set()
            await team.wait(finished, timeout=20)
            release = anyio.Event()
            task = await team.offer("parse the input", requires=["py"])
            with anyio.fail_after(20):
                while not task.progress:
                    await anyio.sleep(0.01)
            argv = [sys.executable, "-m", "synapse_p2p", "tasks", "lab", "--seed",
                    f"127.0.0.1:{architect.port}", "--json"]  # fmt: skip
            done = await anyio.run_process(argv, check=False, env=env(), cwd=ROOT)
            assert done.returncode == 0, done.stderr.decode()
            views = [json.loads(line) for line in done.stdout.decode().splitlines()]
            assert [(v["title"], v["status"], v["assignee"]) for v in views] == [
                ("parse the input", "working", "node1")
            ]
            assert views[0]["last_progress"] == "halfway"
            assert views[0]["lease_deadline"] is not None
            everything = await anyio.run_process([*argv, "--all"], check=False, env=env(),
                                                 cwd=ROOT)  # fmt: skip
            titles = {json.loads(line)["title"] for line in everything.stdout.decode().splitlines()}
            assert titles == {"parse the input", "finished one"}
            release.set()
            await team.wait(task, timeout=20)
