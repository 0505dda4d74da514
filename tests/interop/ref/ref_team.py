"""A synapse-p2p 2.5.0 team (the offering side) in a mixed swarm, in the reference environment.

    ref_team.py SWARM SEED_HOST:PORT NAME

Joins through the seed, prints {"port", "id"} when ready, then answers commands on stdin (one
JSON per line) with one JSON line:
  {"op": "wait_peer", "id": ID}             wait (10 s) until that node is a peer: {"ok": bool}
  {"op": "run", "n": N, "lease": S}         offer N tasks requiring ["python"] with a 2.5.0
                                             Team(lease=S) and wait for each (30 s):
                                             {"results": [...], "kinds": [[kind, author name]...]
                                              per task, "status": [...]}
"""

import asyncio
import json
import sys

from synapse_p2p import Node
from synapse_p2p.teams import Team


async def main() -> None:
    swarm, seed, name = sys.argv[1], sys.argv[2], sys.argv[3]
    node = Node(
        bind="127.0.0.1",
        name=name,
        swarm=swarm,
        seeds=[seed],
        heartbeat_interval=0.5,
        peer_timeout=5,
    )
    await node.start()
    await node.join()
    print(json.dumps({"port": node.port, "id": node.node_id}), flush=True)
    loop = asyncio.get_running_loop()
    team = None
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        if cmd["op"] == "wait_peer":
            for _ in range(100):
                if cmd["id"] in node.peers:
                    break
                await asyncio.sleep(0.1)
            out = {"ok": cmd["id"] in node.peers}
        elif cmd["op"] == "run":
            if team is None:
                team = Team(node, lease=cmd.get("lease", 300))
            tasks = [
                await team.offer(f"task {i}", spec={"i": i}, requires=["python"])
                for i in range(cmd["n"])
            ]
            results = []
            for task in tasks:
                try:
                    results.append(await team.wait(task, timeout=30))
                except Exception as exc:
                    results.append({"error": repr(exc)})
            out = {
                "results": results,
                "status": [task.status for task in tasks],
                "kinds": [[[e.kind, e.peer.name] for e in node.conversation(t.id)] for t in tasks],
            }
        else:
            out = {"error": "unknown op"}
        print(json.dumps(out), flush=True)
    await node.stop()


asyncio.run(main())
