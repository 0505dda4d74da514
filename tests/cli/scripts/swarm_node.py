"""A node for the command-line tests: prints {"port": P} once serving, stops on stdin EOF.

swarm_node.py --name N [--swarm S] [--seed HOST:PORT] [--ask ok|fail|none] [--delay S]
              [--bind ADDRESS] [--mdns]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio

from synapse_p2p import Node


async def main(args: argparse.Namespace) -> None:
    node = Node(
        name=args.name,
        swarm=args.swarm,
        bind=args.bind,
        mdns=args.mdns,
        seeds=[args.seed] if args.seed else None,
        capabilities=["code-review"],
        role="reviewer",
        description="reviews diffs",
        heartbeat_interval=0.5,
        peer_timeout=2,
        websocket=args.websocket,
    )
    node.artifact("agent-card", {"model": "stub", "tools": ["review"]})
    node.artifact("logo", bytes(range(256)), mime_type="image/png")

    @node.endpoint("sum", description="Add two numbers")
    async def sum_(a: int, b: int) -> int:
        return a + b

    @node.endpoint("boom")
    async def boom() -> None:
        raise ValueError("kaboom")

    if args.ask != "none":

        @node.ask
        async def handle(task: str, context: dict[str, Any]) -> Any:
            await anyio.sleep(args.delay)
            if args.ask == "fail":
                raise RuntimeError(f"{args.name} cannot review")
            if args.answer is not None:
                return json.loads(args.answer)
            extra = f" ({context['url']})" if "url" in context else ""
            return f"{args.name}: LGTM for {task!r}{extra}"

    async with node, anyio.create_task_group() as tg:
        ready = {"port": node.port, "id": node.node_id, "websocket": node.websocket_urls}
        print(json.dumps(ready), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--swarm", default="lab")
    parser.add_argument("--seed")
    parser.add_argument("--ask", default="ok", choices=["ok", "fail", "none"])
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--backend", default="trio")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--mdns", action="store_true")
    parser.add_argument("--websocket", help="also listen on this ws:// URL")
    parser.add_argument("--answer", help="reply with this JSON value instead")
    arguments = parser.parse_args()
    anyio.run(main, arguments, backend=arguments.backend)
