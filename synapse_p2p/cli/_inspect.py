"""Looking at past and running work: ``sn conversation`` (and its ``--json`` lines)."""

from __future__ import annotations

from typing import Any

import anyio
import click

from ..errors import SynapseError
from ..types import ConversationEvent
from ._chatter import describe_event
from ._common import EXIT_NO_ANSWER, Failure, Settings, console, json_text, run
from ._swarm import SwarmOptions, connect, swarm_options

__all__ = ["conversation_command"]

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
