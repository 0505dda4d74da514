"""kill -9 loses no acknowledged event: a child appends, we SIGKILL it, reopen and check."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from synapse_p2p.conversations import SqliteConversationLog

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize(("backend", "tasks"), [("trio", 1), ("trio", 16), ("asyncio", 16)])
def test_acknowledged_events_survive_kill_9(tmp_path: Path, backend: str, tasks: int) -> None:
    seed = random.randrange(2**32)
    delay = random.Random(seed).uniform(0.0, 0.5)
    path = tmp_path / "log.db"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.conversations.log_scripts.append_forever",
            str(path),
            backend,
            str(tasks),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert child.stdout is not None
    reader: threading.Thread | None = None
    try:
        ready = child.stdout.readline()
        assert ready == "ready\n", child.stderr.read() if child.stderr else ready
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(child.stdout or ()), daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        while not lines and time.monotonic() < deadline:  # appending has begun
            time.sleep(0.005)
        time.sleep(delay)  # then a random moment, almost always inside a transaction
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        reader.join(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if reader is None or not reader.is_alive():  # (never under a read)
            for pipe in (child.stdout, child.stderr):
                if pipe is not None:
                    pipe.close()
    acknowledged = [line[:-1] for line in lines if line.endswith("\n")]  # drop a torn last line
    assert child.returncode == -signal.SIGKILL
    assert len(acknowledged) > 0, f"nothing acknowledged in {delay:.2f}s (seed {seed})"
    log = SqliteConversationLog(path)
    try:
        missing = [event_id for event_id in acknowledged if not log.seen(event_id)]
        assert not missing, f"{len(missing)} acknowledged events lost (seed {seed}): {missing[:5]}"
        stored = sum(len(log.events(cid)) for cid in log.conversations())
        assert stored == log.statistics().events >= len(acknowledged)
    finally:
        log.close()
