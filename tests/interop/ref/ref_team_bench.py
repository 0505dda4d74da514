"""The 2.5.0 architect of benchmarks/teams.py (runs in the reference environment).

    ref_team_bench.py WORKERS TASKS

Prints {"port"} when listening, waits until WORKERS peers have joined, offers TASKS tiny tasks
requiring ["python"] at once with a 2.5.0 Team, waits for all (or 300 s), and prints one JSON
line: elapsed seconds, statuses, and per task the grants, dones and attempts in its log.
"""

import asyncio
import json
import sys
import time

from synapse_p2p import Node
from synapse_p2p.teams import Team


async def main() -> None:
    workers, count = int(sys.argv[1]), int(sys.argv[2])
    node = Node(bind="127.0.0.1", name="architect", swarm="bench-teams")
    await node.start()
    print(json.dumps({"port": node.port}), flush=True)
    for _ in range(1200):
        if len(node.peers) >= workers:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)  # let the workers learn each other too
    team = Team(node)
    started = time.perf_counter()
    tasks = await asyncio.gather(
        *(team.offer(f"t{i}", spec={"i": i}, requires=["python"]) for i in range(count))
    )

    async def wait(task):
        try:
            return await team.wait(task, timeout=300)
        except Exception as exc:
            return {"error": repr(exc)}

    await asyncio.gather(*(wait(task) for task in tasks))
    elapsed = time.perf_counter() - started
    per_task = []
    for task in tasks:
        kinds = [e.kind for e in node.conversation(task.id)]
        per_task.append([kinds.count("task.grant"), kinds.count("task.done"), task.attempts])
    print(
        json.dumps(
            {
                "elapsed": elapsed,
                "status": [task.status for task in tasks],
                "per_task": per_task,
            }
        ),
        flush=True,
    )


asyncio.run(main())
