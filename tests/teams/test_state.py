"""The sans-IO teams state, rule by rule: grants, fencing, forgeries, leases, restore."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

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
from tests.teams._kit import event

LEASE = 300.0


def table(**kw: object) -> TaskTable:
    return TaskTable("team", lease=LEASE, **kw)  # type: ignore[arg-type]


def offered(tt: TaskTable, task_id: str = "t1", requires: list[str] | None = None) -> Emit:
    _, emit = tt.offer(0.0, task_id, "title", {"k": 1}, requires or [])
    return emit


def grant_to(tt: TaskTable, worker: str, task_id: str = "t1", now: float = 0.0) -> Emit:
    attempt = tt.tasks[task_id].attempts
    actions = tt.handle(now, event("task.claim", task_id, worker, "offer", attempt=attempt))
    assert len(actions) == 1
    assert isinstance(actions[0], Emit)
    return actions[0]


def test_offer_payload_is_the_reference_shape() -> None:
    tt = table()
    emit = offered(tt, requires=["python"])
    assert emit.kind == "task.offer"
    assert emit.parent_id is None
    assert emit.payload == {
        "task_id": "t1",
        "title": "title",
        "spec": {"k": 1},
        "requires": ["python"],
        "attempt": 1,
    }


def test_one_grant_per_attempt_with_attempt_and_parent() -> None:
    tt = table()
    offered(tt)
    claim = event("task.claim", "t1", "w1", "offer", attempt=1, capabilities=[])
    (grant,) = tt.handle(1.0, claim)
    assert isinstance(grant, Emit)
    assert grant.kind == "task.grant"
    assert grant.parent_id == claim.event_id
    assert grant.payload == {
        "task_id": "t1",
        "worker_id": "w1",
        "worker_name": "w1",
        "attempt": 1,
        "lease": LEASE,
    }
    assert tt.handle(1.0, event("task.claim", "t1", "w2", "offer", attempt=1)) == []
    assert tt.handle(1.0, event("task.claim", "t1", "w1", "offer", attempt=1)) == []
    assert tt.grants == 1
    task = tt.tasks["t1"]
    assert task.status == "claimed"
    assert task.assignee is not None
    assert task.assignee.id == "w1"
    assert task.lease_expires == 1.0 + LEASE


def test_claims_for_other_attempts_or_without_capabilities_are_ignored() -> None:
    tt = table()
    offered(tt, requires=["python"])
    assert (
        tt.handle(0, event("task.claim", "t1", "w", "o", attempt=2, capabilities=["python"])) == []
    )
    assert tt.handle(0, event("task.claim", "t1", "w", "o", capabilities=["python"])) == []
    assert tt.handle(0, event("task.claim", "t1", "w", "o", attempt=1, capabilities=["go"])) == []
    assert tt.handle(0, event("task.claim", "zz", "w", "o", attempt=1)) == []
    assert tt.tasks["t1"].status == "offered"


def test_results_count_only_from_the_assignee_of_the_current_attempt() -> None:
    tt = table()
    offered(tt)
    grant_to(tt, "w1")
    # Forged completions from anyone else, and a named wrong attempt, are ignored.
    assert tt.handle(2, event("task.done", "t1", "mallory", result="FORGED")) == []
    assert tt.handle(2, event("task.done", "t1", "w1", result="x", attempt=7)) == []
    assert tt.handle(2, event("task.failed", "t1", "mallory", error="no")) == []
    assert tt.handle(2, event("task.progress", "t1", "mallory", message="m")) == []
    assert tt.tasks["t1"].progress == []
    assert not tt.tasks["t1"].finished
    (done,) = tt.handle(3, event("task.done", "t1", "w1", result="ok", attempt=1))
    assert isinstance(done, Finished)
    assert done.task.result == "ok"
    # The first valid result wins.
    assert tt.handle(4, event("task.done", "t1", "w1", result="again", attempt=1)) == []
    assert tt.handle(4, event("task.failed", "t1", "w1", error="late", attempt=1)) == []
    assert tt.tasks["t1"].status == "done"
    assert tt.tasks["t1"].result == "ok"


def test_a_reference_worker_without_attempt_numbers_is_fenced_by_identity() -> None:
    tt = table()
    offered(tt)
    grant_to(tt, "ref")
    assert tt.handle(1, event("task.progress", "t1", "ref", message="working")) == []
    assert tt.tasks["t1"].progress == [{"task_id": "t1", "message": "working"}]
    (done,) = tt.handle(2, event("task.done", "t1", "ref", result=5))
    assert isinstance(done, Finished)
    assert tt.tasks["t1"].result == 5


def test_progress_renews_the_lease_and_heartbeats_are_not_kept() -> None:
    tt = table()
    offered(tt)
    grant_to(tt, "w1")
    tt.handle(250, event("task.progress", "t1", "w1", message="hb", heartbeat=True, attempt=1))
    assert tt.tasks["t1"].lease_expires == 250 + LEASE
    assert tt.tasks["t1"].progress == []
    assert tt.tick(LEASE + 1) == []
    assert tt.tasks["t1"].status == "claimed"
    (reoffer,) = tt.tick(250 + LEASE)
    assert isinstance(reoffer, Emit)
    assert reoffer.payload["attempt"] == 2


def test_expiry_reoffers_a_new_attempt_and_fences_the_old_assignee() -> None:
    tt = table()
    offered(tt)
    grant_to(tt, "w1")
    assert tt.next_deadline() == LEASE
    (reoffer,) = tt.tick(LEASE)
    assert isinstance(reoffer, Emit)
    assert reoffer.kind == "task.offer"
    assert reoffer.payload["attempt"] == 2
    task = tt.tasks["t1"]
    assert task.status == "offered"
    assert task.assignee is None
    assert task.attempts == 2
    # The old assignee's late result is stale.
    assert tt.handle(LEASE + 1, event("task.done", "t1", "w1", result="stale", attempt=1)) == []
    assert tt.handle(LEASE + 1, event("task.done", "t1", "w1", result="stale")) == []
    grant = grant_to(tt, "w2", now=LEASE + 2)
    assert grant.payload["attempt"] == 2
    assert tt.handle(LEASE + 3, event("task.done", "t1", "w1", result="stale", attempt=2)) == []
    tt.handle(LEASE + 3, event("task.done", "t1", "w2", result="fresh", attempt=2))
    assert task.result == "fresh"


def test_max_attempts_fails_the_task_instead_of_a_new_attempt() -> None:
    tt = table(max_attempts=2)
    offered(tt)
    grant_to(tt, "w1")
    tt.tick(LEASE)
    grant_to(tt, "w2", now=LEASE)
    (finished,) = tt.tick(2 * LEASE)
    assert isinstance(finished, Finished)
    assert finished.task.status == "failed"
    assert finished.task.error == "no worker completed the task after 2 attempts"


def test_unclaimed_offers_are_reannounced_with_backoff_without_new_attempts() -> None:
    tt = table()
    offered(tt)
    times = []
    now = 0.0
    for _ in range(12):
        now = tt.next_deadline() or 0.0
        (emit,) = tt.tick(now)
        assert isinstance(emit, Emit)
        assert emit.payload["attempt"] == 1
        times.append(now)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert times[0] == 2.0
    assert gaps[:4] == [4.0, 8.0, 16.0, 32.0]
    assert max(gaps) == LEASE
    assert tt.tasks["t1"].attempts == 1
    assert tt.announcements == 12


def test_a_joining_peer_gets_open_offers_promptly() -> None:
    tt = table()
    offered(tt, "t1")
    offered(tt, "t2")
    grant_to(tt, "w1", "t2")
    for _ in range(5):
        tt.tick(tt.next_deadline() or 0.0)
    now = 100.0
    tt.peer_joined(now)
    tt.peer_joined(now + 0.05)  # coalesced
    assert tt.next_deadline() == pytest.approx(now + 0.2)
    actions = tt.tick(now + 0.25)
    assert [a.task_id for a in actions if isinstance(a, Emit)] == ["t1"]


def test_an_offline_assignee_is_reoffered_at_once() -> None:
    tt = table()
    offered(tt)
    grant_to(tt, "w1")
    assert tt.peer_offline(5, "w2") == []
    (emit,) = tt.peer_offline(5, "w1")
    assert isinstance(emit, Emit)
    assert emit.payload["attempt"] == 2


def test_release_by_the_assignee_reoffers() -> None:
    tt = table()
    offered(tt)
    grant_to(tt, "w1")
    assert tt.handle(1, event("task.release", "t1", "w2", attempt=1)) == []
    (emit,) = tt.handle(1, event("task.release", "t1", "w1", attempt=1))
    assert isinstance(emit, Emit)
    assert emit.payload["attempt"] == 2


def test_a_lost_done_is_found_in_the_history_before_the_lease_expires() -> None:
    tt = table()
    offered(tt)
    grant_to(tt, "w1")
    history = [event("task.done", "t1", "w1", result="found", attempt=1)]
    actions = tt.tick(LEASE, lambda task_id: history)
    assert [type(a) for a in actions] == [Finished]
    assert tt.tasks["t1"].result == "found"


def test_retention_forgets_finished_tasks() -> None:
    tt = table(task_retention=60)
    offered(tt)
    grant_to(tt, "w1")
    tt.handle(10, event("task.done", "t1", "w1", result=1, attempt=1))
    assert tt.next_deadline() == 70
    tt.tick(69)
    assert "t1" in tt.tasks
    tt.tick(70)
    assert tt.tasks == {}
    assert tt.next_deadline() is None


def _without_id(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != "task_id"}


def test_restore_rebuilds_finished_claimed_and_open_tasks() -> None:
    src = table()
    log: dict[str, list[ConversationEvent]] = {}

    def record(task_id: str, emit: Emit, t: float) -> None:
        log.setdefault(task_id, []).append(
            event(emit.kind, task_id, "team", emit.parent_id, t, **_without_id(emit.payload))
        )

    for task_id in ("done", "busy", "open", "other"):
        record(task_id, offered(src, task_id), 0.0)
    log["other"] = [event("task.offer", "other", "someone-else", attempt=1, title="x")]
    for task_id, worker in (("done", "w1"), ("busy", "w2")):
        claim = event("task.claim", task_id, worker, "o", 1.0, attempt=1)
        log[task_id].append(claim)
        (grant,) = src.handle(1.0, claim)
        record(task_id, grant, 1.0)  # type: ignore[arg-type]
    log["done"].append(event("task.done", "done", "mallory", t=2.0, result="forged"))
    log["done"].append(event("task.done", "done", "w1", t=3.0, result="real", attempt=1))
    log["busy"].append(event("task.progress", "busy", "w2", t=50.0, message="half", attempt=1))

    restored = table()
    assert restored.restore(100.0, log.items()) == 3
    assert set(restored.tasks) == {"done", "busy", "open"}
    done, busy, open_ = (restored.tasks[k] for k in ("done", "busy", "open"))
    assert done.status == "done"
    assert done.result == "real"
    assert done.finished_at == 3.0
    assert busy.status == "claimed"
    assert busy.assignee is not None
    assert busy.assignee.id == "w2"
    assert busy.lease_expires == 50.0 + LEASE
    assert busy.progress[0]["message"] == "half"
    assert open_.status == "offered"
    assert open_.title == "title"
    assert open_.spec == {"k": 1}
    # The open offer is re-announced at once; restoring again adopts nothing new.
    assert [a.task_id for a in restored.tick(100.0) if isinstance(a, Emit)] == ["open"]
    assert restored.restore(100.0, log.items()) == 0


# -- the worker side ------------------------------------------------------------------------


def offer_event(task_id: str = "t1", attempt: int = 1, team: str = "team") -> ConversationEvent:
    return event("task.offer", task_id, team, attempt=attempt, title="T", spec={})


def test_worker_claims_capable_offers_and_runs_only_its_own_grant() -> None:
    book = ClaimBook("me")
    offer = offer_event()
    assert book.offer(0, offer, capable=False) == []
    (claim,) = book.offer(0, offer, capable=True)
    assert isinstance(claim, Claim)
    assert claim.offer.attempt == 1
    book.claimed("t1", "my-claim")
    grant = event("task.grant", "t1", "team", "my-claim", worker_id="me", attempt=1, lease=30)
    (start,) = book.grant(1, grant)
    assert isinstance(start, Start)
    assert start.lease == 30
    assert start.offer.attempt == 1
    assert book.grant(1, grant) == []  # a duplicate grant starts nothing
    assert set(book.running) == {"t1"}
    assert book.pending == {}


def test_a_forged_grant_does_not_cancel_the_real_claim() -> None:
    book = ClaimBook("me")
    book.offer(0, offer_event(attempt=2), capable=True)
    book.claimed("t1", "c")
    forged = event("task.grant", "t1", "mallory", "c", worker_id="other", attempt=2)
    assert book.grant(1, forged) == []
    assert "t1" in book.pending
    for bad in (1, 0, "2"):  # a stale attempt, or a malformed one
        stale = event("task.grant", "t1", "team", "c", worker_id="other", attempt=bad)
        assert book.grant(1, stale) == []
        assert "t1" in book.pending
    real = event("task.grant", "t1", "team", "c", worker_id="me", attempt=2)
    assert [type(a) for a in book.grant(2, real)] == [Start]


def test_a_grant_to_someone_else_ends_the_claim() -> None:
    book = ClaimBook("me")
    book.offer(0, offer_event(), capable=True)
    book.grant(1, event("task.grant", "t1", "team", "c", worker_id="other", attempt=1))
    assert book.pending == {}


def test_a_reference_grant_without_attempt_answering_an_older_claim_is_ignored() -> None:
    book = ClaimBook("me")
    book.offer(0, offer_event(attempt=1), capable=True)
    book.claimed("t1", "c1")
    book.offer(1, offer_event(attempt=2), capable=True)
    book.claimed("t1", "c2")
    assert book.grant(2, event("task.grant", "t1", "team", "c1", worker_id="me")) == []
    (start,) = book.grant(2, event("task.grant", "t1", "team", "c2", worker_id="me"))
    assert isinstance(start, Start)
    assert start.offer.attempt == 2
    assert start.lease is None


def test_a_newer_attempt_of_a_running_task_cancels_the_stale_run() -> None:
    book = ClaimBook("me")
    book.offer(0, offer_event(), capable=True)
    book.grant(0, event("task.grant", "t1", "team", None, worker_id="me", attempt=1))
    assert book.offer(1, offer_event(attempt=1), capable=True) == []  # re-announcement
    actions = book.offer(2, offer_event(attempt=2), capable=True)
    assert actions[0] == Cancel("t1", 1)
    assert isinstance(actions[1], Claim)


def test_claims_time_out() -> None:
    book = ClaimBook("me", claim_timeout=60)
    book.offer(0, offer_event(), capable=True)
    assert book.next_deadline() == 60
    book.tick(59)
    assert "t1" in book.pending
    book.tick(60)
    assert book.pending == {}
    assert book.next_deadline() is None


def test_max_concurrent_holds_offers_until_a_slot_frees() -> None:
    book = ClaimBook("me", max_concurrent=1)
    assert len(book.offer(0, offer_event("a"), capable=True)) == 1
    assert book.offer(0, offer_event("b"), capable=True) == []
    assert book.offer(0, offer_event("c"), capable=True) == []
    book.grant(0, event("task.grant", "a", "team", None, worker_id="me", attempt=1))
    # "b" was taken by another worker meanwhile: it is not claimed any more.
    book.grant(0, event("task.grant", "b", "team", None, worker_id="other", attempt=1))
    (claim,) = book.finished(5, "a", 1)
    assert isinstance(claim, Claim)
    assert claim.offer.task_id == "c"


def test_restore_from_a_checkpoint_when_offer_and_grant_were_compacted() -> None:
    live = table()
    offered(live)
    grant_to(live, "w1")
    tt_emit = live.checkpoint("t1")
    assert tt_emit is not None
    assert tt_emit.kind == "task.state"
    assert tt_emit.payload["worker_id"] == "w1"
    assert tt_emit.payload["status"] == "claimed"
    # What is left after compaction: the checkpoint and the assignee's recent events.
    left = [
        event("task.state", "t1", "team", t=500.0, **_without_id(tt_emit.payload)),
        event("task.progress", "t1", "w1", t=560.0, message="hb", heartbeat=True, attempt=1),
    ]
    restored = table()
    assert restored.restore(600.0, [("t1", left)]) == 1
    task = restored.tasks["t1"]
    assert task.status == "claimed"
    assert task.title == "title"
    assert task.assignee is not None
    assert task.assignee.id == "w1"
    assert task.lease_expires == 560.0 + LEASE
    (done,) = restored.handle(700.0, event("task.done", "t1", "w1", result="r", attempt=1))
    assert isinstance(done, Finished)
    assert restored.checkpoint("t1") is None  # finished tasks need none
