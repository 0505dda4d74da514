"""A synapse-p2p Node for the NAT test, run inside a namespace. Prints ``{"port": P, "id":
ID}`` once serving, then a status line every 0.3 s: ``{"status": 1, "at": T, "peers": {name:
"addr:port"}, "reach": ..., "reserved": ["host:port", ...], "address": A, "holding":
[name, ...]}`` (``at``: ``time.monotonic()``, one clock for every process of the machine;
``holding``: on a relay, the nodes holding a reservation on it now, by name, or by id if
not a member yet); answers
commands read from stdin (one JSON object a line, each with an ``id`` echoed in the answer):

* ``{"op": "call", "peer": NAME, "endpoint": E, "args": [...]}`` → ``result`` or ``error``;
* ``{"op": "ask", "text": T}`` → ``conversation`` and ``replies`` ({name: answer});
* ``{"op": "sync", "peer": NAME, "conversation": C, "text": T}`` → ``count``, ``has_text``;
* ``{"op": "offer", "title": T, "requires": [...]}`` → ``result`` (a team task's outcome).

Stops on stdin EOF.

    nat_member.py --name N [--seed HOST:PORT] [--port P] [--relay] [--relay-bytes B]
                  [--advertise A] [--identity FILE] [--capability C] [--worker]
                  [--backend trio|asyncio]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import anyio

from synapse_p2p import Node
from synapse_p2p.relay import RelayLimits
from synapse_p2p.teams import Assignment, Team, Worker


def say(data: dict[str, Any]) -> None:
    print(json.dumps(data), flush=True)


def build(args: argparse.Namespace) -> Node:
    name: str = args.name
    limits = RelayLimits(max_circuit_bytes=args.relay_bytes) if args.relay_bytes else None
    node = Node(
        bind="0.0.0.0",
        port=args.port,
        name=args.name,
        swarm="nat",
        advertise=args.advertise,
        seeds=[args.seed] if args.seed else None,
        relay=args.relay,
        relay_limits=limits,
        identity=args.identity,
        capabilities=[args.capability] if args.capability else None,
        heartbeat_interval=0.5,
        peer_timeout=4,
        mdns=False,
    )

    @node.endpoint("whoami", publish=False)
    async def whoami() -> str:
        return name

    @node.endpoint("echo", publish=False)
    async def echo(value: Any) -> Any:
        return value

    @node.ask
    async def review(task: str, context: dict[str, Any]) -> str:
        return f"{name} read {task}"

    return node


async def command(node: Node, cmd: dict[str, Any]) -> dict[str, Any]:
    by_name = {p.name: p for p in node.peers.values()}
    op = cmd.get("op")
    if op == "call":
        result = await node.call_peer(
            by_name[cmd["peer"]], cmd["endpoint"], *cmd.get("args", []), timeout=20
        )
        return {"result": result}
    if op == "ask":
        broadcast = await node.broadcast("synapse.ask", cmd["text"], context={})
        replies = {r.peer.name: r.result async for r in node.iter_replies(broadcast, timeout=15)}
        return {"conversation": broadcast.nonce, "replies": replies}
    if op == "sync":
        count = await node.sync_conversation(by_name[cmd["peer"]], cmd["conversation"])
        events = node.conversation(cmd["conversation"])
        return {"count": count, "has_text": any(cmd["text"] in repr(e) for e in events)}
    if op == "offer":
        async with Team(node) as team:
            task = await team.offer(cmd["title"], requires=cmd.get("requires", []))
            return {"result": await team.wait(task, timeout=30)}
    raise ValueError(f"unknown op {op!r}")


async def main(args: argparse.Namespace) -> None:
    node = build(args)
    async with node, anyio.create_task_group() as tg:
        if args.worker:
            worker = Worker(node)

            @worker.task
            async def run(assignment: Assignment) -> str:
                return f"{args.name} did {assignment.title}"

            await tg.start(_run_worker, worker)

        async def answer(cmd: dict[str, Any]) -> None:
            try:
                reply = await command(node, cmd)
            except Exception as exc:  # the test reads the error
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            say({"id": cmd.get("id"), **reply})

        async def commands() -> None:
            while True:
                line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
                if not line:
                    tg.cancel_scope.cancel()
                    return
                try:
                    cmd = json.loads(line)
                except ValueError:
                    continue
                tg.start_soon(answer, cmd)

        def holding() -> list[str]:
            service = node.relay.service
            names = {p.id: p.name for p in node.peers.values()}
            return sorted(names.get(i, i) for i in (service.reserved() if service else ()))

        tg.start_soon(commands)
        say({"port": node.port, "id": node.node_id, "address": node.address})
        for _ in range(2000):  # bounded: at most 10 minutes
            say(
                {
                    "status": 1,
                    "at": time.monotonic(),
                    "peers": {p.name: f"{p.address}:{p.port}" for p in node.peers.values()},
                    "reach": node.reachability,
                    "reserved": [
                        f"{s.relay[0]}:{s.relay[1]}" for s in node.relay.states() if s.reserved
                    ],
                    "address": node.address,
                    "holding": holding(),
                }
            )
            await anyio.sleep(0.3)
        tg.cancel_scope.cancel()


async def _run_worker(worker: Worker, *, task_status: Any) -> None:
    async with worker:
        task_status.started()
        await anyio.sleep_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--seed")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--relay", action="store_true")
    parser.add_argument("--relay-bytes", type=int, default=0)
    parser.add_argument("--advertise")
    parser.add_argument("--identity")
    parser.add_argument("--capability")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--backend", default="trio")
    arguments = parser.parse_args()
    anyio.run(main, arguments, backend=arguments.backend)
