"""A synapse-p2p 2.5.0 swarm member. Prints {"port", "id"} when ready, then one JSON line
{"peers": [ids]} every 0.2 s.

    ref_member.py SWARM [SEED_HOST:PORT]
"""

import asyncio
import json
import sys

from synapse_p2p import Node


async def main() -> None:
    seeds = [sys.argv[2]] if len(sys.argv) > 2 else None
    node = Node(
        bind="127.0.0.1",
        name="ref-member",
        swarm=sys.argv[1],
        seeds=seeds,
        heartbeat_interval=0.5,
        peer_timeout=2,
    )
    await node.start()
    if seeds:
        await node.join()  # 2.5.0 never contacts its seeds by itself
    print(json.dumps({"port": node.port, "id": node.node_id}), flush=True)
    while True:
        print(json.dumps({"peers": sorted(node.peers)}), flush=True)
        await asyncio.sleep(0.2)


asyncio.run(main())
