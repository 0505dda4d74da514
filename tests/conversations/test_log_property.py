"""Property: any sequence of appends, compactions and prunes leaves both stores identical."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synapse_p2p.conversations import (
    ConversationLog,
    MemoryConversationLog,
    SqliteConversationLog,
)
from synapse_p2p.types import ConversationEvent
from tests.conversations.log_scripts.logkit import expected_order, ids, make_event

CIDS = ["a", "b"]
# Few ids and timestamps, so duplicates (also across conversations) and ties are common; ids
# mix ASCII, Latin-1 and astral code points to exercise the code-point order.
IDS = [f"{p}{n}" for p in ("e", "E", "é", "\U0001f600") for n in range(4)]
TIMES = [-1.0, -0.0, 0.0, 0.5, 1, 1.0, 2.0, 3.5]


@dataclass(frozen=True)
class Append:
    events: tuple[ConversationEvent, ...]
    many: bool


@dataclass(frozen=True)
class Compact:
    cid: str
    picks: tuple[int, ...]  # indexes into the conversation's current events
    summary: ConversationEvent


@dataclass(frozen=True)
class Prune:
    cid: str


events_st = st.builds(
    lambda cid, eid, t: make_event(t, eid, cid=cid, payload={"t": t, "b": eid.encode()}),
    st.sampled_from(CIDS),
    st.sampled_from(IDS),
    st.sampled_from(TIMES),
)
ops_st = st.lists(
    st.one_of(
        st.builds(Append, st.lists(events_st, min_size=1, max_size=6).map(tuple), st.booleans()),
        st.builds(
            Compact,
            st.sampled_from(CIDS),
            st.lists(st.integers(0, 12), max_size=6).map(tuple),
            st.builds(
                lambda cid, sid, t: make_event(t, sid, cid=cid, kind="summary"),
                st.sampled_from(CIDS),
                st.sampled_from(["s1", "s2", *IDS[:2]]),
                st.sampled_from(TIMES),
            ),
        ),
        st.builds(Prune, st.sampled_from(CIDS)),
    ),
    max_size=25,
)


async def apply(log: ConversationLog, op: Append | Compact | Prune) -> object:
    try:
        if isinstance(op, Append):
            if op.many:
                return await log.append_many(op.events)
            return [await log.append(event) for event in op.events]
        if isinstance(op, Compact):
            current = ids(log.events(op.cid))
            removed = [current[i] for i in op.picks if i < len(current)]
            await log.compact(op.cid, removed, op.summary)
            return removed
        await log.prune(op.cid)
        return None
    except ValueError as exc:
        return type(exc)


def observe(log: ConversationLog) -> object:
    stats = log.statistics()
    return (
        {c: (log.events(c), log.count(c), log.horizon(c), log.last_activity(c)) for c in CIDS},
        log.conversations(),
        [log.seen(i) for i in IDS],
        (stats.conversations, stats.events, stats.appends, stats.duplicates, stats.refused),
    )


@pytest.mark.anyio
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=ops_st)
async def test_memory_and_sqlite_stay_identical(anyio_backend: str, ops: list[object]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # durability is not what this property is about: skip the fsyncs to keep it quick
        sqlite = SqliteConversationLog(Path(tmp) / "p.db", synchronous="OFF")
        async with MemoryConversationLog() as memory, sqlite:
            for op in ops:
                assert isinstance(op, Append | Compact | Prune)
                horizons = {cid: memory.horizon(cid) for cid in CIDS}
                seen = {i for i in IDS if memory.seen(i)}
                result = await apply(memory, op)
                assert result == await apply(sqlite, op), op
                assert observe(memory) == observe(sqlite), op
                if isinstance(op, Append):  # the model of append: new and after the horizon
                    assert isinstance(result, list)
                    for event, stored in zip(op.events, result, strict=True):
                        horizon = horizons[event.conversation_id]
                        new = event.event_id not in seen
                        assert stored == (new and (horizon is None or event.created_at > horizon))
                        if stored:
                            seen.add(event.event_id)
                for cid in CIDS:
                    assert ids(memory.events(cid)) == expected_order(memory.events(cid))
