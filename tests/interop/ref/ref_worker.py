"""A synapse-p2p 2.5.0 team worker in a mixed swarm (runs in the reference environment).

    ref_worker.py SWARM SEED_HOST:PORT NAME [DELAY]

Joins through the seed with capabilities ["python"], prints {"port", "id"} when ready, then
runs a 2.5.0 ``Worker`` whose handler sleeps DELAY seconds (default 0) and returns
{"by": NAME, "title": ..., "spec": ...}; it prints {"ran": task_id} as each run starts.
"""

import asyncio
import json
import sys

from synapse_p2p import Node
from synapse_p2p.teams import Worker


async def main() -> None:
    swarm, seed, name = sys.argv[1], sys.argv[2], sys.argv[3]
    delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    node = Node(
        bind="127.0.0.1",
        name=name,
        swarm=swarm,
        seeds=[seed],
        capabilities=["python"],
        heartbeat_interval=0.5,
        peer_timeout=5,
    )
    worker = Worker(node)

    @worker.task
    async def run(assignment):
        print(json.dumps({"ran": assignment.id}), flush=True)
        await asyncio.sleep(delay)
        return {"by": name, "title": assignment.title, "spec": assignment.spec}

    await node.start()
    await node.join()
    print(json.dumps({"port": node.port, "id": node.node_id}), flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
