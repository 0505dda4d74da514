"""``sn watch``: a live view of a swarm's peers and chatter."""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import Any

import anyio
import click
from rich.console import Console, Group, RenderableType
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from ..node import Node
from ..types import Broadcast, ConversationEvent, Peer
from ._chatter import Inbox, Line, describe_event, describe_peer, kind_of, who
from ._common import EXIT_OK, Settings, clean, console, json_text, progress, run
from ._inspect import event_json
from ._swarm import SwarmOptions, join, swarm_options

__all__ = ["watch_command"]

#: Conversation events older than this when the watcher starts are history, not chatter
#: (the node syncs past conversations from its peers; they are not shown).
BACKLOG = 10.0
#: How long an offline peer stays listed.
OFFLINE_SHOWN = 180.0
#: A peer heard from this recently gets a bright dot.
FLASH = 0.4
CHATTER_LINES = 200


class WatchState:
    """What the watcher has seen: the chatter lines and when each peer was last heard."""

    def __init__(self, node: Node, *, heartbeats: bool, capabilities: bool) -> None:
        self.node = node
        self.heartbeats = heartbeats
        self.capabilities = capabilities
        self.lines: deque[Line] = deque(maxlen=CHATTER_LINES)
        self.inbox = Inbox()
        self.since = time.time() - BACKLOG
        for name in (
            "peer.joined",
            "peer.offline",
            "peer.left",
            "peer.heartbeat",
            "conversation.event",
        ):
            node.on(name)(self._handler(name))

    def _handler(self, name: str) -> Any:
        async def handler(payload: Any) -> None:
            self.inbox.put(name, payload)

        return handler

    async def lines_as_they_come(self) -> Any:
        """Async iterator of new chatter lines."""
        async for _, _, line in self.news():
            yield line

    async def news(self) -> Any:
        """Async iterator of ``(event name, payload, chatter line)`` for what is news."""
        while True:
            for name, payload in await self.inbox.next_batch():
                line = self._line(name, payload)
                if line is not None:
                    self.lines.append(line)
                    yield name, payload, line

    def _line(self, name: str, payload: Any) -> Line | None:
        if isinstance(payload, ConversationEvent):
            if payload.created_at < self.since:
                return None  # history the node catches up on, not chatter
            return describe_event(payload)
        if not isinstance(payload, Peer):
            return None
        if name == "peer.joined":
            return describe_peer("JOINED", payload, capabilities=self.capabilities)
        if name == "peer.offline":
            return describe_peer("OFFLINE", payload, capabilities=False)
        if name == "peer.left":
            return describe_peer("LEFT", payload, capabilities=False)
        if name == "peer.heartbeat" and self.heartbeats:
            return describe_peer("BEAT", payload, capabilities=False)
        return None

    # -- the full-screen view ---------------------------------------------------------------------

    def peers_panel(self) -> RenderableType:
        node = self.node
        now = anyio.current_time()
        title = node.swarm if node.team in (None, "default") else f"{node.swarm} / {node.team}"
        rows: list[RenderableType] = [
            Text.assemble("watching ", (clean(str(title)), "bold")),
            Text.assemble(
                ("● ", "bold green"), clean(f"self: {node.name} @ {node.address}:{node.port}")
            ),
            Text(""),
        ]
        table = node.membership.table
        states = sorted(table.peers.values(), key=lambda s: (not s.alive, who(s.peer)))
        stale_after = 2 * (node.heartbeat_interval or node.peer_timeout / 2)
        for state in states:
            if not state.alive and now - state.offline_since > OFFLINE_SHOWN:
                continue
            age = now - state.heard
            if not state.alive:
                dot, status = "red", "offline"
            elif age <= FLASH:
                dot, status = "bright_green", "alive"
            elif age <= stale_after:
                dot, status = "green", "alive"
            else:
                dot, status = "yellow", "stale"
            peer = state.peer
            caps = ""
            if self.capabilities and peer.capabilities:
                caps = f"  caps={','.join(peer.capabilities)}"
            rows.append(
                Text.assemble(
                    ("● ", dot),
                    f"{who(peer)[:16]:<16} ",
                    (f"{status:<8}", dot),
                    clean(f"{kind_of(peer):<10} {peer.address}:{peer.port}{caps}"),
                )
            )
        if not states:
            rows.append(Text("no peers yet", style="dim"))
        return Panel(Group(*rows), title="swarm", border_style="blue")

    def chatter_panel(self, height: int) -> RenderableType:
        shown = list(self.lines)[-max(1, height - 2) :]
        body: RenderableType = (
            Group(*(line.rich() for line in shown))
            if shown
            else Text("waiting for chatter...", style="dim")
        )
        return Panel(body, title="chatter", border_style="magenta")

    def render(self, out: Console) -> RenderableType:
        layout = Layout()
        layout.split_row(Layout(name="swarm", ratio=2), Layout(name="chatter", ratio=3))
        layout["swarm"].update(self.peers_panel())
        layout["chatter"].update(self.chatter_panel(out.size.height))
        return layout


