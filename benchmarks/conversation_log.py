"""SQLite conversation log benchmark: appends/s, ours vs synapse-p2p 2.5.0 vs raw sqlite3.

    python benchmarks/conversation_log.py [--rounds 3] [--events 2000] [--dir PATH]

Every row appends the same ~300-byte events to a fresh database file in ``--dir`` (default: a
temporary directory on the same disk as the system's temp dir; put it on the disk you care
about, fsync cost is what is measured) and counts durable appends per second:

* ours, ``synchronous=FULL`` (durability on: an append returns after the fsynced COMMIT
  holding it), 1 task appending sequentially and 64 tasks appending concurrently, under trio
  and asyncio;
* the reference's ``SqliteConversationLog`` (rollback journal, a commit per event), run in
  its own interpreter (.cache/ref-2.5.0, built on first use);
* raw ``sqlite3`` in WAL mode with ``synchronous=FULL``: a transaction per event (what any
  commit-per-event design pays on this disk) and one transaction for all events (the ceiling).

Medians of the rounds are printed with ratios; ratios within one run are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

PAD = "x" * 200
REF_SCRIPT = """
import json, sys, time
from synapse_p2p.conversations import SqliteConversationLog
from synapse_p2p.types import ConversationEvent, Peer
path, n = sys.argv[1], int(sys.argv[2])
peer = Peer(id="a" * 64, address="127.0.0.1", port=9999, name="bench")
events = [ConversationEvent("c1", f"e{i:08d}", "message", peer, {"i": i, "pad": "x" * 200},
                            None, 1.0 + i) for i in range(n)]
log = SqliteConversationLog(path)
start = time.perf_counter()
for event in events:
    assert log.append(event)
elapsed = time.perf_counter() - start
log.close()
print(json.dumps({"appends_s": n / elapsed}))
"""


def ref_python() -> Path:
    from tests.interop.refenv import build_reference_venv

    return build_reference_venv()


def reference(directory: Path, n: int) -> float:
    done = subprocess.run(
        [str(ref_python()), "-c", REF_SCRIPT, str(directory / "ref.db"), str(n)],
        capture_output=True,
        text=True,
        cwd=directory,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return float(json.loads(done.stdout)["appends_s"])


def ours(directory: Path, n: int, tasks: int, backend: str) -> float:
    import anyio

    from synapse_p2p.conversations import SqliteConversationLog
    from synapse_p2p.types import ConversationEvent, Peer

    peer = Peer(id="a" * 64, address="127.0.0.1", port=9999, name="bench")
    events = [
        ConversationEvent("c1", f"e{i:08d}", "message", peer, {"i": i, "pad": PAD}, None, 1.0 + i)
        for i in range(n)
    ]

    async def main() -> float:
        async with SqliteConversationLog(directory / f"ours-{backend}-{tasks}.db") as log:

            async def worker(k: int) -> None:
                for event in events[k::tasks]:
                    assert await log.append(event)

            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for k in range(tasks):
                    tg.start_soon(worker, k)
            elapsed = time.perf_counter() - start
            assert log.count("c1") == n
            return n / elapsed

    return anyio.run(main, backend=backend)


def raw(directory: Path, n: int, per_event: bool) -> float:
    conn = sqlite3.connect(directory / f"raw-{per_event}.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE events (event_id TEXT PRIMARY KEY, cid TEXT, t REAL, data BLOB)")
    rows = [(f"e{i:08d}", "c1", 1.0 + i, (PAD + str(i)).encode() * 2) for i in range(n)]
    start = time.perf_counter()
    if not per_event:
        conn.execute("BEGIN")
    for row in rows:
        if per_event:
            conn.execute("BEGIN")
        conn.execute("INSERT INTO events VALUES (?, ?, ?, ?)", row)
        if per_event:
            conn.execute("COMMIT")
    if not per_event:
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=2000, help="per commit-per-event row")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    n = args.events
    rows: dict[str, Callable[[Path], float]] = {
        "reference 2.5.0 (commit per event)": lambda d: reference(d, n),
        "raw sqlite3, WAL FULL, transaction per event": lambda d: raw(d, n, True),
        "raw sqlite3, WAL FULL, one transaction": lambda d: raw(d, 10 * n, False),
    }
    for backend in ("trio", "asyncio"):
        rows[f"ours FULL, 1 task ({backend})"] = partial(ours, n=n, tasks=1, backend=backend)
        rows[f"ours FULL, 64 tasks ({backend})"] = partial(
            ours, n=10 * n, tasks=64, backend=backend
        )
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for r in range(args.rounds):
        for name, run in rows.items():
            with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
                samples[name].append(run(Path(tmp)))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    med = {name: statistics.median(values) for name, values in samples.items()}
    ref = med["reference 2.5.0 (commit per event)"]
    per_event = med["raw sqlite3, WAL FULL, transaction per event"]
    print(f"\nSQLite conversation log, durable appends/s, median of {args.rounds} rounds\n")
    print("| writer | appends/s | vs reference | vs raw txn-per-event |")
    print("|---|---|---|---|")
    for name, value in med.items():
        print(f"| {name} | {value:,.0f} | {value / ref:.1f}x | {value / per_event:.2f}x |")


if __name__ == "__main__":
    main()
