"""Looking at past and running work: ``sn conversation`` (and its ``--json`` lines)."""

from __future__ import annotations

import time
from typing import Any

import anyio
import click
from rich.table import Table
from rich.text import Text

from .._validate import format_address
from ..errors import SynapseError
from ..teams import TaskView, task_view
from ..types import ConversationEvent, Peer
from ._chatter import describe_event
from ._common import EXIT_NO_ANSWER, Failure, Settings, console, json_text, run
from ._swarm import SwarmOptions, connect, swarm_options

__all__ = ["conversation_command", "tasks_command"]

#: Peers asked for the conversation, at most (the first that has it is enough; more fill gaps).
MAX_SOURCES = 8


def event_json(event: ConversationEvent) -> dict[str, Any]:
    """One event as a JSON line: the wire map, plus the author's name for reading."""
    data = event.to_dict()
    data["author"] = event.peer.name or event.peer.id[:8]
    return data


@click.command("conversation")
@swarm_options("reader")
@click.argument("conversation_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, help="Seconds to spend fetching it.")  # fmt: skip
@click.pass_obj
def conversation_command(
    settings: Settings,
    /,
    swarm: str,
    conversation_id: str,
    as_json: bool,
    timeout: float,
    **node_options: Any,
) -> None:
    """The timeline of conversation ID (an ask's id, a team task's id...) as the swarm holds it.

    Joins the swarm, fetches the conversation from its peers (paged) and prints its events
    in order: the message, ACKs, progress, replies, errors, task events, summaries.

    \b
    Examples:
      sn conversation myteam.example.com 019e4ab0-1d0d-709a-b3c5-5c1a0f6f2e11
      sn conversation lab 019e4ab0-... --seed 127.0.0.1:9999 --json

    Exit status: 0 with at least one event, 3 if the swarm could not be reached, 4 if no peer
    holds the conversation.
    """
    options = SwarmOptions(swarm=swarm, **node_options)
    node = options.node(role="reader", capabilities=[])
    out = console()

    async def main() -> list[ConversationEvent]:
        async with node:
            await connect(node, options, out)
            with anyio.move_on_after(timeout):
                for peer in list(node.peers.values())[:MAX_SOURCES]:
                    try:
                        await node.sync_conversation(peer, conversation_id)
                    except (SynapseError, OSError):
                        continue  # another peer may have it
            return node.conversation(conversation_id)

    events = run(settings, main)
    if not events:
        raise Failure(f"no peer of {options.where} holds conversation {conversation_id}",
                      EXIT_NO_ANSWER)  # fmt: skip
    for event in events:
        if as_json:
            click.echo(json_text(event_json(event), indent=None))
            continue
        line = describe_event(event)
        if line is not None:
            out.print(line.rich())


#: ``sn tasks`` reads at most this many of the most recently active conversations.
MAX_TASK_CONVERSATIONS = 256


@click.command("tasks")
@swarm_options("reader")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per task.")
@click.option("--all", "show_all", is_flag=True, help="Finished tasks too.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=15.0,
              show_default=True, help="Seconds to spend fetching.")  # fmt: skip
@click.pass_obj
def tasks_command(
    settings: Settings,
    /,
    swarm: str,
    as_json: bool,
    show_all: bool,
    timeout: float,
    **node_options: Any,
) -> None:
    """The team tasks of the swarm: state, assignee, attempt, lease deadline, last progress.

    Joins the swarm, reads the most recently active conversations of its peers and shows
    those that are team tasks (open ones; --all for finished ones too).

    \b
    Examples:
      sn tasks myteam.example.com
      sn tasks lab --seed 127.0.0.1:9999 --all --json
    """
    options = SwarmOptions(swarm=swarm, **node_options)
    node = options.node(role="reader", capabilities=[])
    out = console()

    async def main() -> list[TaskView]:
        async with node:
            await connect(node, options, out)
            with anyio.move_on_after(timeout):
                for peer in list(node.peers.values())[:MAX_SOURCES]:
                    await _fetch_tasks(node, peer)
            views = [task_view(node.conversation(cid)) for cid in node.conversations()]
            return [v for v in views if v is not None]

    views = run(settings, main)
    if not show_all:
        views = [v for v in views if v.status not in ("done", "failed")]
    views.sort(key=lambda v: v.updated_at, reverse=True)
    if as_json:
        for view in views:
            click.echo(json_text(view.to_dict(), indent=None))
        return
    if not views:
        out.print("no open tasks" if not show_all else "no tasks")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("task", "title", "status", "attempt", "assignee", "lease", "progress"):
        table.add_column(column)
    now = time.time()
    for view in views:
        lease = "-" if view.lease_deadline is None else f"{view.lease_deadline - now:+.0f} s"
        note = view.last_progress or view.error or ""
        table.add_row(
            Text(view.id[:8]),
            Text(view.title),
            Text(view.status),
            Text(str(view.attempt)),
            Text(view.assignee or "-"),
            Text(lease),
            Text(note),
        )
    out.print(table)


async def _fetch_tasks(node: Any, peer: Peer) -> None:
    """Sync the peer's recent conversations that this node lacks or is behind on."""
    try:
        digest = await node.call_peer(peer, "_synapse.conversation.digest")
    except (SynapseError, OSError):
        return
    if not isinstance(digest, dict):
        return
    for cid in list(digest)[:MAX_TASK_CONVERSATIONS]:
        if not isinstance(cid, str):
            continue
        try:
            await node.sync_conversation(peer, cid)
        except (SynapseError, OSError):
            where = format_address(peer.address, peer.port)
            click.echo(f"sn: could not read {cid[:8]} from {where}", err=True)
            return
