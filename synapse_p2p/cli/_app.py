"""The ``sn`` command group."""

from __future__ import annotations

import click

from .. import __version__
from ._a2a import a2a_group
from ._common import Settings, configure_logging
from ._dashboard import dashboard_command
from ._demo import demo_command
from ._inspect import conversation_command, tasks_command
from ._keys import keygen_command
from ._mcp import mcp_command
from ._swarm import ask_command, broadcast_command
from ._tools import (
    artifacts_command,
    call_command,
    info_command,
    list_swarms_command,
    methods_command,
    peers_command,
    stats_command,
)
from ._watch import watch_command

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="sn")
@click.option("-v", "--verbose", count=True,
              help="Show the library's log on stderr (-v: info, -vv: debug).")  # fmt: skip
@click.option("--backend", type=click.Choice(["trio", "asyncio"]), default="trio",
              show_default=True, envvar="SYNAPSE_BACKEND",
              help="Event loop to run on (env SYNAPSE_BACKEND).")  # fmt: skip
@click.pass_context
def cli(ctx: click.Context, verbose: int, backend: str) -> None:
    """synapse-p2p: drive a swarm of nodes from the terminal.

    \b
    Start here:
      sn demo                                  a local swarm on loopback, no setup
      sn ask SWARM "task" --seed HOST:PORT     hand work to a swarm and print the replies
      sn watch SWARM                           live view of the peers and the conversation
      sn dashboard SWARM                       the same, as a live web page
      sn info HOST:PORT                        who is that node?

    Run `sn COMMAND --help` for a command's options and examples.
    """
    configure_logging(verbose)
    ctx.obj = Settings(backend="asyncio" if backend == "asyncio" else "trio", verbose=verbose)


cli.add_command(demo_command)
cli.add_command(ask_command)
cli.add_command(broadcast_command)
cli.add_command(watch_command)
cli.add_command(conversation_command)
cli.add_command(tasks_command)
cli.add_command(keygen_command)
cli.add_command(dashboard_command)
cli.add_command(list_swarms_command)
cli.add_command(mcp_command)
cli.add_command(a2a_group)
for command in (
    call_command,
    info_command,
    peers_command,
    methods_command,
    artifacts_command,
    stats_command,
):
    cli.add_command(command)


def main() -> None:
    """Entry point of the ``sn`` console script."""
    cli(prog_name="sn")
