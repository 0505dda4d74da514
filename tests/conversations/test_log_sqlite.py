"""What only the SQLite log does: files, restarts, failures, threads, the 2.x format."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from synapse_p2p.conversations import (
    ConversationLogClosed,
    ConversationLogError,
    SqliteConversationLog,
)
from tests.conversations.log_scripts.logkit import ids, make_event
from tests.interop.refenv import ref_python  # noqa: F401  (fixture)

SCRIPTS = Path(__file__).resolve().parent / "log_scripts"


def summary_of(cid: str, created_at: float, event_id: str = "summary-1"):  # type: ignore[no-untyped-def]
    return make_event(created_at, event_id, cid=cid, kind="summary", payload={"summary": "s"})


@pytest.mark.anyio
async def test_restart_keeps_events_horizons_and_order(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with SqliteConversationLog(path) as log:
        await log.append_many([make_event(float(t), f"e{t}") for t in range(10)])
        await log.append_many([make_event(5.0, "b1", cid="b"), make_event(20.0, "z", cid="z")])
        await log.compact("c1", ["e1", "e2", "e3"], summary_of("c1", 3.0))
        before = {cid: log.events(cid) for cid in log.conversations()}
        order = log.conversations()
        stats = log.statistics()
    async with SqliteConversationLog(path) as log:
        assert log.conversations() == order == ["z", "c1", "b"]
        assert {cid: log.events(cid) for cid in order} == before
        assert log.horizon("c1") == 3.0
        assert log.horizon("b") is None
        assert (log.count("c1"), log.last_activity("c1")) == (8, 9.0)
        assert await log.append(make_event(2.0, "e2")) is False  # still refused
        assert await log.append(make_event(3.5, "new")) is True
        assert log.statistics().events == stats.events + 1


@pytest.mark.anyio
async def test_file_is_wal_with_full_sync_and_ordered_index(tmp_path: Path) -> None:
    async with SqliteConversationLog(tmp_path / "log.db") as log:
        await log.append(make_event(1.0))
        assert log._writer is not None
        assert log._writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        raw = sqlite3.connect(tmp_path / "log.db")
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = raw.execute("PRAGMA index_info(conversation_events_order)").fetchall()
        assert [c[2] for c in columns] == ["conversation_id", "created_at", "event_id"]
        raw.close()


def test_constructor_validates_its_arguments(tmp_path: Path) -> None:
    for kwargs, name in [
        ({"batch_window": -1}, "batch_window"),
        ({"batch_window": float("nan")}, "batch_window"),
        ({"max_batch": 0}, "max_batch"),
        ({"synchronous": "SOMETIMES"}, "synchronous"),
        ({"busy_timeout": -2}, "busy_timeout"),
    ]:
        with pytest.raises(ValueError, match=name):
            SqliteConversationLog(tmp_path / "x.db", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path"):
        SqliteConversationLog(":memory:")
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConversationLogError, match="cannot open"):
        SqliteConversationLog(tmp_path / "junk.db")


@pytest.mark.anyio
async def test_unreadable_rows_are_skipped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with SqliteConversationLog(tmp_path / "log.db") as log:
        await log.append_many([make_event(float(t), f"e{t}") for t in range(6)])
        raw = sqlite3.connect(tmp_path / "log.db")
        raw.execute("UPDATE conversation_events SET data = x'c1ff00' WHERE event_id = 'e1'")
        raw.execute("UPDATE conversation_events SET data = 'text' WHERE event_id = 'e2'")
        raw.commit()
        raw.close()
        with caplog.at_level(logging.WARNING, logger="synapse_p2p.conversations._sqlite"):
            assert ids(log.events("c1")) == ["e0", "e3", "e4", "e5"]
        assert "e1" in caplog.text
        assert "e2" in caplog.text
        assert ids(log.events("c1", limit=2)) == ["e0", "e3"]  # the page is refilled
        assert ids(log.events("c1", after="e0", limit=1)) == ["e3"]
        assert log.seen("e1")  # the row is still there: dedup and the horizon still hold


@pytest.mark.anyio
async def test_a_failed_commit_stores_nothing_and_the_log_recovers(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with SqliteConversationLog(path, busy_timeout=0.05) as log:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock

        async def append(name: str, errors: list[BaseException]) -> None:
            try:
                await log.append(make_event(1.0, name))
            except ConversationLogError as exc:
                errors.append(exc)

        errors: list[BaseException] = []
        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(append, f"lost-{i}", errors)
        assert len(errors) == 5
        assert "locked" in str(errors[0])
        with pytest.raises(ConversationLogError):
            await log.prune("c1")
        other.execute("ROLLBACK")
        other.close()
        assert not any(log.seen(f"lost-{i}") for i in range(5))
        assert await log.append(make_event(1.0, "lost-0")) is True


@pytest.mark.anyio
async def test_an_unencodable_event_fails_alone(tmp_path: Path) -> None:
    async with SqliteConversationLog(tmp_path / "log.db") as log:
        results: dict[str, object] = {}

        async def append(name: str, payload: dict[str, Any]) -> None:
            try:
                results[name] = await log.append(make_event(1.0, name, payload=payload))
            except TypeError as exc:
                results[name] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(append, "good-1", {"x": 1})
            tg.start_soon(append, "bad", {"x": object()})
            tg.start_soon(append, "good-2", {"x": 2})
        assert results["good-1"] is True
        assert results["good-2"] is True
        assert isinstance(results["bad"], TypeError)
        assert not log.seen("bad")
        with pytest.raises(TypeError):
            await log.append_many(
                [make_event(2.0, f"m{i}") for i in range(100)]
                + [make_event(3.0, "bad", payload={"x": {1, 2}})]
            )
        assert log.count("c1") == 2


@pytest.mark.anyio
async def test_writes_do_not_block_the_event_loop(tmp_path: Path) -> None:
    ticks = 0
    done = anyio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.sleep(0.001)

    async with SqliteConversationLog(tmp_path / "log.db") as log:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await anyio.sleep(0)
            start = ticks
            await log.append_many([make_event(float(i), payload={"i": i}) for i in range(20_000)])
            during = ticks - start
            done.set()
        assert during >= 10  # the loop kept running while the batch was encoded and written
        assert log.count("c1") == 20_000


@pytest.mark.anyio
async def test_max_batch_splits_transactions(tmp_path: Path) -> None:
    async with SqliteConversationLog(tmp_path / "log.db", max_batch=4) as log:
        before = log.statistics().commits
        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(log.append, make_event(1.0, f"e{i:02d}"))
        assert log.count("c1") == 40
        assert log.statistics().commits - before >= 10


def test_one_log_under_successive_event_loops(tmp_path: Path) -> None:
    log = SqliteConversationLog(tmp_path / "log.db")

    async def use(name: str) -> None:
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(log.append, make_event(float(i), f"{name}-{i}"))

    anyio.run(use, "trio", backend="trio")
    anyio.run(use, "asyncio", backend="asyncio")
    anyio.run(use, "trio-again", backend="trio")
    assert log.count("c1") == 60
    log.close()
    with pytest.raises(ConversationLogClosed):
        log.count("c1")


@pytest.mark.interop
@pytest.mark.anyio
async def test_a_2x_log_file_is_imported(tmp_path: Path, ref_python: Path) -> None:  # noqa: F811
    path = tmp_path / "legacy.db"
    done = subprocess.run(
        [str(ref_python), str(SCRIPTS / "ref_legacy_log.py"), str(path)],
        capture_output=True,
        text=True,
        cwd=SCRIPTS,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        check=True,
    )
    reference = json.loads(done.stdout)
    async with SqliteConversationLog(path) as log:
        for cid in ("c1", "c2"):
            assert [e.to_dict() for e in log.events(cid)] == reference[cid]
        assert ids(log.events("c1")) == ["e0", "s1", "e6", "e7", "e8", "e9"]
        assert log.horizon("c1") == 6.0
        assert log.horizon("c2") is None
        assert log.conversations() == ["c1", "c2"]
        assert await log.append(make_event(5.0, "e4")) is False
        assert await log.append(make_event(6.5, "after")) is True
    raw = sqlite3.connect(path)
    tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "events" not in tables
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
    raw.close()
