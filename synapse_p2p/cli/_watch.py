"""``sn watch``: a live view of a swarm's peers and chatter."""

from __future__ import annotations

import logging
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

from ..errors import SynapseError
from ..events import EventStored, NodeEvent, PeerHeartbeat, PeerJoined, PeerLeft, PeerOffline
from ..node import Node
from ..types import Broadcast, ConversationEvent, Peer
from ._chatter import Inbox, Line, causal_order, describe_event, describe_peer, kind_of, who
from ._common import EXIT_OK, Settings, clean, console, json_text, progress, run
from ._inspect import event_json
from ._swarm import SwarmOptions, join, swarm_options

__all__ = ["watch_command"]

log = logging.getLogger(__name__)

#: Conversation events older than this when the watcher starts are not shown; newer ones are
#: replayed (in creation order) before what happens next.
BACKLOG = 10.0
#: At start, the recent conversations are fetched from this many peers, at most...
REPLAY_SOURCES = 4
#: ...for at most this long.
REPLAY_TIMEOUT = 5.0
#: ...reading at most this many of the most recently active conversations.
REPLAY_CONVERSATIONS = 256
#: How long an offline peer stays listed.
OFFLINE_SHOWN = 180.0
#: A peer heard from this recently gets a bright dot.
FLASH = 0.4
CHATTER_LINES = 200
#: Narrower terminals show the peers above the chatter instead of beside it.
SIDE_BY_SIDE = 100

_PEER_LABELS = {"peer.joined": "JOINED", "peer.offline": "OFFLINE", "peer.left": "LEFT",
                "peer.heartbeat": "BEAT"}  # fmt: skip


