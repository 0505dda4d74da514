"""``sn a2a serve``: a swarm behind an A2A endpoint (needs ``pip install 'synapse-p2p[a2a]'``)."""

from __future__ import annotations

from typing import Any

import anyio
import click

from ._common import EXIT_USAGE, Failure, Settings, console, progress, run
from ._swarm import SERVICE_TIMINGS, SwarmOptions, join, swarm_options

__all__ = ["a2a_group"]


@click.group("a2a")
def a2a_group() -> None:
    """The swarm and A2A (Agent2Agent) agents: serve a swarm as an A2A agent.

    Needs the a2a extra: pip install 'synapse-p2p[a2a]'.
    """


@a2a_group.command("serve")
@swarm_options("a2a-gateway", bind_flag="--node-bind", discover=False)
@click.option(
    "--port",
    "-p",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="HTTP port of the A2A endpoint (0: any free port).",
)
@click.option(
    "--bind",
    "http_bind",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDRESS",
    help="Address the A2A endpoint listens on.",
)
@click.option(
    "--team-skill",
    "team_skills",
    multiple=True,
    metavar="SKILL",
    help="A skill whose messages become team tasks run by exactly one worker (repeatable).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=300.0,
    show_default=True,
    help="Longest run of one A2A task, in seconds.",
)
@click.pass_obj
def serve_command(
    settings: Settings,
    /,
    swarm: str,
    port: int,
    http_bind: str,
    team_skills: tuple[str, ...],
    timeout: float,
    **node_options: Any,
) -> None:
    """Serve SWARM as an A2A agent until Ctrl+C.

    \b
    The swarm's card:  http://BIND:PORT/.well-known/agent-card.json
    A member's card:   http://BIND:PORT/nodes/NODE_ID/.well-known/agent-card.json
    A message's metadata "skill" picks the members it goes to. With mDNS (on without
    --seed) the endpoint is also advertised as _a2a._tcp.

    \b
    Example:
      sn a2a serve lab --seed 127.0.0.1:9999 --port 8080 --team-skill build
    """
    try:
        from ..a2a import open_a2a_server
    except ImportError as exc:
        raise Failure(str(exc), EXIT_USAGE) from None
    options = SwarmOptions(swarm=swarm, **node_options)
    node = options.node(role="a2a", capabilities=[], **SERVICE_TIMINGS)
    out = console()

    async def main() -> None:
        async with node:
            with progress(console(stderr=True), f"joining {options.where}") as update:
                await join(node, options, update)
            async with open_a2a_server(
                node, bind=http_bind, port=port, team_skills=team_skills, timeout=timeout,
                mdns=options.use_mdns, name=f"synapse swarm {swarm}",
            ) as server:  # fmt: skip
                out.print(f"A2A endpoint of swarm {swarm!r}: {server.url}", highlight=False)
                out.print(f"agent card: {server.url}/.well-known/agent-card.json",
                          highlight=False)  # fmt: skip
                out.file.flush()
                await anyio.sleep_forever()

    run(settings, main, on_interrupt=lambda: 0)
