"""``sn mcp``: an MCP server on stdio that speaks for a node of the swarm."""

from __future__ import annotations

from typing import Any

import anyio
import click

from ..errors import JoinError
from ..node import Node
from ._common import Failure, Settings, run, text_param
from ._swarm import JOIN_TIMEOUT, SERVICE_TIMINGS, SwarmOptions, swarm_options

__all__ = ["mcp_command"]


@click.command("mcp")
@swarm_options("mcp", discover=False)
@click.option(
    "--capability",
    "-C",
    "capabilities",
    multiple=True,
    callback=text_param,
    metavar="NAME",
    help="A capability this node offers (repeatable); team tasks requiring "
    "capabilities are claimed only if it has them all.",
)
@click.option(
    "--role",
    default="mcp",
    show_default=True,
    callback=text_param,
    help="The role shown by _node.info.",
)
@click.option(
    "--description",
    default="",
    callback=text_param,
    help="What the agent behind this node does (shown by _node.info).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--hold",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    help="Seconds an ask or team task for this node waits for the client to take "
    "it (next_ask, next_task) before it is dropped or handed back.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Lease of the team tasks this node offers (offer_task).",
)
@click.option(
    "--tasks/--no-tasks",
    default=True,
    show_default=True,
    help="Offer next_task: claim team tasks for the client.",
)
@click.pass_obj
def mcp_command(
    settings: Settings,
    /,
    swarm: str,
    capabilities: tuple[str, ...],
    role: str,
    description: str,
    port: int,
    hold: float,
    lease: float,
    tasks: bool,
    **node_options: Any,
) -> None:
    """Serve MCP on stdio: any MCP client joins SWARM through a node of its own.

    An MCP client (Claude Desktop, Claude Code, an IDE assistant...) launches this command;
    its tools list the peers, ask the swarm or one peer, call endpoints, offer and follow
    team tasks, read and post to conversations, and take asks and tasks other nodes send
    (next_ask/reply, next_task/progress/done/fail). stdout carries only MCP messages; logs
    go to stderr (-v). Runs until the client closes stdin.

    \b
    Examples:
      sn mcp myteam.example.com --seed 10.0.0.5:9999 --name claude --capability code-review
      sn --backend asyncio mcp lab --no-mdns --seed 127.0.0.1:9999
      SYNAPSE_SECRET=... sn mcp lab --seed 10.0.0.5:9999 --identity ~/.synapse/claude.key

    \b
    Client configuration (Claude Desktop's claude_desktop_config.json):
      {"mcpServers": {"swarm": {"command": "sn",
        "args": ["mcp", "myteam.example.com", "--seed", "10.0.0.5:9999"]}}}
    """
    options = SwarmOptions(swarm=swarm, **node_options)
    try:
        from ..mcp import serve_stdio
    except ImportError as exc:
        raise Failure(str(exc)) from None
    node = options.node(role=role, capabilities=list(capabilities), description=description,
                        port=port, **SERVICE_TIMINGS)  # fmt: skip

    async def main() -> None:
        async with node:
            await _join(node, options)
            await serve_stdio(node, tasks=tasks, hold=hold, lease=lease)

    run(settings, main)


async def _join(node: Node, options: SwarmOptions) -> None:
    """Join the seeds now; if none answers, say so on stderr and serve anyway (the node keeps
    trying, and the tools report that there are no peers)."""
    if not node.seeds:
        return
    try:
        with anyio.fail_after(JOIN_TIMEOUT):
            await node.join()
    except (JoinError, TimeoutError) as exc:
        detail = "; ".join(f"{s}: {w}" for s, w in exc.reasons.items()) if isinstance(
            exc, JoinError) else f"no seed answered within {JOIN_TIMEOUT:g} s"  # fmt: skip
        click.echo(f"sn mcp: could not join {options.where} yet ({detail}); serving anyway",
                   err=True)  # fmt: skip
