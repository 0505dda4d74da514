"""The whole bootstrap team in one process, on free loopback ports; it exits by itself.

    python -m examples.bootstrap_team      (or: python examples/bootstrap_team/run.py)
    python examples/bootstrap_team/run.py --backend asyncio

The seed starts, the planner, reviewer and coder join through it, ``inspect_team`` lists the
seed's peers and their agent cards, the seed asks the team a question, then the coder stops
and the seed logs it offline. Finishes in a few seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from typing import Any

import anyio
from anyio.abc import TaskStatus

from examples.bootstrap_team.inspect_team import inspect_team
from examples.bootstrap_team.members import ROLES, make_bootstrap, make_member
from synapse_p2p import Node, Peer

# Quick failure detection for a demo: a stopped member is offline after about a second.
FAST: dict[str, Any] = {"bind": "127.0.0.1", "heartbeat_interval": 0.25, "peer_timeout": 1.0}


async def serve_until_cancelled(
    node: Node, *, task_status: TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Run ``node``; hands back a cancel scope that stops just this node."""
    with anyio.CancelScope() as scope:
        async with node:
            task_status.started(scope)
            await anyio.sleep_forever()


async def main() -> None:
    seed = make_bootstrap(0, heartbeat_every=20, **FAST)  # port 0: any free port
    everyone_joined, coder_gone = anyio.Event(), anyio.Event()

    @seed.on("peer.joined")
    async def joined(peer: Peer) -> None:
        if len(seed.peers) == len(ROLES):
            everyone_joined.set()

    @seed.on("peer.offline")
    @seed.on("peer.left")
    async def gone(peer: Peer) -> None:
        if peer.name == "coder":
            coder_gone.set()

    async with anyio.create_task_group() as tg:
        await tg.start(serve_until_cancelled, seed)
        address = f"127.0.0.1:{seed.port}"
        print(f"bootstrap seed listening on {address}")
        members: dict[str, anyio.CancelScope] = {}
        for role in ROLES:
            members[role] = await tg.start(
                serve_until_cancelled, make_member(role, address, **FAST)
            )
        with anyio.fail_after(10):
            await everyone_joined.wait()

        print("--- inspect_team")
        await inspect_team(address)

        print("--- the seed asks the team")
        broadcast = await seed.broadcast(
            "synapse.ask", "add a health check endpoint with tests", context={"repo": "acme/api"}
        )
        async for reply in seed.iter_replies(broadcast, timeout=10):
            print(f"  {reply.peer.name:<9} {reply.result['summary']}")

        print("--- stopping the coder")
        members["coder"].cancel()
        with anyio.fail_after(10):
            await coder_gone.wait()
        print(f"seed still knows: {', '.join(sorted(p.name for p in seed.peers.values()))}")
        tg.cancel_scope.cancel()
    print("team stopped")


def cli() -> None:
    backend = "asyncio" if "asyncio" in sys.argv[1:] else "trio"
    anyio.run(main, backend=backend)


if __name__ == "__main__":
    cli()
