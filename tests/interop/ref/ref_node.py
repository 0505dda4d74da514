"""A synapse-p2p 2.5.0 node on a free loopback port (runs in the reference environment)."""

import asyncio
import json

from synapse_p2p import Node


async def main() -> None:
    node = Node(bind="127.0.0.1", name="ref-node", capabilities=["ref"], swarm="interop")

    @node.endpoint("sum", description="Add two numbers")
    async def sum_(a, b):
        return a + b

    @node.endpoint("echo")
    async def echo(value):
        return value

    @node.endpoint("boom")
    async def boom():
        raise ValueError("reference failure")

    @node.ask
    async def handle(task, context):
        return {"answer": task[::-1], "context": context}

    node.artifact("agent-card", {"name": "reviewer", "capabilities": ["code-review"]})
    await node.start()
    print(json.dumps({"port": node.port, "id": node.node_id}), flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
