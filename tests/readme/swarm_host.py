"""One test host of the README's ``swarm-config`` scenario (run inside a test namespace only).

Executes the README block verbatim, then serves its ``node`` (``mdns=True``) and, with
``--start-other``, its ``other`` (seeded with ``10.0.0.5:9999``); ``--seed-at ADDRESS`` first
serves a plain node of the same swarm on ``ADDRESS:9999`` to be that seed. Prints one JSON line
per ``peer.joined`` (``{"event": "joined", "who": "node"|"other", "peer": {...}}``); stops on
stdin EOF.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

import anyio

from synapse_p2p import Node, Peer
from tests.readme import blocks


def report(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def main(args: argparse.Namespace) -> None:
    namespace = blocks.exec_block(blocks.load().named()["swarm-config"], {"__name__": "__main__"})
    nodes: dict[str, Node] = {"node": namespace["node"]}
    if args.start_other:
        nodes["other"] = namespace["other"]
    for who, node in nodes.items():

        @node.on("peer.joined")
        async def joined(peer: Peer, who: str = who) -> None:
            fields = {"name": peer.name, "address": peer.address}
            report(event="joined", who=who, peer=fields | {"capabilities": peer.capabilities})

    async with contextlib.AsyncExitStack() as stack:
        if args.seed_at:
            seed = Node(name="seed", swarm=nodes["node"].swarm, bind=args.seed_at, port=9999)
            await stack.enter_async_context(seed)
        for node in nodes.values():
            await stack.enter_async_context(node)
        report(event="started")
        await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--start-other", action="store_true")
    parser.add_argument("--seed-at")
    anyio.run(main, parser.parse_args())
