"""Append events to a SQLite conversation log until killed; print each acknowledged id.

    python -m tests.conversations.log_scripts.append_forever PATH BACKEND TASKS

Prints "ready" once the log is open, then, from TASKS concurrent tasks, one event id per line,
each printed and flushed only AFTER its ``append`` returned True (the event is acknowledged).
The durability test SIGKILLs this process at a random moment and checks every printed id.
"""

from __future__ import annotations

import sys

import anyio

from synapse_p2p.conversations import SqliteConversationLog
from tests.conversations.log_scripts.logkit import make_event


async def main(path: str, tasks: int) -> None:
    log = SqliteConversationLog(path)
    print("ready", flush=True)

    async def writer(n: int) -> None:
        i = 0
        while True:
            event_id = f"w{n:02d}-{i:07d}"
            event = make_event(float(i), event_id, cid=f"c{n % 4}", payload={"pad": "x" * 200})
            if await log.append(event):
                sys.stdout.write(event_id + "\n")
                sys.stdout.flush()
            i += 1

    async with anyio.create_task_group() as tg:
        for n in range(tasks):
            tg.start_soon(writer, n)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[3]), backend=sys.argv[2])
