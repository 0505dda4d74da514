"""A small swarm for an MCP client to join: a reviewer (an ask handler with an agent card and
an endpoint) and a coder (a team worker for tasks that require "python").

python examples/mcp_assistant/swarm.py      # the reviewer listens on 127.0.0.1:9999
                                            # (SYNAPSE_PORT to change); Ctrl+C to stop
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import anyio

from synapse_p2p import Node
from synapse_p2p.teams import Assignment, Worker

SWARM = "mcp-demo.example.com"


def reviewer_node(port: int) -> Node:
    node = Node(name="reviewer", swarm=SWARM, bind="127.0.0.1", port=port,
                capabilities=["code-review"])  # fmt: skip
    node.artifact("agent-card", {"name": "reviewer", "skills": ["code review"],
                                 "model": "a stand-in: no API keys needed"})  # fmt: skip

    @node.ask
    async def review(task: str, context: dict[str, Any]) -> str:
        return f"LGTM after fixing tests ({task})"

    @node.endpoint("lint", description="Count the lines longer than 100 characters")
    async def lint(text: str) -> int:
        return sum(len(line) > 100 for line in text.splitlines())

    return node


def coder_node(seed_port: int) -> Node:
    return Node(name="coder", swarm=SWARM, bind="127.0.0.1", capabilities=["python"],
                seeds=[f"127.0.0.1:{seed_port}"])  # fmt: skip


async def implement(assignment: Assignment) -> dict[str, Any]:
    await assignment.progress("writing the code")
    return {"diff": f"+ def {assignment.spec.get('function', 'parse')}(): ..."}


async def serve(port: int, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    """Run both nodes until cancelled; ``task_status.started(port)`` once they are up."""
    async with (
        reviewer_node(port) as reviewer,
        coder_node(reviewer.port) as coder,
        Worker(coder) as worker,
    ):
        worker.task(implement)
        task_status.started(reviewer.port)
        await anyio.sleep_forever()


async def main() -> None:
    port = int(os.environ.get("SYNAPSE_PORT", "9999"))
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve, port)
            print(f"swarm {SWARM!r} up: the reviewer listens on 127.0.0.1:{port}; Ctrl+C to stop",
                  file=sys.stderr, flush=True)  # fmt: skip
            async for _ in signals:
                tg.cancel_scope.cancel()
                break


if __name__ == "__main__":
    anyio.run(main)