class WatchState:
    """What the watcher has seen: the chatter lines and when each peer was last heard.

    It reads the node's events through a subscription taken at construction (run
    :meth:`take_events` in a task), so nothing that happens while joining is missed.
    :meth:`news` first replays the recent past (see :meth:`history`), then what comes.
    """

    def __init__(
        self, node: Node, *, heartbeats: bool, capabilities: bool, discover: float = 0.0
    ) -> None:
        self.node = node
        self.discover = discover
        self._peer_found = anyio.Event()
        self.heartbeats = heartbeats
        self.capabilities = capabilities
        self.lines: deque[Line] = deque(maxlen=CHATTER_LINES)
        self.inbox = Inbox()
        self.since = time.time() - BACKLOG
        self._replayed: set[str] = set()
        types: list[type[NodeEvent]] = [PeerJoined, PeerOffline, PeerLeft, EventStored]
        if heartbeats:
            types.append(PeerHeartbeat)
        self._events = node.subscribe(*types)

    def close(self) -> None:
        """Stop taking the node's events (:meth:`take_events` ends; what waits is dropped)."""
        self._events.close(discard=True)

    async def take_events(self) -> None:
        """Move the node's events into the inbox until cancelled."""
        with self._events:
            async for item in self._events:
                if isinstance(item, EventStored):
                    self.inbox.put(item.name, item.event)
                elif isinstance(item, PeerJoined | PeerOffline | PeerLeft | PeerHeartbeat):
                    self.inbox.put(item.name, item.peer)
                    if isinstance(item, PeerJoined):
                        self._peer_found.set()

    async def history(self) -> list[ConversationEvent]:
        """The conversation events of the last :data:`BACKLOG` seconds, in causal order.

        Fetches the recently active conversations from a few peers first (bounded by
        :data:`REPLAY_TIMEOUT`; a peer that fails is skipped), so the replay does not depend
        on when the node's own catching up happens to bring them in. With no peer yet (mDNS
        still looking), waits up to ``discover`` seconds for the first one.
        """
        if not self.node.peers:
            with anyio.move_on_after(self.discover):
                await self._peer_found.wait()
        with anyio.move_on_after(REPLAY_TIMEOUT):
            for peer in list(self.node.peers.values())[:REPLAY_SOURCES]:
                await self._catch_up(peer)
        node = self.node
        events = [
            event
            for cid in node.conversations()[:REPLAY_CONVERSATIONS]
            for event in node.conversation(cid)
            if event.created_at >= self.since
        ]
        return causal_order(events)

    async def _catch_up(self, peer: Peer) -> None:
        node = self.node
        try:
            digest = await node.call_peer(peer, "_synapse.conversation.digest")
            if not isinstance(digest, dict):
                return
            for cid, info in list(digest.items())[:REPLAY_CONVERSATIONS]:
                recent = isinstance(info, list) and len(info) == 2 and isinstance(
                    info[1], int | float) and info[1] >= self.since  # fmt: skip
                if isinstance(cid, str) and recent:
                    await node.sync_conversation(peer, cid, since=self.since)
        except (SynapseError, OSError) as exc:  # a 2.5.0 peer has no digest: skip it
            log.debug("no history from %s: %s", who(peer), exc)

    async def lines_as_they_come(self) -> Any:
        """Async iterator of new chatter lines."""
        async for _, _, line in self.news():
            yield line

    async def news(self) -> Any:
        """Async iterator of ``(event name, payload, chatter line)``: the replayed history
        first, then what is news."""
        for event in await self.history():
            self._replayed.add(event.event_id)
            line = describe_event(event)
            if line is not None:
                self.lines.append(line)
                yield EventStored.name, event, line
        while True:
            for name, payload, at in await self.inbox.next_stamped():
                line = self._line(name, payload, at)
                if line is not None:
                    self.lines.append(line)
                    yield name, payload, line

    def _line(self, name: str, payload: Any, at: float) -> Line | None:
        if isinstance(payload, ConversationEvent):
            if payload.event_id in self._replayed:
                self._replayed.discard(payload.event_id)
                return None  # shown in the replay
            if payload.created_at < self.since:
                return None  # older than the replay: not chatter
            return describe_event(payload)
        label = _PEER_LABELS.get(name)
        if not isinstance(payload, Peer) or label is None:
            return None
        return describe_peer(label, payload, at=at,
                             capabilities=self.capabilities and label == "JOINED")  # fmt: skip

    # -- the full-screen view ---------------------------------------------------------------------

    def peer_rows(self) -> list[RenderableType]:
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
            row = Text.assemble(
                ("● ", dot),
                f"{who(peer)[:16]:<16} ",
                (f"{status:<8}", dot),
                clean(f"{kind_of(peer):<10} {peer.address}:{peer.port}{caps}"),
            )
            row.no_wrap, row.overflow = True, "ellipsis"
            rows.append(row)
        if len(rows) == 3:
            rows.append(Text("no peers yet", style="dim"))
        return rows

    def chatter_panel(self, out: Console, width: int, height: int) -> RenderableType:
        """The newest chatter lines that fit in ``width`` x ``height`` cells, each wrapped
        (see :meth:`Line.rows`); an entry is shown whole or not at all, unless it alone is
        taller than the panel."""
        inner_width, inner_height = max(1, width - 4), max(1, height - 2)
        rows: list[Text] = []
        for line in reversed(self.lines):
            entry = line.rows(out, inner_width)
            if len(rows) + len(entry) > inner_height:
                if not rows:
                    rows = entry[:inner_height]
                break
            rows[:0] = entry
        body: RenderableType = Group(*rows) if rows else Text("waiting for chatter...", style="dim")
        return Panel(body, title="chatter", border_style="magenta")

    def render(self, out: Console) -> RenderableType:
        """Peers and chatter side by side on a wide terminal, else one above the other
        (the chatter then gets the whole width)."""
        width, height = out.size
        peers = self.peer_rows()
        swarm = Panel(Group(*peers), title="swarm", border_style="blue")
        layout = Layout()
        if width >= SIDE_BY_SIDE:
            side = width * 2 // 5
            chatter = self.chatter_panel(out, width - side, height)
            layout.split_row(Layout(swarm, size=side), Layout(chatter))
        else:
            top = min(len(peers) + 2, max(5, height // 3))
            chatter = self.chatter_panel(out, width, height - top)
            layout.split_column(Layout(swarm, size=top), Layout(chatter))
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
    with {"received_by": NAME}. It first replays the last 10 s of chatter, fetched from its
    peers, in the order things happened (with mDNS it waits up to --discover seconds for a
    first peer). Ctrl+C stops it.

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
    state = WatchState(node, heartbeats=show_heartbeats, capabilities=capabilities,
                       discover=options.discover)  # fmt: skip

    @node.endpoint("synapse.message", description="Show a broadcast message; reply received")
    async def message(text: Any = None, broadcast: Broadcast | None = None) -> dict[str, Any]:
        answer = {"received_by": node.name}
        if broadcast is not None:
            await node.reply(broadcast, answer)
        return answer

    out = console()
    full_screen = not plain and not as_json and out.is_terminal

    async def main() -> None:
        try:
            async with node:
                with progress(out, f"joining {options.where}") as update:
                    await join(node, options, update)  # meanwhile, events wait in the subscription
                async with anyio.create_task_group() as tg:
                    tg.start_soon(state.take_events)
                    if full_screen:
                        await _full_screen(state, out, interval)
                    elif as_json:
                        await _json_lines(state)
                    else:
                        await _plain(state, node)
        finally:
            state.close()  # (also when the join failed: take_events never ran)

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