@click.command("watch")
@swarm_options("watcher")
@click.option("--plain", is_flag=True,
              help="One line per event, no full-screen view (implied when stdout is not a "
              "terminal).")  # fmt: skip
@click.option("--capabilities/--no-capabilities", default=True, show_default=True,
              help="Show each peer's capabilities.")  # fmt: skip
@click.option("--show-heartbeats", is_flag=True, help="Show a line per heartbeat too.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=0.25, show_default=True,
              help="Screen refresh interval, in seconds.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True,
              help="JSON lines: one object per peer event and conversation event.")  # fmt: skip
@click.pass_obj
def watch_command(
    settings: Settings,
    /,
    swarm: str,
    plain: bool,
    capabilities: bool,
    show_heartbeats: bool,
    interval: float,
    as_json: bool,
    **node_options: Any,
) -> None:
    """Watch SWARM live: its peers (alive, stale, offline) and its chatter (joins, asks,
    ACKs, replies, errors, team task events, custom events).

    The watcher is a node of the swarm (role "observer"); it answers `sn broadcast` messages
    with {"received_by": NAME}. Ctrl+C stops it.

    \b
    Examples:
      sn watch myteam.example.com
      sn watch myteam.example.com --seed 10.0.0.5:9999 --no-mdns
      sn watch lab --plain --seed 127.0.0.1:9999 >> swarm.log

    Exit status: 0 when stopped with Ctrl+C, 3 if a seed cannot be reached or refuses.
    """
    options = SwarmOptions(swarm=swarm, **node_options)
    node = options.node(
        role="observer", capabilities=["watch"], heartbeat_interval=2, peer_timeout=6
    )
    state = WatchState(node, heartbeats=show_heartbeats, capabilities=capabilities)

    @node.endpoint("synapse.message", description="Show a broadcast message; reply received")
    async def message(text: Any = None, broadcast: Broadcast | None = None) -> dict[str, Any]:
        answer = {"received_by": node.name}
        if broadcast is not None:
            await node.reply(broadcast, answer)
        return answer

    out = console()
    full_screen = not plain and not as_json and out.is_terminal

    async def main() -> None:
        async with node:
            with progress(out, f"joining {options.where}") as update:
                await join(node, options, update)
            if full_screen:
                await _full_screen(state, out, interval)
            elif as_json:
                await _json_lines(state)
            else:
                await _plain(state, node)

    run(settings, main, on_interrupt=lambda: EXIT_OK)


async def _plain(state: WatchState, node: Node) -> None:
    title = node.swarm if node.team in (None, "default") else f"{node.swarm} / {node.team}"
    click.echo(clean(f"watching {title} as {node.name} @ {node.address}:{node.port}"))
    sys.stdout.flush()
    async for line in state.lines_as_they_come():
        click.echo(line.plain())
        sys.stdout.flush()


async def _json_lines(state: WatchState) -> None:
    async for name, payload, _ in state.news():
        if isinstance(payload, ConversationEvent):
            record = {"event": name, **event_json(payload)}
        else:
            record = {"event": name, "peer": payload.to_dict()}
        click.echo(json_text(record, indent=None))
        sys.stdout.flush()


async def _full_screen(state: WatchState, out: Console, interval: float) -> None:
    with Live(console=out, screen=True, auto_refresh=False, transient=True) as live:
        async with anyio.create_task_group() as tg:

            async def collect() -> None:
                async for _ in state.lines_as_they_come():
                    pass

            tg.start_soon(collect)
            while True:
                live.update(state.render(out), refresh=True)
                await anyio.sleep(interval)
