"""Conversation decisions, driven directly (sans-IO): sync pages, digests, compaction,
retention; the broadcast book and when a broadcast is over."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from synapse_p2p import BroadcastReply, ConversationEvent, Peer
from synapse_p2p.conversations import BroadcastStatus
from synapse_p2p.conversations._broadcasts import BroadcastBook
from synapse_p2p.conversations._plans import (
    DIGEST_SIZE,
    LEGACY_SYNC_BYTES,
    SYNC_PAGE_BYTES,
    build_digest,
    expired_conversations,
    plan_compaction,
    stale_conversations,
    sync_page,
)
from synapse_p2p.wire import pack

PEER = Peer("author", "10.0.0.1", 1)


def event(i: int, kind: str = "message", size: int = 0) -> ConversationEvent:
    return ConversationEvent("c", f"e{i:05d}", kind, PEER, {"x": "y" * size}, created_at=float(i))


@given(st.integers(0, 120), st.integers(1, 50))
def test_paging_returns_every_event_once_in_order(count: int, page: int) -> None:
    events = [event(i) for i in range(count)]
    got: list[str] = []
    after: str | None = None
    for _ in range(count + 2):
        start = 0 if after is None else [e.event_id for e in events].index(after) + 1
        window = events[start : start + page + 1]  # what the log returns for limit=page+1
        reply = sync_page(window, page=page, after=after, size_of=lambda d: len(pack(d)))
        got += [d["event_id"] for d in reply["events"]]
        assert len(reply["events"]) <= page
        if not reply["more"]:
            break
        after = reply["next"]
    assert got == [e.event_id for e in events]


def test_an_empty_page_keeps_the_cursor() -> None:
    reply = sync_page([], page=10, after="e00007", size_of=len)
    assert reply == {"events": [], "more": False, "next": "e00007"}


def test_unpaged_answers_stop_before_the_legacy_byte_budget() -> None:
    events = [event(i, size=100_000) for i in range(40)]
    reply = sync_page(events, page=None, after=None, size_of=lambda d: len(pack(d)))
    assert "more" not in reply
    assert 0 < len(reply["events"]) < 40
    assert sum(len(pack(d)) for d in reply["events"]) <= LEGACY_SYNC_BYTES


def test_paged_answers_stop_at_the_page_byte_budget() -> None:
    """A page stays under the RPC layer's threshold for decoding in a thread (inline decode),
    and carries one event at least, however large: paging always moves on."""

    def size(data: dict[str, Any]) -> int:
        return len(pack(data))

    events = [event(i, size=2_000) for i in range(100)]
    reply = sync_page(events, page=500, after=None, size_of=size)
    assert reply["more"] is True
    assert 10 < len(reply["events"]) < 100
    assert sum(size(d) for d in reply["events"]) <= SYNC_PAGE_BYTES
    assert reply["next"] == reply["events"][-1]["event_id"]
    huge = [event(i, size=SYNC_PAGE_BYTES) for i in range(3)]
    reply = sync_page(huge, page=500, after=None, size_of=size)
    assert [d["event_id"] for d in reply["events"]] == ["e00000"]
    assert reply["more"] is True


def test_digest_and_what_is_stale() -> None:
    counts = {"a": 3, "b": 5}
    mine = build_digest(["a", "b"], counts.__getitem__, {"a": 10.0, "b": None}.__getitem__)
    assert mine == {"a": [3.0, 10.0], "b": [5.0, 0.0]}
    theirs: Any = {
        "a": [3, 10.0],  # same: nothing to do
        "b": [6, 0.0],  # more events
        "c": [1, 1.0],  # unknown to us
        "d": [1, True],  # malformed
        "e": "x",
        7: [1, 1],
    }
    assert stale_conversations(mine, theirs) == ["b", "c"]
    assert stale_conversations(mine, ["not", "a", "map"]) == []
    many = {f"c{i}": [1, 1.0] for i in range(DIGEST_SIZE + 10)}
    assert len(stale_conversations({}, many)) == DIGEST_SIZE


@given(st.integers(0, 40), st.integers(0, 45), st.booleans())
def test_compaction_keeps_the_opening_event_and_the_recent_ones(
    count: int, keep: int, opens_with_summary: bool
) -> None:
    events = [event(i, "summary" if i == 0 and opens_with_summary else "message")
              for i in range(count)]  # fmt: skip
    plan = plan_compaction(events, keep)
    if events and not opens_with_summary:
        assert plan.head is events[0]
        body = events[1:]
    else:
        assert plan.head is None
        body = events
    kept = body[len(plan.fold) :]
    assert plan.fold == body[: len(plan.fold)]
    assert len(kept) == (min(keep, len(body)) if keep else 0)


def test_retention_expires_quiet_conversations_only() -> None:
    last = {"old": 10.0, "new": 100.0, "empty": None}
    assert expired_conversations(last, last.__getitem__, 50.0) == ["old"]


def test_the_book_is_bounded_and_keeps_recent_nonces() -> None:
    book = BroadcastBook(max_broadcasts=3, max_replies=2)
    for nonce in "abcd":
        book.state(nonce)
    assert book.nonces() == ["b", "c", "d"]
    book.state("b")  # used again: most recent
    book.state("e")
    assert book.nonces() == ["d", "b", "e"]
    assert book.add_reply(BroadcastReply("e", Peer("p1", "h", 1), 1))
    assert not book.add_reply(BroadcastReply("e", Peer("p1", "h", 1), 2))  # once per peer
    assert book.add_reply(BroadcastReply("e", Peer("p2", "h", 1), 3))
    assert not book.add_reply(BroadcastReply("e", Peer("p3", "h", 1), 4))  # full
    state = book.get("e")
    assert state is not None
    assert [r.result for r in state.replies] == [1, 3]


def test_every_change_wakes_waiters() -> None:
    book = BroadcastBook()
    state = book.state("n")
    first = state.changed
    book.add_ack("n", "p")
    assert first.is_set()
    assert not state.changed.is_set()
    second = state.changed
    book.member_gone("p")
    assert second.is_set()
    third = state.changed
    book.drop("n")
    assert third.is_set()
    assert book.get("n") is None


def status(pending: set[str], acked: set[str], replied: set[str], failed: set[str],
           members: set[str]) -> BroadcastStatus:  # fmt: skip
    book = BroadcastBook()
    state = book.state("n")
    state.pending |= pending
    state.acked |= acked
    state.replied |= replied
    state.failed |= failed
    return BroadcastStatus.of(state, members)


def test_when_a_broadcast_is_over() -> None:
    everyone = {"a", "b", "c"}
    assert not status(set(), set(), set(), set(), everyone).over  # nobody took it yet
    assert not status({"c"}, {"a"}, {"a"}, set(), everyone).over  # a call still out
    assert not status(set(), {"a", "b"}, {"a"}, set(), everyone).over  # b still working
    assert status(set(), {"a", "b"}, {"a"}, {"b"}, everyone).over  # b failed
    gone = status(set(), {"a", "b"}, {"a"}, set(), {"a"})  # b left without answering
    assert gone.over
    assert gone.gone == {"b"}
    assert gone.working == frozenset()


@given(*(st.sets(st.sampled_from("abcde")) for _ in range(5)))
def test_over_matches_its_definition(
    pending: set[str], acked: set[str], replied: set[str], failed: set[str], members: set[str]
) -> None:
    s = status(pending, acked, replied, failed, members)
    expected = (
        not pending
        and bool(acked)
        and all(p in replied or p in failed or p not in members for p in acked)
    )
    assert s.over == expected
