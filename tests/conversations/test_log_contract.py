"""The conversation log contract, run against both stores under trio and asyncio."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from synapse_p2p.conversations import (
    BaseConversationLog,
    ConversationLog,
    ConversationLogClosed,
    ConversationLogStatistics,
    MemoryConversationLog,
    SqliteConversationLog,
    UnknownCursorError,
)
from synapse_p2p.types import ConversationEvent, NodeKind, Peer
from tests.conversations.log_scripts.logkit import (
    BACKENDS,
    expected_order,
    ids,
    make_event,
    open_log,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
async def log(
    request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str
) -> AsyncIterator[ConversationLog]:
    async with open_log(request.param, tmp_path) as store:
        yield store


def summary_of(cid: str, created_at: float, event_id: str = "summary-1") -> ConversationEvent:
    return make_event(created_at, event_id, cid=cid, kind="summary", payload={"summary": "s"})


async def test_reference_name_and_abc() -> None:
    assert BaseConversationLog is ConversationLog
    assert issubclass(MemoryConversationLog, ConversationLog)
    assert issubclass(SqliteConversationLog, ConversationLog)
    with pytest.raises(TypeError):
        ConversationLog()  # type: ignore[abstract]


async def test_append_is_idempotent(log: ConversationLog) -> None:
    event = make_event(10.0, "e1")
    assert await log.append(event) is True
    assert await log.append(event) is False
    assert await log.append(dataclasses.replace(event, payload={"other": 1})) is False
    assert log.seen("e1")
    assert not log.seen("e2")
    assert log.count("c1") == 1
    assert log.events("c1") == [event]
    stats = log.statistics()
    assert (stats.appends, stats.duplicates, stats.events, stats.conversations) == (1, 2, 1, 1)


async def test_append_many_is_one_commit(log: ConversationLog) -> None:
    await log.append(make_event(1.0, "old"))
    before = log.statistics().commits
    batch = [
        make_event(2.0, "a"),
        make_event(3.0, "b"),
        make_event(4.0, "a"),
        make_event(5.0, "old"),
    ]
    assert await log.append_many(batch) == [True, True, False, False]
    assert log.statistics().commits == before + 1
    assert ids(log.events("c1")) == ["old", "a", "b"]
    assert await log.append_many([]) == []


async def test_invalid_events_store_nothing(log: ConversationLog) -> None:
    with pytest.raises(TypeError):
        await log.append({"event_id": "x"})  # type: ignore[arg-type]
    for bad in (float("nan"), float("inf"), "1.0", True, 10**400):
        with pytest.raises(ValueError, match="created_at"):
            await log.append_many([make_event(1.0, "ok"), make_event(bad, "bad")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="surrogate"):
        await log.append(make_event(1.0, "\ud800"))
    with pytest.raises(TypeError):
        await log.append(make_event(1.0, 42))  # type: ignore[arg-type]
    assert not log.seen("ok")
    assert log.count("c1") == 0


async def test_unknown_conversation_reads(log: ConversationLog) -> None:
    assert log.events("nope") == []
    assert (log.count("nope"), log.last_activity("nope"), log.horizon("nope")) == (0, None, None)
    assert log.conversations() == []
    with pytest.raises(UnknownCursorError):
        log.events("nope", after="x")
    with pytest.raises(ValueError, match="limit"):
        log.events("nope", limit=-1)
    with pytest.raises(TypeError, match="since"):
        log.events("nope", since=float("nan"))
    with pytest.raises(TypeError, match="after"):
        log.events("nope", after=["x"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="conversation_id"):
        log.events(["nope"])  # type: ignore[arg-type]


async def test_order_is_created_at_then_event_id(log: ConversationLog) -> None:
    times = [-5.0, -1e-9, 0.0, -0.0, 0, 0.0, 1e-9, 3, 3.0, 3.0, 1e9, 1.5, 1.5]
    names = ["b", "a", "é", "z", "Z", "é2", "\U0001f600", "aa", "a3", "ab", "m", "x", "w"]
    events = [make_event(t, n) for t, n in zip(times, names, strict=True)]
    random.Random(7).shuffle(events)
    for event in events:
        await log.append(event)
    assert ids(log.events("c1")) == expected_order(events)
    assert log.last_activity("c1") == 1e9


async def test_both_backends_return_the_same_list(tmp_path: Path, anyio_backend: str) -> None:
    rng = random.Random(11)
    events = [
        make_event(rng.choice([-2.0, 0.0, 0.0, 1.0, 1.0, 2.5]), f"id-{rng.randrange(10**6)}")
        for _ in range(300)
    ]
    memory, sqlite = MemoryConversationLog(), SqliteConversationLog(tmp_path / "a.db")
    async with memory, sqlite:
        for chunk in (events[:100], events[100:]):
            assert await memory.append_many(chunk) == await sqlite.append_many(chunk)
        rng.shuffle(events)
        for event in events[:50]:  # duplicates, in another arrival order
            assert await memory.append(event) is await sqlite.append(event) is False
        assert memory.events("c1") == sqlite.events("c1")
        assert ids(memory.events("c1")) == expected_order(
            list({e.event_id: e for e in events}.values())
        )


async def test_since_keeps_later_events_and_zero_means_all(log: ConversationLog) -> None:
    for t, n in [(-3.0, "neg"), (0.0, "zero"), (2.0, "two"), (5.0, "five")]:
        await log.append(make_event(t, n))
    assert ids(log.events("c1")) == ["neg", "zero", "two", "five"]
    assert ids(log.events("c1", since=0.0)) == ["neg", "zero", "two", "five"]
    assert ids(log.events("c1", since=-3.0)) == ["zero", "two", "five"]
    assert ids(log.events("c1", since=2)) == ["five"]
    assert ids(log.events("c1", since=-10.0, limit=2)) == ["neg", "zero"]
    assert ids(log.events("c1", since=1.0, after="neg")) == ["two", "five"]
    assert ids(log.events("c1", since=-10.0, after="two")) == ["five"]
    assert log.events("c1", since=5.0) == []


async def test_paging_10000_events(log: ConversationLog) -> None:
    rng = random.Random(3)
    events = [make_event(float(rng.randrange(-50, 2000)), f"p{i:05d}") for i in range(10_000)]
    rng.shuffle(events)
    assert all(await log.append_many(events))
    everything = log.events("c1")
    assert ids(everything) == expected_order(events)
    for limit, since in ((137, 0.0), (1000, 0.0), (1, 1995.0), (250, 500.0)):
        pages: list[ConversationEvent] = []
        after = None
        while True:
            page = log.events("c1", since=since, limit=limit, after=after)
            assert len(page) <= limit
            pages += page
            if len(page) < limit:
                break
            after = page[-1].event_id
        assert pages == [e for e in everything if since == 0.0 or e.created_at > since]
    assert log.events("c1", limit=0) == []
    assert log.events("c1", after=everything[-1].event_id) == []
    with pytest.raises(UnknownCursorError):
        log.events("c1", after="missing")
    assert log.count("c1") == 10_000


async def test_conversations_newest_activity_first(log: ConversationLog) -> None:
    await log.append(make_event(5.0, "a1", cid="a"))
    await log.append(make_event(9.0, "b1", cid="b"))
    await log.append(make_event(9.0, "c1", cid="c"))
    await log.append(make_event(1.0, "d1", cid="d"))
    assert log.conversations() == ["b", "c", "a", "d"]
    await log.append(make_event(10.0, "a2", cid="a"))
    assert log.conversations() == ["a", "b", "c", "d"]
    assert log.last_activity("a") == 10.0
    assert log.statistics().conversations == 4


async def test_compaction_horizon_refuses_old_events_and_keeps_new(log: ConversationLog) -> None:
    head = make_event(1.0, "head")
    middle = [make_event(float(t), f"m{t}") for t in range(2, 8)]
    tail = [make_event(float(t), f"t{t}") for t in range(8, 11)]
    await log.append_many([head, *middle, *tail])
    await log.compact("c1", [e.event_id for e in middle] + ["unknown"], summary_of("c1", 7.0))
    assert log.horizon("c1") == 7.0
    assert ids(log.events("c1")) == ["head", "summary-1", "t8", "t9", "t10"]
    assert log.count("c1") == 5
    assert log.statistics().events == 5
    assert not log.seen("m3")
    # compacted events never come back; neither do unseen ones at or before the horizon
    assert await log.append(middle[0]) is False
    assert await log.append(make_event(7.0, "late-equal")) is False
    assert await log.append(make_event(-1.0, "late-old")) is False
    assert await log.append_many([make_event(6.5, "x"), make_event(7.5, "y")]) == [False, True]
    assert not log.accepts("c1", "m2", 2.0)
    assert log.accepts("c1", "new", 7.25)
    assert not log.accepts("c1", "t8", 99.0)
    assert log.statistics().refused == 4
    assert await log.append(head) is False  # kept events stay, as duplicates
    # other conversations are unaffected
    assert await log.append(make_event(2.0, "other", cid="c2")) is True
    # the horizon never moves back; a second summary with the same id replaces the first
    await log.compact("c1", ["head"], summary_of("c1", 7.0))
    assert log.horizon("c1") == 7.0
    assert ids(log.events("c1")) == ["summary-1", "y", "t8", "t9", "t10"]
    await log.compact("c1", ["summary-1", "y", "t8"], summary_of("c1", 8.0, "summary-2"))
    assert log.horizon("c1") == 8.0
    assert ids(log.events("c1")) == ["summary-2", "t9", "t10"]


async def test_compaction_rejects_a_foreign_summary(log: ConversationLog) -> None:
    await log.append_many([make_event(1.0, "a"), make_event(1.0, "z", cid="c2")])
    with pytest.raises(ValueError, match="belongs to conversation"):
        await log.compact("c1", ["a"], summary_of("c2", 1.0))
    with pytest.raises(ValueError, match="another conversation"):
        await log.compact("c1", ["a"], summary_of("c1", 1.0, "z"))
    with pytest.raises(TypeError):
        await log.compact("c1", "a", summary_of("c1", 1.0))
    assert ids(log.events("c1")) == ["a"]
    assert log.horizon("c1") is None


async def test_prune_forgets_events_and_horizon(log: ConversationLog) -> None:
    await log.append_many([make_event(float(t), f"e{t}") for t in range(5)])
    await log.append(make_event(1.0, "keep", cid="c2"))
    await log.compact("c1", ["e0", "e1"], summary_of("c1", 1.0))
    await log.prune("c1")
    assert log.events("c1") == []
    assert log.count("c1") == 0
    assert log.horizon("c1") is None
    assert log.last_activity("c1") is None
    assert log.conversations() == ["c2"]
    assert not log.seen("e3")
    assert not log.seen("summary-1")
    assert await log.append(make_event(0.0, "e0")) is True  # forgotten, so accepted again
    await log.prune("never-existed")
    assert log.statistics().events == 2


async def test_payloads_round_trip(log: ConversationLog) -> None:
    payload = {
        "bytes": b"\x00\xff binary",
        "nested": {"list": [1, [2.5, None, True], {"deep": [b"x", "é\U0001f600"]}]},
        "big": 2**63 - 1,
        "neg": -(2**63),
        "float": 0.1,
        "empty": {},
    }
    peer = Peer(id="b" * 64, address="::1", port=1, swarm="s", team="t", kind=NodeKind.BOOTSTRAP)
    event = ConversationEvent(
        "c1", "e1", "task.offer", peer, payload, "parent", 1.25, {"meta": [b"\x01"]}
    )
    await log.append(event)
    [back] = log.events("c1")
    assert back == event
    assert back.peer.to_dict() == peer.to_dict()
    assert type(back.payload["bytes"]) is bytes


async def test_concurrent_appends_are_all_durable(log: ConversationLog) -> None:
    async def writer(task: int) -> None:
        for i in range(20):
            assert await log.append(make_event(float(i), f"t{task:02d}-{i:02d}")) is True

    async def racer(results: list[bool]) -> None:
        results.append(await log.append(make_event(5.0, "contended")))

    results: list[bool] = []
    async with anyio.create_task_group() as tg:
        for task in range(64):
            tg.start_soon(writer, task)
        for _ in range(50):
            tg.start_soon(racer, results)
    assert results.count(True) == 1
    assert len(results) == 50
    assert log.count("c1") == 64 * 20 + 1
    stats = log.statistics()
    assert stats.appends == 64 * 20 + 1
    assert stats.duplicates == 49
    if isinstance(log, SqliteConversationLog):
        assert stats.commits < 64 * 20 / 4  # appends shared commits


async def test_a_cancelled_append_is_stored(log: ConversationLog) -> None:
    with anyio.CancelScope() as scope:
        scope.cancel()
        assert await log.append(make_event(1.0, "cancelled-before")) is True
    assert log.seen("cancelled-before")

    async def append(name: str) -> None:
        await log.append(make_event(2.0, name))

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(append, f"in-flight-{i}")
        await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert all(log.seen(f"in-flight-{i}") for i in range(10))

    with anyio.CancelScope() as scope:
        scope.cancel()
        await log.compact("c1", ["cancelled-before"], summary_of("c1", 1.0))
    assert log.horizon("c1") == 1.0


async def test_statistics_are_a_frozen_snapshot(log: ConversationLog) -> None:
    stats = log.statistics()
    assert isinstance(stats, ConversationLogStatistics)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.events = 3  # type: ignore[misc]
    await log.append(make_event(1.0))
    assert stats.events == 0
    assert log.statistics().events == 1


async def test_closed_log_refuses_everything(log: ConversationLog) -> None:
    await log.append(make_event(1.0, "a"))
    await log.aclose()
    await log.aclose()  # idempotent
    with pytest.raises(ConversationLogClosed):
        await log.append(make_event(2.0, "b"))
    with pytest.raises(ConversationLogClosed):
        await log.compact("c1", [], summary_of("c1", 1.0))
    with pytest.raises(ConversationLogClosed):
        log.events("c1")
    with pytest.raises(ConversationLogClosed):
        log.seen("a")
    assert log.statistics().events == 0
