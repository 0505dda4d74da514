"""``sn a2a serve``: a swarm behind an A2A endpoint (needs ``pip install 'synapse-p2p[a2a]'``)."""

from __future__ import annotations

import inspect
from typing import Any

import anyio
import click

from ..node import Node
from ._common import (
    EXIT_USAGE,
    Failure,
    Settings,
    console,
    parse_address,
    progress,
    run,
    text_param,
)
from ._swarm import SwarmOptions, join

__all__ = ["a2a_group"]


def _seeds(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[Any]:
    return [parse_address(v) for v in values]


@click.group("a2a")
def a2a_group() -> None:
    """The swarm and A2A (Agent2Agent) agents: serve a swarm as an A2A agent.

    Needs the a2a extra: pip install 'synapse-p2p[a2a]'.
    """


@a2a_group.command("serve")
@click.argument("swarm", callback=text_param)
@click.option(
    "--seed",
    "-s",
    "seeds",
    multiple=True,
    callback=_seeds,
    metavar="HOST:PORT",
    help="A node of the swarm to join through (repeatable).",
)
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
    default="127.0.0.1",
    show_default=True,
    metavar="ADDRESS",
    help="Address the A2A endpoint listens on.",
)
@click.option(
    "--mdns/--no-mdns",
    default=None,
    help="Find the swarm on the LAN by mDNS and advertise the endpoint as _a2a._tcp "
    "[default: on without --seed].",
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
@click.option(
    "--name",
    "-n",
    default="a2a-gateway",
    show_default=True,
    callback=text_param,
    help="This node's name, as peers see it.",
)
@click.option(
    "--team",
    "-t",
    default="default",
    show_default=True,
    callback=text_param,
    help="Team inside the swarm (must match the other nodes').",
)
@click.option(
    "--node-bind",
    default=None,
    metavar="ADDRESS",
    help="Address the swarm node listens on [default: loopback when every seed is "
    "on loopback and mDNS is off, else all interfaces].",
)
@click.option(
    "--secret", envvar="SYNAPSE_SECRET", default=None, help="Swarm secret (env SYNAPSE_SECRET)."
)
@click.option("--identity", default=None, metavar="PATH", help="Node identity key file.")
@click.pass_obj
def serve_command(
    settings: Settings,
    swarm: str,
    seeds: list[tuple[str, int]],
    port: int,
    bind: str,
    mdns: bool | None,
    team_skills: tuple[str, ...],
    timeout: float,
    name: str,
    team: str,
    node_bind: str | None,
    secret: str | None,
    identity: str | None,
) -> None:
    """Serve SWARM as an A2A agent until Ctrl+C.

    \b
    The swarm's card:  http://BIND:PORT/.well-known/agent-card.json
    A member's card:   http://BIND:PORT/nodes/NODE_ID/.well-known/agent-card.json
    A message's metadata "skill" picks the members it goes to.

    \b
    Example:
      sn a2a serve lab --seed 127.0.0.1:9999 --port 8080 --team-skill build
    """
    try:
        from ..a2a import open_a2a_server
    except ImportError as exc:
        raise Failure(str(exc), EXIT_USAGE) from None
    options = SwarmOptions(swarm=swarm, team=team, name=name, seeds=seeds, mdns=mdns,
                           bind=node_bind)  # fmt: skip
    extra: dict[str, Any] = {}
    accepted = inspect.signature(Node).parameters
    for key, value in (("secret", secret), ("identity", identity)):
        if value is not None:
            if key not in accepted:
                raise Failure(f"--{key} is not supported by this version's nodes", EXIT_USAGE)
            extra[key] = value
    out = console()

    async def main() -> None:
        node = options.node(role="a2a", capabilities=[], **extra)
        async with node:
            with progress(console(stderr=True), f"joining {options.where}") as update:
                await join(node, options, update)
            async with open_a2a_server(
                node, bind=bind, port=port, team_skills=team_skills, timeout=timeout,
                mdns=options.use_mdns, name=f"synapse swarm {swarm}",
            ) as server:  # fmt: skip
                out.print(f"A2A endpoint of swarm {swarm!r}: {server.url}", highlight=False)
                out.print(f"agent card: {server.url}/.well-known/agent-card.json",
                          highlight=False)  # fmt: skip
                out.file.flush()
                await anyio.sleep_forever()

    run(settings, main, on_interrupt=lambda: 0)
