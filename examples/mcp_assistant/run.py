"""Both halves in one process: the swarm on a free loopback port, and the MCP client that
launches `sn mcp` to join it.

python examples/mcp_assistant/run.py [--backend asyncio]
"""

from __future__ import annotations

import sys

import anyio
from client import run_client
from swarm import serve


async def main(backend: str) -> None:
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, 0)
        await run_client(f"127.0.0.1:{port}", backend)
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    backend = "asyncio" if "--backend" in sys.argv and "asyncio" in sys.argv else "trio"
    anyio.run(main, backend, backend=backend)
