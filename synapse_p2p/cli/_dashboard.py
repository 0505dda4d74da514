"""``sn dashboard``: join a swarm as an observer and serve its live web view."""

from __future__ import annotations

import functools
import sys
from typing import Any

import anyio
import click

from ..dashboard import Limits, serve_dashboard
from ._common import EXIT_OK, Failure, Settings, clean, console, progress, run
from ._swarm import SERVICE_TIMINGS, SwarmOptions, join, swarm_options

__all__ = ["dashboard_command"]

#: The page never shows more conversations than the dashboard's model keeps, so neither does
#: the observer's log (each costs its events in memory: about 3 KiB each, 401 per ask in a swarm
#: of 200, so ~1.1 GiB at 1000 conversations).
OBSERVER_CONVERSATIONS = Limits().conversations
OBSERVER_EVENTS = 500


@click.command("dashboard")
@swarm_options("dashboard", bind_flag="--node-bind")
@click.option(
    "--port",
    "-p",
    "http_port",
    type=click.IntRange(0, 65535),
    default=8377,
    show_default=True,
    help="Port of the web page (0: any free port).",
)
@click.option(
    "--bind",
    "http_bind",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDRESS",
    help="Address the web page listens on. Anything but loopback shows the swarm to your network.",
)
@click.option(
    "--allow-ask",
    is_flag=True,
    help="Let the page send asks to the swarm: only a browser on this machine that "
    "holds the session token printed with the URL.",
)
@click.pass_obj
def dashboard_command(
    settings: Settings,
    /,
    swarm: str,
    http_port: int,
    http_bind: str,
    allow_ask: bool,
    **node_options: Any,
) -> None:
    """Serve a live web view of SWARM: its peers, a picture of who talks to whom, the
    conversations with their timelines and ask progress, and the team board.

    The dashboard is a node of the swarm (role "observer"). It prints the page's URL; the
    page updates itself over a WebSocket. Read-only unless --allow-ask. Ctrl+C stops it.

    \b
    Examples:
      sn dashboard lab --seed 127.0.0.1:9999 --no-mdns
      sn dashboard lab --seed 10.0.0.5:9999 --port 8080 --allow-ask

    Exit status: 0 when stopped with Ctrl+C, 3 if a seed cannot be reached or refuses,
    1 if the web port cannot be bound.
    """
    options = SwarmOptions(swarm=swarm, **node_options)
    # The observer keeps every conversation it hears: bound its log (the oldest conversations
    # are forgotten past OBSERVER_CONVERSATIONS, long ones compacted past OBSERVER_EVENTS).
    node = options.node(
        role="observer",
        capabilities=["dashboard"],
        conversation_max_conversations=OBSERVER_CONVERSATIONS,
        conversation_max_events=OBSERVER_EVENTS,
        **SERVICE_TIMINGS,
    )
    out = console()

    async def main() -> None:
        async with node:
            with progress(out, f"joining {options.where}") as update:
                await join(node, options, update)
            try:
                async with anyio.create_task_group() as tg:
                    serve = functools.partial(
                        serve_dashboard, node, port=http_port, bind=http_bind, allow_ask=allow_ask
                    )
                    dashboard = await tg.start(serve)
                    click.echo(clean(f"dashboard of {options.where}: {dashboard.open_url}"))
                    if allow_ask:
                        click.echo("asks allowed from this machine with the token in that URL")
                    sys.stdout.flush()
            except (OSError, ExceptionGroup) as exc:  # a group from the task group
                error = _os_error(exc)
                if error is None:
                    raise
                reason = error.strerror or str(error)
                raise Failure(f"cannot serve on {http_bind}:{http_port}: {reason}") from None

    run(settings, main, on_interrupt=lambda: EXIT_OK)


def _os_error(exc: BaseException) -> OSError | None:
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _os_error(inner)
            if found is not None:
                return found
    return None
