"""A synapse-p2p 2.5.0 node with mdns=True (run with the reference interpreter, in a netns).

Prints ``{"event": "started", "id", "port"}``, then ``{"event": "peers", "peers": [...]}``
whenever its peer table changes (polled every 0.1 s). Stops cleanly (unregistering its mDNS
service) on EOF or ``stop`` on stdin, or after ``--lifetime`` seconds.
"""

import argparse
import asyncio
import json
import sys
import threading

from synapse_p2p import Node


def emit(event, **data):
    print(json.dumps({"event": event, **data}), flush=True)


async def main(args):
    node = Node(
        bind=args.address,
        advertise=args.address,
        name=args.name,
        swarm=args.swarm,
        capabilities=[c for c in args.capabilities.split(",") if c],
        mdns=True,
        heartbeat_interval=None,
    )
    await node.start()
    emit("started", id=node.node_id, port=node.port)
    loop = asyncio.get_running_loop()
    stdin_closed = threading.Event()  # daemon reader: never holds up interpreter exit
    threading.Thread(target=lambda: (sys.stdin.readline(), stdin_closed.set()), daemon=True).start()
    last = None
    deadline = loop.time() + args.lifetime
    while loop.time() < deadline and not stdin_closed.is_set():
        peers = sorted(
            (
                {k: v for k, v in p.to_dict().items() if k != "last_seen"}
                for p in node.peers.values()
            ),
            key=lambda p: p["id"],
        )
        if peers != last:
            emit("peers", peers=peers)
            last = peers
        await asyncio.sleep(0.1)
    await node.stop()
    emit("stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--name", default="")
    parser.add_argument("--swarm", default=None)
    parser.add_argument("--capabilities", default="")
    parser.add_argument("--lifetime", type=float, default=60.0)
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
