"""A hypothesis state machine of the whole teams protocol, sans-IO: one TaskTable, three
ClaimBooks and a network that delays, reorders, duplicates, drops and loses events (stored in
the team's log without reaching its handler), plus forged events from other authors.

Checked against a simple model at every step: at most one grant per (task, attempt); a run
starts only for the team's own grant naming that worker for that attempt, at most once; a
finished task never changes; a result is always the one sent by the assignee granted the
task's final attempt; attempts never pass ``max_attempts``; and with a quiet network and
honest workers every task finishes.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from synapse_p2p.teams._state import (
    Cancel,
    Claim,
    ClaimBook,
    Emit,
    Finished,
    Start,
    TaskTable,
)
from synapse_p2p.types import ConversationEvent
from tests.teams._kit import peer

LEASE = 100.0
CLAIM_TIMEOUT = 30.0
WORKERS = ("w1", "w2", "w3")
AUTHORS = ("mallory", *WORKERS)
KINDS = ("task.done", "task.failed", "task.progress", "task.release", "task.claim")


class TeamsProtocol(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.ids = itertools.count(1)
        self.net: list[tuple[str, ConversationEvent]] = []
        self.team_log: dict[str, list[ConversationEvent]] = {}
        self.granted: dict[tuple[str, int], str] = {}
        self.started: set[tuple[str, str, int | None]] = set()
        self.runs: dict[str, dict[str, int | None]] = {w: {} for w in WORKERS}
        self.final: dict[str, tuple[str, Any, Any]] = {}
        self.task_ids: list[str] = []

    @initialize(
        max_attempts=st.sampled_from([None, 1, 3]), legacy=st.booleans(), tasks=st.integers(1, 3)
    )
    def setup(self, max_attempts: int | None, legacy: bool, tasks: int) -> None:
        self.max_attempts = max_attempts
        self.legacy = legacy  # w2 speaks like a 2.5.0 worker: no attempt in its reports
        self.table = TaskTable("team", lease=LEASE, max_attempts=max_attempts)
        self.books = {
            w: ClaimBook(w, claim_timeout=CLAIM_TIMEOUT, max_concurrent=1 if w == "w3" else None)
            for w in WORKERS
        }
        for _ in range(tasks):
            self.offer()

    # -- plumbing -----------------------------------------------------------------------------

    def send(
        self,
        author: str,
        kind: str,
        task_id: str,
        payload: dict[str, Any],
        parent: str | None = None,
    ) -> ConversationEvent:
        event = ConversationEvent(
            task_id,
            f"e{next(self.ids)}",
            kind,
            peer(author, ["python"]),
            dict(payload),
            parent,
            self.now,
        )
        if author == "team":
            self.team_log.setdefault(task_id, []).append(event)
        for dest in ("team", *WORKERS):
            if dest != author:
                self.net.append((dest, event))
        return event

    def team_actions(self, actions: list[Emit | Finished]) -> None:
        for action in actions:
            if isinstance(action, Finished):
                self.check_result(action.task.id)
                continue
            if action.kind == "task.grant":
                key = (action.task_id, action.payload["attempt"])
                assert key not in self.granted, f"second grant for {key}"
                self.granted[key] = action.payload["worker_id"]
            self.send("team", action.kind, action.task_id, action.payload, action.parent_id)

    def worker_actions(self, worker: str, actions: list[Claim | Start | Cancel]) -> None:
        book = self.books[worker]
        for action in actions:
            if isinstance(action, Claim):
                offer = action.offer
                payload = {
                    "task_id": offer.task_id,
                    "attempt": offer.attempt,
                    "capabilities": ["python"],
                }
                claim = self.send(worker, "task.claim", offer.task_id, payload, offer.offer_id)
                book.claimed(offer.task_id, claim.event_id)
            elif isinstance(action, Start):
                offer = action.offer
                assert offer.team_id == "team"
                assert offer.attempt is not None
                assert self.granted.get((offer.task_id, offer.attempt)) == worker
                key = (worker, offer.task_id, offer.attempt)
                assert key not in self.started, f"started twice: {key}"
                self.started.add(key)
                self.runs[worker][offer.task_id] = offer.attempt
            else:
                if self.runs[worker].get(action.task_id) == action.attempt:
                    del self.runs[worker][action.task_id]
                self.worker_actions(worker, book.finished(self.now, action.task_id, action.attempt))

    def deliver(self, index: int, *, keep: bool = False, lose: bool = False) -> None:
        dest, event = self.net[index] if keep else self.net.pop(index)
        if dest == "team":
            log = self.team_log.setdefault(event.conversation_id, [])
            if event not in log:
                log.append(event)
            if not lose:
                self.team_actions(self.table.handle(self.now, event))
        elif not lose:
            book = self.books[dest]
            if event.kind == "task.offer":
                self.worker_actions(dest, book.offer(self.now, event, capable=True))
            elif event.kind == "task.grant":
                self.worker_actions(dest, book.grant(self.now, event))

    def check_result(self, task_id: str) -> None:
        task = self.table.tasks[task_id]
        if task.status == "done":
            worker, attempt = task.result["w"], task.result["a"]
        elif task.error is not None and task.error.startswith("err:"):
            _, worker, raw = task.error.split(":")
            attempt = None if raw == "None" else int(raw)
        else:
            assert task.error == f"no worker completed the task after {task.attempts} attempts"
            assert self.max_attempts == task.attempts
            return
        # Reports that name no attempt (2.5.0 workers) are fenced by their author alone.
        assert attempt in (None, task.attempts), "a stale result was accepted"
        assert self.granted.get((task_id, task.attempts)) == worker, "a forged result was accepted"

    # -- rules -------------------------------------------------------------------------------

    @rule()
    def offer(self) -> None:
        if len(self.task_ids) < 4:
            task_id = f"t{len(self.task_ids)}"
            self.task_ids.append(task_id)
            _, emit = self.table.offer(self.now, task_id, "title", {}, ["python"])
            self.team_actions([emit])

    @rule(data=st.data(), count=st.integers(1, 6))
    def network(self, data: st.DataObject, count: int) -> None:
        hows = st.sampled_from(["deliver", "deliver", "deliver", "dup", "drop", "lose"])
        for _ in range(count):
            if not self.net:
                return
            index = data.draw(st.integers(0, len(self.net) - 1))
            how = data.draw(hows)
            if how == "drop":
                self.net.pop(index)
            else:
                self.deliver(index, keep=how == "dup", lose=how == "lose")

    @rule(
        worker=st.sampled_from(WORKERS),
        data=st.data(),
        kind=st.sampled_from(["task.done", "task.failed", "task.progress", "task.release"]),
    )
    def work(self, worker: str, data: st.DataObject, kind: str) -> None:
        runs = self.runs[worker]
        if not runs:
            return
        task_id = data.draw(st.sampled_from(sorted(runs)))
        attempt = runs[task_id]
        payload: dict[str, Any] = {"task_id": task_id}
        named = None if self.legacy and worker == "w2" else attempt
        if named is not None:
            payload["attempt"] = named
        if kind == "task.done":
            payload["result"] = {"w": worker, "a": named}
        elif kind == "task.failed":
            payload["error"] = f"err:{worker}:{named}"
        elif kind == "task.progress":
            payload.update(message="working", heartbeat=data.draw(st.booleans()))
        self.send(worker, kind, task_id, payload)
        if kind != "task.progress":
            del runs[task_id]
            self.worker_actions(worker, self.books[worker].finished(self.now, task_id, attempt))

    def target(self, data: st.DataObject) -> str:
        """A task, most often one being worked on (where forgeries matter)."""
        claimed = [t.id for t in self.table.tasks.values() if t.status == "claimed"]
        focus: bool = data.draw(st.booleans())
        return data.draw(st.sampled_from(claimed if claimed and focus else self.task_ids))

    @rule(
        data=st.data(),
        author=st.sampled_from(AUTHORS),
        kind=st.sampled_from(KINDS),
        skew=st.sampled_from([None, -1, 0, 1]),
    )
    def forge(self, data: st.DataObject, author: str, kind: str, skew: int | None) -> None:
        if not self.task_ids:
            return
        task_id = self.target(data)
        attempt = None if skew is None else max(1, self.table.tasks[task_id].attempts + skew)
        # Results say who sent them and for which attempt, honestly: an author that is the
        # assignee of the attempt named (or of the current one, naming none) is not a forger.
        payload: dict[str, Any] = {"task_id": task_id, "attempt": attempt, "capabilities": []}
        payload.update(result={"w": author, "a": attempt}, error=f"err:{author}:{attempt}")
        event = self.send(author, kind, task_id, payload, "forged-parent")
        if data.draw(st.booleans()):  # sometimes it arrives at the team at once
            self.deliver(self.net.index(("team", event)))

    @rule(data=st.data(), author=st.sampled_from(AUTHORS), attempt=st.sampled_from([None, 1, 2]))
    def forge_grant(self, data: st.DataObject, author: str, attempt: int | None) -> None:
        if self.task_ids:
            task_id = self.target(data)
            target = data.draw(st.sampled_from(WORKERS))
            payload = {"task_id": task_id, "worker_id": target, "attempt": attempt}
            self.send(author, "task.grant", task_id, payload, "forged-parent")

    @rule(dt=st.sampled_from([0.1, 1.0, 5.0, CLAIM_TIMEOUT, LEASE / 2, LEASE]))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.team_actions(self.table.tick(self.now, lambda t: self.team_log.get(t, [])))
        for worker, book in self.books.items():
            self.worker_actions(worker, book.tick(self.now))

    @rule(worker=st.sampled_from(WORKERS))
    def offline(self, worker: str) -> None:
        self.team_actions(self.table.peer_offline(self.now, worker))

    @rule()
    def joined(self) -> None:
        self.table.peer_joined(self.now)

    def teardown(self) -> None:
        """At the end, a quiet network and honest workers: every task finishes."""
        if not hasattr(self, "table"):
            return
        for _ in range(30):
            for _ in range(10_000):
                if not self.net:
                    break
                self.deliver(0)
            for worker in WORKERS:
                for task_id, attempt in sorted(self.runs[worker].items()):
                    payload = {
                        "task_id": task_id,
                        "attempt": attempt,
                        "result": {"w": worker, "a": attempt},
                    }
                    self.send(worker, "task.done", task_id, payload)
                    del self.runs[worker][task_id]
                    self.worker_actions(
                        worker, self.books[worker].finished(self.now, task_id, attempt)
                    )
            for _ in range(10_000):
                if not self.net:
                    break
                self.deliver(0)
            if all(t.finished for t in self.table.tasks.values()):
                return
            self.advance(LEASE)
        raise AssertionError("tasks did not finish on a quiet network")

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def finished_tasks_never_change(self) -> None:
        for task_id, task in getattr(self, "table", TaskTable("x", lease=1)).tasks.items():
            if task.finished:
                snapshot = (task.status, repr(task.result), task.error)
                assert self.final.setdefault(task_id, snapshot) == snapshot
            else:
                assert task_id not in self.final

    @invariant()
    def statuses_are_consistent(self) -> None:
        if not hasattr(self, "table"):
            return
        for task in self.table.tasks.values():
            if self.max_attempts is not None:
                assert task.attempts <= self.max_attempts
            if task.status == "claimed":
                assert task.assignee is not None
                assert task.lease_expires is not None
                assert self.granted[(task.id, task.attempts)] == task.assignee.id
            elif task.status == "offered":
                assert task.assignee is None
                assert task.lease_expires is None


TeamsProtocol.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_teams_protocol = TeamsProtocol.TestCase
