"""A synapse-p2p Node bound to every interface with the advertised address left to
auto-detection, for the namespace tests of observed addresses. Prints
{"port": P, "address": A} once serving, then {"peers": {name: "addr:port"}, "address": A}
every 0.2 s; stops on stdin EOF.

    plain_member.py --name N [--seed HOST:PORT] [--port P] [--backend trio|asyncio]
                    [--bind ADDRESS] [--advertise ADDRESS]
"""

from __future__ import annotations

import argparse
import json
import sys

import anyio

from synapse_p2p import Node


async def main(args: argparse.Namespace) -> None:
    node = Node(
        bind=args.bind,
        advertise=args.advertise,
        port=args.port,
        name=args.name,
        swarm="far",
        seeds=[args.seed] if args.seed else None,
        heartbeat_interval=0.5,
        peer_timeout=3,
    )
    async with node, anyio.create_task_group() as tg:

        async def stop_on_eof() -> None:
            await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
            tg.cancel_scope.cancel()

        tg.start_soon(stop_on_eof)
        print(json.dumps({"port": node.port, "address": node.address}), flush=True)
        for _ in range(3000):  # bounded: at most 10 minutes
            peers = {p.name: f"{p.address}:{p.port}" for p in node.peers.values()}
            print(json.dumps({"peers": peers, "address": node.address}), flush=True)
            await anyio.sleep(0.2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--seed")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backend", default="trio")
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--advertise", default="auto")
    arguments = parser.parse_args()
    anyio.run(main, arguments, backend=arguments.backend)
