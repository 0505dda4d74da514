"""The dashboard's sans-IO model: node events in, JSON deltas out."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from typing import Any

import pytest

from synapse_p2p.dashboard import DashboardState, Limits
from synapse_p2p.types import ConversationEvent, Peer

SELF = "f" * 64
_ids = itertools.count()


def peer(name: str, caps: list[str] | None = None) -> Peer:
    return Peer(id=name * 8, address="127.0.0.1", port=9000, name=name, capabilities=caps or [])


def event(
    cid: str, kind: str, author: Peer, payload: dict[str, Any] | None = None, at: float = 0.0
) -> ConversationEvent:
    n = next(_ids)
    return ConversationEvent(
        conversation_id=cid,
        event_id=f"e{n}",
        kind=kind,
        peer=author,
        payload=payload or {},
        created_at=at or 1000.0 + n,
    )


def ask(cid: str, author: Peer, text: str) -> ConversationEvent:
    return event(cid, "message", author, {"endpoint": "synapse.ask", "args": [text], "kwargs": {}})


def test_peers_join_turn_suspect_offline_and_back() -> None:
    state = DashboardState(SELF, suspect_after=10)
    alice = peer("alice", ["math"])
    state.peer_seen(alice, now=0)
    delta = state.drain()
    assert delta is not None
    assert [(p["name"], p["status"], p["capabilities"]) for p in delta["peers"]] == [
        ("alice", "alive", ["math"])
    ]
    assert delta["peers"][0]["verified"] is False  # the record says nothing proved
    assert delta["peers"][0]["path"] == "direct"
    assert state.drain() is None  # nothing new

    state.tick(now=5)
    assert state.drain() is None
    state.tick(now=11)
    delta = state.drain()
    assert delta is not None
    assert delta["peers"][0]["status"] == "suspect"

    state.peer_offline(alice, now=12)
    delta = state.drain()
    assert delta is not None
    assert delta["peers"][0]["status"] == "offline"

    state.peer_seen(alice, now=13)
    delta = state.drain()
    assert delta is not None
    assert delta["peers"][0]["status"] == "alive"


def test_a_heartbeat_alone_sends_last_seen_not_the_peer() -> None:
    state = DashboardState(SELF)
    alice = peer("alice", ["math"])
    state.peer_seen(alice, now=0)
    state.drain()
    # A heartbeat changes only last_seen: a small "seen" entry, the peer's view is not resent
    # (a page redraws its peers for views, not for "seen").
    state.peer_seen(replace(alice, last_seen=alice.last_seen + 5), now=1)
    delta = state.drain()
    assert delta is not None
    assert delta["peers"] == []
    assert delta["seen"] == {alice.id: alice.last_seen + 5}
    assert state.drain() is None
    # What the page shows does change the view, `verified` included.
    state.peer_seen(replace(alice, last_seen=alice.last_seen + 6, verified=True), now=2)
    delta = state.drain()
    assert delta is not None
    assert [(p["name"], p["verified"]) for p in delta["peers"]] == [("alice", True)]
    assert delta["seen"] == {}
    assert state.snapshot()["peers"][0]["last_seen"] == alice.last_seen + 6


def test_evidence_from_the_node_keeps_a_quiet_peer_alive() -> None:
    """In a large swarm a member rarely calls the observer itself; what the node heard of it
    (first hand or gossiped) counts."""
    state = DashboardState(SELF, suspect_after=10)
    alice = peer("alice")
    state.peer_seen(alice, now=0)
    state.drain()
    state.peer_heard(alice.id, 9)
    state.tick(now=15)
    assert state.peers[alice.id].status == "alive"
    assert state.drain() is None
    state.tick(now=20)
    assert state.peers[alice.id].status == "suspect"
    state.peer_heard(alice.id, 5)  # older news changes nothing
    state.tick(now=20.5)
    assert state.peers[alice.id].status == "suspect"
    state.peer_heard(alice.id, 20.5)  # heard again: alive without a heartbeat of its own
    state.tick(now=21)
    delta = state.drain()
    assert delta is not None
    assert [p["status"] for p in delta["peers"]] == ["alive"]
    state.peer_offline(alice, now=22)
    state.peer_heard(alice.id, 23)  # offline stays offline until it joins again
    state.tick(now=24)
    assert state.peers[alice.id].status == "offline"
    state.peer_heard("unknown" * 9, 23)  # a peer the dashboard does not show: ignored
    assert "unknown" * 9 not in state.peers


def test_news_of_a_quiet_peer_moves_its_last_seen() -> None:
    """The node's ``last_seen`` of a member (its latest news, gossiped or first hand) goes
    to pages as a small ``seen`` entry, never backwards."""
    state = DashboardState(SELF, suspect_after=10)
    alice = peer("alice")
    state.peer_seen(alice, now=0)
    state.drain()
    state.peer_heard(alice.id, 4, alice.last_seen + 4)
    delta = state.drain()
    assert delta is not None
    assert delta["seen"] == {alice.id: alice.last_seen + 4}
    assert delta["peers"] == []
    state.peer_heard(alice.id, 5, alice.last_seen + 2)  # older: nothing to send
    state.peer_heard(alice.id, 5, None)
    assert state.drain() is None
    assert state.snapshot()["peers"][0]["last_seen"] == alice.last_seen + 4


def test_links_pushed_out_are_removed_from_pages() -> None:
    state = DashboardState(SELF, limits=Limits(links=2))
    asker, a, b, c = peer("asker"), peer("a"), peer("b"), peer("c")
    state.event(ask("q1", asker, "first"))
    for who in (a, b):
        state.event(event("q1", "ack", who))
    delta = state.drain()
    assert delta is not None
    assert delta["links_removed"] == []
    state.event(event("q1", "ack", c))  # a third link: the oldest one goes
    delta = state.drain()
    assert delta is not None
    assert delta["links_removed"] == [sorted([asker.id, a.id])]
    assert {(lk["a"], lk["b"]) for lk in state.snapshot()["links"]} == {
        tuple(sorted([asker.id, b.id])),
        tuple(sorted([asker.id, c.id])),
    }
    state.event(event("q1", "reply", a))  # back again: no longer removed
    delta = state.drain()
    assert delta is not None
    assert delta["links_removed"] == [sorted([asker.id, b.id])]
    assert sorted([asker.id, a.id]) in [[lk["a"], lk["b"]] for lk in delta["links"]]


def test_self_is_not_a_peer_and_offline_peers_are_forgotten() -> None:
    state = DashboardState(SELF, limits=Limits(offline_retention=60))
    state.peer_seen(Peer(id=SELF, address="127.0.0.1", port=1), now=0)
    assert state.peers == {}
    bob = peer("bob")
    state.peer_seen(bob, now=0)
    state.peer_offline(bob, now=1)
    state.drain()
    state.tick(now=100)
    delta = state.drain()
    assert delta is not None
    assert delta["peers_removed"] == [bob.id]
    assert bob.id not in state.snapshot()["peers"]


def test_role_from_node_info() -> None:
    state = DashboardState(SELF)
    carol = peer("carol")
    state.peer_seen(carol, now=0)
    assert state.snapshot()["peers"][0]["role"] is None  # not known yet
    state.peer_info(carol.id, {"role": "reviewer"})
    assert state.snapshot()["peers"][0]["role"] == "reviewer"
    state.peer_info("nobody", {"role": "x"})  # unknown peer: ignored


def test_ask_progress_acks_replies_errors_and_working() -> None:
    state = DashboardState(SELF)
    you, a, b, c = peer("you"), peer("a"), peer("b"), peer("c")
    state.event(ask("k1", you, "review this"))
    for who in (a, b, c):
        state.event(event("k1", "ack", who))
    state.event(event("k1", "reply", a, {"result": "LGTM"}))
    state.event(event("k1", "error", c, {"error": "boom"}))
    delta = state.drain()
    assert delta is not None
    (progress,) = delta["asks"]
    assert progress["title"] == "review this"
    assert progress["acked"] == [a.id, b.id, c.id]
    assert progress["replied"] == [a.id]
    assert progress["errors"] == [c.id]
    assert progress["working"] == [b.id]
    assert progress["counts"] == {"acked": 3, "replied": 1, "errors": 1, "working": 1}
    assert [r["label"] for r in delta["events"]] == ["ask", "ack", "ack", "ack", "reply", "error"]
    assert {(f["from"], f["to"], f["kind"]) for f in delta["flows"]} >= {(you.id, a.id, "reply")}
    assert {(lk["a"], lk["b"]) for lk in delta["links"]} == {
        tuple(sorted((you.id, x.id))) for x in (a, b, c)
    }
    json.dumps(delta)  # JSON-ready


def test_ask_view_lists_are_capped_counts_are_exact() -> None:
    state = DashboardState(SELF)
    state.event(ask("big", peer("you"), "everyone"))
    for i in range(120):
        state.event(event("big", "ack", Peer(id=f"{i:064x}", address="127.0.0.1", port=1)))
    view = state.asks["big"].view()
    assert len(view["acked"]) == len(view["working"]) == 50
    assert view["counts"]["acked"] == view["counts"]["working"] == 120


def test_acks_before_the_ask_still_count() -> None:
    state = DashboardState(SELF)
    you, a = peer("you"), peer("a")
    state.event(event("k2", "ack", a, at=2000.0))
    state.event(ask("k2", you, "late ask"))
    assert state.asks["k2"].view()["acked"] == [a.id]
    assert state.conversations["k2"].kind == "ask"


def test_duplicates_are_ignored() -> None:
    state = DashboardState(SELF)
    e = ask("k3", peer("you"), "once")
    state.event(e)
    state.event(e)
    assert state.conversations["k3"].count == 1
    assert state.events_seen == 1


def test_custom_kinds_and_summaries_in_the_timeline() -> None:
    state = DashboardState(SELF)
    you = peer("you")
    state.event(event("c", "note", you, {"text": "hello"}))
    state.compacted(event("c", "summary", you, {"summary": "they talked"}))
    rows = state.timeline("c")
    assert rows is not None
    assert [(r["kind"], r["label"]) for r in rows] == [("note", "event"), ("summary", "summary")]
    assert "hello" in rows[0]["text"]
    assert rows[1]["text"] == "they talked"
    assert state.timeline("nope") is None


def test_bounded_conversations_and_timelines() -> None:
    limits = Limits(conversations=5, events_per_conversation=3, events_per_delta=4)
    state = DashboardState(SELF, limits=limits)
    you = peer("you")
    for i in range(20):
        state.event(ask(f"c{i}", you, f"q{i}"))
        for _ in range(10):
            state.event(event(f"c{i}", "ack", peer("a")))
    assert list(state.conversations) == [f"c{i}" for i in range(15, 20)]
    assert len(state.asks) == 5
    assert all(len(c.events) == 3 and len(c.seen) == 3 for c in state.conversations.values())
    assert state.conversations["c19"].count == 11
    state.event(event("c0", "ack", peer("late")))  # a late event of a forgotten conversation
    assert "c0" not in state.conversations
    delta = state.drain()
    assert delta is not None
    assert "c0" in delta["conversations_removed"]
    assert [r["cid"] for r in delta["events"]] == ["c19"] * 4  # the newest only


def test_pruned_conversation_is_forgotten() -> None:
    state = DashboardState(SELF)
    state.event(ask("gone", peer("you"), "x"))
    state.drain()
    state.pruned("gone")
    delta = state.drain()
    assert delta is not None
    assert delta["conversations_removed"] == ["gone"]
    assert "gone" not in state.asks


def offer(tid: str, team: Peer, attempt: int = 1) -> ConversationEvent:
    payload = {"task_id": tid, "title": "build it", "spec": {}, "requires": [], "attempt": attempt}
    return event(tid, "task.offer", team, payload)


def test_team_task_moves_across_the_board() -> None:
    state = DashboardState(SELF)
    team, w1, w2 = peer("team"), peer("w1"), peer("w2")
    statuses = []

    def step(e: ConversationEvent) -> None:
        state.event(e)
        statuses.append(state.tasks["t"]["status"])

    step(offer("t", team))
    step(event("t", "task.claim", w1, {"task_id": "t", "attempt": 1}))
    grant = {"task_id": "t", "worker_id": w1.id, "worker_name": "w1", "attempt": 1, "lease": 30}
    step(event("t", "task.grant", team, grant, at=5000.0))
    assert state.tasks["t"]["lease_until"] == 5030.0
    step(event("t", "task.progress", w1, {"task_id": "t", "message": "half way", "attempt": 1}))
    assert state.tasks["t"]["progress"] == "half way"
    step(event("t", "task.progress", w2, {"task_id": "t", "message": "forged", "attempt": 1}))
    assert state.tasks["t"]["progress"] == "half way"  # not the assignee: ignored
    step(offer("t", team, attempt=2))  # lease expired: re-offered
    assert state.tasks["t"]["worker"] is None
    step(event("t", "task.done", w1, {"task_id": "t", "result": 1, "attempt": 1}))  # stale
    grant2 = {**grant, "worker_id": w2.id, "worker_name": "w2", "attempt": 2}
    step(event("t", "task.grant", team, grant2))
    step(event("t", "task.done", w2, {"task_id": "t", "result": {"ok": 1}, "attempt": 2}))
    step(event("t", "task.failed", w2, {"task_id": "t", "error": "late", "attempt": 2}))
    assert statuses == [
        "offered",
        "claimed",
        "granted",
        "in progress",
        "in progress",
        "re-offered",
        "re-offered",
        "granted",
        "done",
        "done",
    ]
    task = state.tasks["t"]
    assert (task["attempt"], task["worker_name"], task["lease_until"]) == (2, "w2", None)
    assert state.conversations["t"].kind == "task"


@pytest.mark.parametrize("status", ["offered", "claimed", "done", "failed"])
def test_task_state_checkpoint(status: str) -> None:
    state = DashboardState(SELF)
    payload = {"task_id": "t", "title": "restored", "attempt": 3, "status": status}
    state.event(event("t", "task.state", peer("team"), payload))
    task = state.tasks["t"]
    assert task["status"] == ("granted" if status == "claimed" else status)
    assert (task["title"], task["attempt"]) == ("restored", 3)


def test_malformed_payloads_do_not_break_the_model() -> None:
    state = DashboardState(SELF)
    bad = peer("bad")
    state.event(event("x", "message", bad, {"endpoint": 5, "args": "notalist"}))
    state.event(event("t", "task.grant", bad, {"task_id": "t", "lease": "soon", "attempt": True}))
    state.event(event("t", "task.offer", bad, {"task_id": "other"}))  # names another task
    state.event(event("y", "reply", bad, {"result": object()}))
    json.dumps(state.snapshot(), default=str)
    assert state.tasks["t"]["lease_until"] is None


def test_snapshot_has_everything() -> None:
    state = DashboardState(SELF)
    state.peer_seen(peer("a"), now=0)
    state.event(ask("k", peer("you"), "hi"))
    state.event(offer("t", peer("team")))
    snap = state.snapshot()
    assert snap["type"] == "snapshot"
    assert snap["self"] == SELF
    assert {c["id"] for c in snap["conversations"]} == {"k", "t"}
    assert [a["id"] for a in snap["asks"]] == ["k"]
    assert [t["id"] for t in snap["tasks"]] == ["t"]
    assert snap["events_seen"] == 2
