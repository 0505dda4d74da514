"""The whole mDNS swarm in one process: a reviewer, a coder and an asker, found over mDNS.

    python -m examples.local_mdns_swarm       (or: python examples/local_mdns_swarm/run.py)
    python examples/local_mdns_swarm/run.py --backend asyncio

No seeds anywhere: the three nodes find each other through mDNS, which this demo keeps on the
loopback interface (``mdns_interfaces=["127.0.0.1"]``), so nothing is announced on your LAN.
It finishes in a few seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from typing import Any

import anyio

from examples.local_mdns_swarm.agents import make_coder, make_reviewer
from examples.local_mdns_swarm.ask import ask

LOOPBACK: dict[str, Any] = {"bind": "127.0.0.1", "mdns_interfaces": ["127.0.0.1"]}


async def main() -> None:
    async with anyio.create_task_group() as tg:
        for node in (make_reviewer(**LOOPBACK), make_coder(**LOOPBACK)):
            await tg.start(node.serve)
            print(f"{node.name} listening on {node.address}:{node.port}, advertised over mDNS")
        replies = await ask(peers=2, wait=20, timeout=20, **LOOPBACK)
        print(f"{len(replies)} replies; stopping the swarm")
        tg.cancel_scope.cancel()


def cli() -> None:
    backend = "asyncio" if "asyncio" in sys.argv[1:] else "trio"
    anyio.run(main, backend=backend)


if __name__ == "__main__":
    cli()
