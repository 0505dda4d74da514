"""A synapse-p2p Node with mdns=True, for the namespace tests. Prints {"peers": [names]} every
0.2 s; stops on stdin EOF.

    node_member.py --name N --address A [--backend trio|asyncio] [--interfaces IF ...]
"""

from __future__ import annotations

import argparse
import json
import sys

import anyio

from synapse_p2p import Node


async def main(args: argparse.Namespace) -> None:
    node = Node(
        bind=args.address,
        name=args.name,
        swarm="lan",
        mdns=True,
        mdns_interfaces=args.interfaces,
        heartbeat_interval=0.5,
        peer_timeout=2,
    )
    async with node, anyio.create_task_group() as tg:

        async def stop_on_eof() -> None:
            await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
            tg.cancel_scope.cancel()

        tg.start_soon(stop_on_eof)
        for _ in range(3000):  # bounded: at most 10 minutes
            print(json.dumps({"peers": sorted(p.name for p in node.peers.values())}), flush=True)
            await anyio.sleep(0.2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--backend", default="trio")
    parser.add_argument("--interfaces", nargs="*")
    arguments = parser.parse_args()
    anyio.run(main, arguments, backend=arguments.backend)
