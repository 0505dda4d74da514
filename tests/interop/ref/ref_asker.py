"""A synapse-p2p 2.5.0 node in a mixed swarm, driven by commands on stdin (one JSON per line).

    ref_asker.py SWARM SEED_HOST:PORT NAME

Prints {"port", "id"} when ready, then answers each command with one JSON line:
  {"op": "ask", "task": T}            broadcast synapse.ask, wait for replies (5 s): {"acks": [...], "replies": [...]}
  {"op": "emit", "cid": C, "kind": K} emit a conversation event: {"event_id": ...}
  {"op": "log", "cid": C}             {"events": [[kind, event_id, author name], ...]}
  {"op": "sync", "peer_port": P, "cid": C}  sync from the node at 127.0.0.1:P: {"new": n}
It also answers asks itself: {"from": NAME, "answer": task reversed}.
"""

import asyncio
import json
import sys

from synapse_p2p import Node


async def main() -> None:
    swarm, seed, name = sys.argv[1], sys.argv[2], sys.argv[3]
    node = Node(
        bind="127.0.0.1",
        name=name,
        swarm=swarm,
        seeds=[seed],
        heartbeat_interval=0.5,
        peer_timeout=3,
    )
    acks = {}

    @node.ask
    async def handle(task, context):
        return {"from": name, "answer": task[::-1]}

    @node.on("conversation.ack")
    async def on_ack(event):
        acks.setdefault(event.parent_id, []).append(event.peer.name)

    await node.start()
    await node.join()
    print(json.dumps({"port": node.port, "id": node.node_id}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        if cmd["op"] == "ask":
            b = await node.broadcast("synapse.ask", cmd["task"])
            await asyncio.sleep(cmd.get("wait", 3))
            out = {
                "acks": sorted(acks.get(b.nonce, [])),
                "replies": sorted([r.peer.name, r.result] for r in node.replies(b)),
            }
        elif cmd["op"] == "emit":
            event = await node.emit_conversation_event(cmd["cid"], cmd["kind"], {"x": 1})
            out = {"event_id": event.event_id}
        elif cmd["op"] == "log":
            out = {
                "events": [[e.kind, e.event_id, e.peer.name] for e in node.conversation(cmd["cid"])]
            }
        elif cmd["op"] == "sync":
            peer = next(p for p in node.peers.values() if p.port == cmd["peer_port"])
            out = {"new": await node.sync_conversation(peer, cmd["cid"])}
        else:
            out = {"error": "unknown op"}
        print(json.dumps(out), flush=True)
    await node.stop()


asyncio.run(main())
