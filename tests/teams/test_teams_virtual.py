"""Teams on virtual time (trio MockClock, in-memory network): leases of minutes and tasks of
hours take milliseconds of real time."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
import trio.testing

from synapse_p2p import ConversationEvent, Identity, MemoryConversationLog, Node
from synapse_p2p.teams import Assignment, Team, TeamTaskError, Worker
from synapse_p2p.testing import open_swarm
from tests.teams._kit import wall

pytestmark = pytest.mark.anyio

PYTHON = {"capabilities": ["python"]}


@pytest.fixture
def anyio_backend() -> Any:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


def silent_claimer(node: Node, granted: list[ConversationEvent], *, claims: int = 100) -> None:
    """Make ``node`` claim the first ``claims`` offers and then say nothing (a stuck or
    partitioned worker)."""
    budget = [claims]

    @node.on("conversation.task.offer")
    async def claim(event: ConversationEvent) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            return
        payload = {"task_id": event.conversation_id, "attempt": event.payload.get("attempt")}
        await node.emit_conversation_event(
            event.conversation_id, "task.claim", payload, parent_id=event.event_id
        )

    @node.on("conversation.task.grant")
    async def on_grant(event: ConversationEvent) -> None:
        if event.payload.get("worker_id") == node.node_id:
            granted.append(event)


def kinds(node: Node, task_id: str) -> list[str]:
    return [e.kind for e in node.conversation(task_id)]


async def test_a_300s_lease_expires_and_reoffers_in_milliseconds(anyio_backend: Any) -> None:
    real = time.monotonic()
    config = {1: {"capabilities": ["python"]}, 2: PYTHON}
    async with open_swarm(
        3, configure=lambda i: config.get(i, {}), wall_clock=wall, peer_timeout=3600
    ) as swarm:
        architect, stuck, coder = swarm.nodes
        granted: list[ConversationEvent] = []
        silent_claimer(stuck, granted, claims=1)
        async with Team(architect, lease=300) as team:
            task = await team.offer("parse", requires=["python"])
            with anyio.fail_after(5):
                while not granted:
                    await anyio.sleep(0.01)
            start = anyio.current_time()
            worker = Worker(coder)

            @worker.task
            async def run(assignment: Assignment) -> str:
                return f"parsed on attempt {assignment.attempt}"

            async with worker:
                assert await team.wait(task, timeout=400) == "parsed on attempt 2"
            waited = anyio.current_time() - start
            assert 299 < waited < 301  # the lease, not a reaper period
            assert task.attempts == 2
            assert task.assignee is not None
            assert task.assignee.id == coder.node_id
            # The silent assignee's late result for attempt 1 is stale and changes nothing.
            stale = {"task_id": task.id, "result": "stale", "attempt": 1}
            await stuck.emit_conversation_event(task.id, "task.done", stale)
            await anyio.sleep(1)
            assert task.result == "parsed on attempt 2"
            assert kinds(architect, task.id).count("task.grant") == 2
    assert time.monotonic() - real < 10


async def test_renewal_keeps_a_three_hour_task_alive(anyio_backend: Any) -> None:
    async with open_swarm(2, configure=lambda i: PYTHON if i else {}, wall_clock=wall) as swarm:
        architect, coder = swarm.nodes
        async with Team(architect, lease=300) as team, Worker(coder) as worker:

            @worker.task
            async def long_job(assignment: Assignment) -> str:
                await anyio.sleep(3 * 3600)  # no progress calls at all
                return "finished"

            task = await team.offer("long", requires=["python"])
            assert await team.wait(task, timeout=4 * 3600) == "finished"
        assert task.attempts == 1
        assert team.statistics().reoffers == 0
        events = architect.conversation(task.id)
        heartbeats = [e for e in events if e.kind == "task.progress"]
        assert len(heartbeats) >= 3 * 3600 / 60 - 2
        assert all(e.payload.get("heartbeat") for e in heartbeats)
        assert task.progress == []  # heartbeats renew, they are not progress


async def test_max_attempts_fails_the_task(anyio_backend: Any) -> None:
    async with open_swarm(2, wall_clock=wall, peer_timeout=3600) as swarm:
        architect, stuck = swarm.nodes
        granted: list[ConversationEvent] = []
        silent_claimer(stuck, granted)
        async with Team(architect, lease=60, max_attempts=2) as team:
            task = await team.offer("never finishes")
            with pytest.raises(TeamTaskError, match="after 2 attempts"):
                await team.wait(task, timeout=1000)
            assert anyio.current_time() < 130
        assert len(granted) == 2
        assert task.status == "failed"


async def test_task_retention_forgets_finished_tasks_but_wait_still_answers(
    anyio_backend: Any,
) -> None:
    async with open_swarm(2, configure=lambda i: PYTHON if i else {}, wall_clock=wall) as swarm:
        architect, coder = swarm.nodes
        async with Team(architect, task_retention=60) as team, Worker(coder) as worker:

            @worker.task
            async def run(assignment: Assignment) -> int:
                if assignment.title == "bad":
                    raise ValueError("bad input")
                return 42

            good = await team.offer("good", requires=["python"])
            bad = await team.offer("bad", requires=["python"])
            assert await team.wait(good, timeout=10) == 42
            with pytest.raises(TeamTaskError, match="bad input"):
                await team.wait(bad, timeout=10)
            await anyio.sleep(30)
            assert set(team.tasks) == {good.id, bad.id}
            await anyio.sleep(40)
            assert team.tasks == {}
            # Forgotten, yet never a KeyError: the record answers, the bare id is an error.
            assert await team.wait(good) == 42
            with pytest.raises(TeamTaskError, match="bad input"):
                await team.wait(bad)
            with pytest.raises(TeamTaskError, match="not known"):
                await team.wait(good.id)


async def test_a_dead_assignee_is_reoffered_when_it_goes_offline(anyio_backend: Any) -> None:
    async with open_swarm(
        3,
        configure=lambda i: PYTHON if i else {},
        wall_clock=wall,
        heartbeat_interval=5,
        peer_timeout=20,
    ) as swarm:
        architect, first, second = swarm.nodes
        started: list[str] = []
        hold = anyio.Event()
        for node in (first, second):
            worker = Worker(node, max_concurrent=1)

            @worker.task
            async def run(assignment: Assignment, node: Node = node) -> str:
                started.append(node.name)
                if len(started) == 1:
                    await hold.wait()  # the first one never finishes: it will be killed
                return node.name

        async with Team(architect, lease=300) as team:
            task = await team.offer("job", requires=["python"])
            with anyio.fail_after(5):
                while not started:
                    await anyio.sleep(0.01)
            victim = first if started[0] == first.name else second
            survivor = second if victim is first else first
            killed_at = anyio.current_time()
            swarm.kill(victim)
            assert await team.wait(task, timeout=200) == survivor.name
            assert anyio.current_time() - killed_at < 60  # the lease is 300 s
            assert task.attempts == 2


async def test_a_late_joiner_is_offered_open_work_promptly(anyio_backend: Any) -> None:
    async with open_swarm(1, wall_clock=wall) as swarm:
        (architect,) = swarm.nodes
        assert swarm.network is not None
        async with Team(architect) as team:
            task = await team.offer("open work", requires=["python"])
            await anyio.sleep(1000)  # re-announcements are far apart by now
            late = Node(
                name="late",
                swarm="test",
                capabilities=["python"],
                wall_clock=wall,
                bind="10.0.9.1",
                port=7000,
                transport=swarm.network.transport("10.0.9.1"),
                seeds=[f"{architect.address}:{architect.port}"],
            )
            worker = Worker(late)

            @worker.task
            async def run(assignment: Assignment) -> str:
                return "picked up"

            joined = anyio.current_time()
            async with late:
                assert await team.wait(task, timeout=60) == "picked up"
            assert anyio.current_time() - joined < 5


async def test_leaving_a_worker_block_hands_running_tasks_back(anyio_backend: Any) -> None:
    async with open_swarm(3, configure=lambda i: PYTHON if i else {}, wall_clock=wall) as swarm:
        architect, quitter, stayer = swarm.nodes
        async with Team(architect, lease=300) as team:
            cancelled: list[str] = []
            async with Worker(quitter) as worker:

                @worker.task
                async def slow(assignment: Assignment) -> str:
                    try:
                        await anyio.sleep(10_000)
                    except anyio.get_cancelled_exc_class():
                        cancelled.append(assignment.id)
                        raise
                    return "never"

                task = await team.offer("job", requires=["python"])
                with anyio.fail_after(5):
                    while task.status != "claimed":
                        await anyio.sleep(0.01)
                assert worker.running == {task.id}
            assert cancelled == [task.id]
            left = anyio.current_time()
            async with Worker(stayer) as other:

                @other.task
                async def quick(assignment: Assignment) -> str:
                    return "done by the stayer"

                assert await team.wait(task, timeout=60) == "done by the stayer"
            assert anyio.current_time() - left < 5
            assert task.attempts == 2
            assert "task.release" in kinds(architect, task.id)


async def test_a_restarted_architect_restores_a_long_task_after_compaction(
    anyio_backend: Any,
) -> None:
    """The seed's months-long team: most of the task's conversation is compacted away by the
    time the architect restarts; its checkpoint still lets restore() adopt the task, and the
    coder's result is accepted by the new incarnation (same node id, same durable log)."""
    log = MemoryConversationLog()  # stands for SqliteConversationLog("architect.db")
    ident = Identity.generate()  # the architect keeps its key, so its id
    compacting: dict[str, Any] = {"conversation_max_events": 40, "conversation_keep_recent": 10}
    first = {"identity": ident, "name": "architect", "conversation_log": log, **compacting}
    async with open_swarm(2, configure=lambda i: PYTHON if i else first, wall_clock=wall) as swarm:
        assert swarm.network is not None
        architect, coder = swarm.nodes
        async with Worker(coder) as worker:

            @worker.task
            async def long_job(assignment: Assignment) -> str:
                await anyio.sleep(2 * 3600)
                return "two hours of work"

            team = Team(architect)  # as in the seed: it lives and dies with its node
            task = await team.offer("long", requires=["python"])
            await anyio.sleep(3600)
            left = kinds(architect, task.id)
            assert left.count("task.progress") < 40  # compacted (the opening event stays)
            assert "task.state" in left
            address, port = architect.address, architect.port
            swarm.kill(architect)
            await anyio.sleep(60)
            again = Node(
                name="architect",
                swarm="test",
                wall_clock=wall,
                bind=address,
                port=port,
                transport=swarm.network.transport(address),
                seeds=[f"{coder.address}:{coder.port}"],
                identity=ident,
                conversation_log=log,
                **compacting,
            )
            async with again, Team(again) as restarted:
                assert restarted.restore() == 1
                restored = restarted.tasks[task.id]
                assert restored.status == "claimed"
                assert restored.assignee is not None
                assert restored.assignee.id == coder.node_id
                assert await restarted.wait(task.id, timeout=2 * 3600) == "two hours of work"
                assert restored.attempts == 1
        assert worker.statistics().executions == 1
