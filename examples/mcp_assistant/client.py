"""Play the MCP client: launch `sn mcp` as Claude Desktop would (the official MCP SDK), join the
swarm of swarm.py, and use a few tools.

python examples/mcp_assistant/client.py [--seed 127.0.0.1:9999] [--backend asyncio]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client

SWARM = "mcp-demo.example.com"


def server_config(seed: str, backend: str) -> dict[str, Any]:
    """What a user pastes into an MCP client (here with this Python's `sn`)."""
    return {
        "command": sys.executable,
        "args": ["-m", "synapse_p2p", "--backend", backend, "mcp", SWARM, "--seed", seed,
                 "--name", "assistant", "--capability", "writing"],
    }  # fmt: skip


async def run_client(seed: str, backend: str = "trio") -> None:
    config = server_config(seed, backend)
    params = StdioServerParameters(command=config["command"], args=config["args"])
    async with stdio_client(params) as streams, ClientSession(*streams) as session:
        await session.initialize()

        async def tool(name: str, **arguments: Any) -> Any:
            result = await session.call_tool(name, arguments)
            text = "".join(getattr(c, "text", "") for c in result.content)
            if result.is_error:
                raise RuntimeError(f"{name}: {text}")
            return json.loads(text)

        tools = await session.list_tools()
        print("tools:", ", ".join(t.name for t in tools.tools))
        with anyio.fail_after(20):
            while len((await tool("list_peers", agent_cards=False))["peers"]) < 2:
                await anyio.sleep(0.1)
        peers = await tool("list_peers")
        for peer in peers["peers"]:
            card = peer["agent_card"]["content"] if peer["agent_card"] else "no agent card"
            print(f"peer {peer['name']}: {', '.join(peer['capabilities'])}; {card}")
        asked = await tool("ask_swarm", task="Review this diff", timeout=20)
        for reply in asked["replies"]:
            print(f"reply from {reply['from'].split()[0]}: {reply['result']}")
        linted = await tool("call_endpoint", peer="reviewer", endpoint="lint",
                            args=["short\n" + "x" * 120])  # fmt: skip
        print("lint: long lines =", linted["result"])
        offered = await tool("offer_task", title="implement the parser",
                             spec={"function": "parse"}, requires=["python"])  # fmt: skip
        done = await tool("wait_task", task_id=offered["task"]["task_id"], timeout=30)
        task = done["task"]
        print(f"task {task['status']} by {task['assignee'].split()[0]}: {task['result']}")
        conversation = await tool("read_conversation", conversation_id=asked["conversation_id"])
        print("the ask's conversation:", " -> ".join(e["kind"] for e in conversation["events"]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", default="127.0.0.1:9999")
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    options = parser.parse_args()
    anyio.run(run_client, options.seed, options.backend, backend=options.backend)
