"""The whole coding team in one process: an architect and two coders on loopback.

    python -m examples.coding_team         (or: python examples/coding_team/run.py)
    python examples/coding_team/run.py --backend asyncio

Offline, no API keys; it finishes in a few seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from typing import Any

import anyio

from examples.coding_team.architect import SWARM, lead
from examples.coding_team.coder import make_coder
from synapse_p2p import Node


async def main() -> None:
    options: dict[str, Any] = {"heartbeat_interval": 0.5}
    async with Node(
        name="architect", role="architect", swarm=SWARM, bind="127.0.0.1", **options
    ) as architect:
        seed = f"127.0.0.1:{architect.port}"
        async with anyio.create_task_group() as coders:
            for name in ("coder-1", "coder-2"):
                await coders.start(make_coder(name, seed, **options).serve)
            with anyio.fail_after(30):
                while len(architect.peers) < 2:
                    await anyio.sleep(0.05)
            print(f"team: architect + {', '.join(p.name for p in architect.peers.values())}")
            await lead(architect)
            coders.cancel_scope.cancel()


def cli() -> None:
    backend = "asyncio" if "asyncio" in sys.argv[1:] else "trio"
    anyio.run(main, backend=backend)


if __name__ == "__main__":
    cli()
