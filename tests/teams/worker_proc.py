"""A worker process for the kill -9 tests, written as the seed writes a coder:

    python tests/teams/worker_proc.py SEED_HOST:PORT NAME LOGFILE [trio|asyncio]

Every run appends ``start TASK ATTEMPT NAME`` to LOGFILE before its work (0.3-0.8 s) and
``end TASK ATTEMPT NAME`` after it, then returns {"by": NAME, "attempt": ATTEMPT}.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import anyio

from synapse_p2p import Node
from synapse_p2p.teams import Assignment, Worker

seed, name, logfile = sys.argv[1], sys.argv[2], sys.argv[3]
backend = sys.argv[4] if len(sys.argv) > 4 else "trio"


def note(line: str) -> None:
    fd = os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


node = Node(
    bind="127.0.0.1",
    name=name,
    swarm="kill9",
    capabilities=["python"],
    seeds=[seed],
    heartbeat_interval=0.2,
    peer_timeout=1.5,
)
worker = Worker(node, renew_interval=0.5)


@worker.task
async def work(assignment: Assignment) -> dict[str, Any]:
    note(f"start {assignment.id} {assignment.attempt} {name}")
    await anyio.sleep(random.uniform(0.3, 0.8))
    note(f"end {assignment.id} {assignment.attempt} {name}")
    return {"by": name, "attempt": assignment.attempt}


node.run(backend="asyncio" if backend == "asyncio" else "trio")
