"""Joining a swarm from the command line: ``sn ask`` and ``sn broadcast``."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import click
from rich.console import Console
from rich.text import Text

from .._config import parse_seed
from ..conversations import BroadcastStatus
from ..errors import JoinError
from ..events import EventStored, PeerLeft, PeerOffline
from ..node import Node
from ..types import ConversationEvent, NodeKind, Peer
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NO_ANSWER,
    EXIT_OK,
    EXIT_UNREACHABLE,
    Failure,
    Settings,
    Trust,
    clean,
    console,
    format_result,
    json_text,
    name_param,
    parse_key_value,
    parse_seed_option,
    progress,
    run,
    text_param,
    tick_progress,
    trust_options,
)

__all__ = [
    "SERVICE_TIMINGS",
    "SwarmOptions",
    "ask_command",
    "broadcast_command",
    "connect",
    "swarm_options",
]

F = TypeVar("F", bound=Callable[..., Any])

#: After every peer that ACKed has answered, wait this long for late ACKs and replies.
SETTLE = 0.25
#: With mDNS, peers are taken as all found once none is new for this long.
MDNS_QUIET = 0.5
#: The longest wait for the seeds to answer the join.
JOIN_TIMEOUT = 10.0
#: Command-line nodes notice a dead peer within about 6 s (the library's default is 25 s).
CLI_TIMINGS: dict[str, float] = {"heartbeat_interval": 1.0, "peer_timeout": 5.0}
#: Commands that serve for hours (``sn dashboard``, ``sn mcp``, ``sn a2a serve``): a dead peer
#: is noticed within about 12 s, and a loaded machine or a large swarm (every node heartbeats
#: every other) does not make them mark live peers offline.
SERVICE_TIMINGS: dict[str, float] = {"heartbeat_interval": 2.0, "peer_timeout": 10.0}


@dataclass
class SwarmOptions:
    """How a command-line node finds its swarm."""

    swarm: str
    team: str = "default"
    name: str = ""
    #: ``(host, port)`` pairs and ``ws://``/``wss://`` URLs.
    seeds: list[tuple[str, int] | str] = field(default_factory=list)
    mdns: bool | None = None  # None: on when no seed is given
    discover: float = 3.0
    bind: str | None = None
    #: ``--secret`` and ``--identity``.
    trust: Trust = field(default_factory=Trust)

    def __post_init__(self) -> None:
        if not self.seeds and self.mdns is False:
            raise click.UsageError("nothing to join: give --seed HOST:PORT, or allow --mdns")

    @property
    def use_mdns(self) -> bool:
        return not self.seeds if self.mdns is None else self.mdns

    @property
    def where(self) -> str:
        team = f" team {self.team!r}" if self.team != "default" else ""
        return f"swarm {self.swarm!r}{team}"

    def bind_address(self) -> str:
        """Loopback when every seed is on loopback and mDNS is off, else every interface."""
        if self.bind is not None:
            return self.bind
        hosts = [parse_seed(seed)[0] for seed in self.seeds]
        if hosts and not self.use_mdns and all(_is_loopback(h) for h in hosts):
            return "::1" if all(":" in h for h in hosts) else "127.0.0.1"
        return "0.0.0.0"

    def node(self, *, role: str, capabilities: list[str], **settings: Any) -> Node:
        """The command's node; a :class:`Failure` if ``--identity`` names a bad key file."""
        settings = {**CLI_TIMINGS, **self.trust.settings(), **settings}
        return Node(
            bind=self.bind_address(),
            name=self.name,
            role=role,
            kind=NodeKind.NODE,
            swarm=self.swarm,
            team=self.team,
            seeds=self.seeds,
            mdns=self.use_mdns,
            capabilities=capabilities,
            **settings,
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _seed(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[Any]:
    return [parse_seed_option(v) for v in values]


def swarm_options(
    default_name: str, *, bind_flag: str = "--bind", discover: bool = True
) -> Callable[[F], F]:
    """The options every command that joins a swarm shares: ``SWARM``, ``--team``,
    ``--name``, ``--seed``, ``--mdns``, ``--discover``, the listen address, ``--secret`` and
    ``--identity``; the command gets them as keyword arguments for :class:`SwarmOptions`.

    ``bind_flag`` names the node's listen-address option (``sn dashboard`` and ``sn a2a
    serve`` keep ``--bind`` for their web server). ``discover=False`` leaves out
    ``--discover``, for commands that serve rather than wait for peers.
    """

    def decorate(fn: F) -> F:
        fn = trust_options(fn)
        for option in reversed(
            [
                click.argument("swarm", callback=name_param),
                click.option("--team", "-t", default="default", show_default=True,
                             callback=name_param,
                             help="Team inside the swarm (must match the other nodes')."),
                click.option("--name", "-n", default=default_name, show_default=True,
                             callback=text_param, help="This node's name, as peers see it."),
                click.option("--seed", "-s", "seeds", multiple=True, callback=_seed,
                             metavar="HOST:PORT|URL",
                             help="A node of the swarm to join through (repeatable; "
                                  "ws:// or wss:// URLs join over WebSocket)."),
                click.option("--mdns/--no-mdns", default=None,
                             help="Find nodes on the LAN by mDNS [default: on without --seed]."),
                *([click.option("--discover", type=click.FloatRange(min=0), default=3.0,
                                show_default=True,
                                help="Longest wait, in seconds, for peers after joining (it "
                                "ends once the peers found are verified and, with mDNS, none "
                                "is new for 0.5 s).")] if discover else []),
                click.option(bind_flag, "bind", default=None, metavar="ADDRESS",
                             help="Address this node listens on [default: loopback when every "
                             "seed is on loopback and mDNS is off, else all interfaces]."),
            ]
        ):  # fmt: skip
            fn = option(fn)
        return fn

    return decorate


async def join(node: Node, options: SwarmOptions, update: Callable[[str], None]) -> None:
    """Join the seeds, if any: a :class:`Failure` (exit 3) if none answers and accepts
    within :data:`JOIN_TIMEOUT` seconds."""
    if not node.seeds:
        return
    update(f"joining {options.where}")
    try:
        with anyio.fail_after(JOIN_TIMEOUT):
            await node.join()
    except JoinError as exc:
        reasons = "; ".join(f"{seed}: {why}" for seed, why in exc.reasons.items())
        raise Failure(f"could not join {options.where}: {reasons}", EXIT_UNREACHABLE) from None
    except TimeoutError:
        seeds = ", ".join(f"{h}:{p}" for h, p in node.seeds)
        raise Failure(
            f"could not join {options.where}: no seed answered within {JOIN_TIMEOUT:g} s ({seeds})",
            EXIT_UNREACHABLE,
        ) from None


async def connect(node: Node, options: SwarmOptions, out: Console) -> None:
    """Join the seeds (a :class:`Failure` if none can be joined), then wait for the peers.

    The wait ends once every member found has been verified (with mDNS, also no new one for
    :data:`MDNS_QUIET` seconds), or after ``--discover`` seconds. Fails if no peer was found.
    """
    with progress(out, f"joining {options.where}") as update:
        await join(node, options, update)
        update(f"looking for the peers of {options.where}")
        with anyio.move_on_after(options.discover):
            # No single event says "every peer was found and checked": poll briefly. With
            # mDNS, nodes answer over a second or so; wait until none is new for a moment.
            quiet = MDNS_QUIET if node.mdns_enabled else 0.0
            count, since = -1, anyio.current_time()
            while True:
                now = anyio.current_time()
                if len(node.peers) != count:
                    count, since = len(node.peers), now
                if node.peers and not node.membership.settling and now - since >= quiet:
                    break
                await anyio.sleep(0.02)
    if not node.peers:
        hint = "give --seed HOST:PORT" if not node.seeds else "is any node of it running?"
        raise Failure(f"no peers found in {options.where} ({hint})", EXIT_UNREACHABLE)


def _who(peer: Peer) -> str:
    return clean(peer.name or peer.id[:8])


class ReplyWatch:
    """Follows one broadcast's ACKs, replies and errors, and decides when it is over.

    It is over once the broadcast call to every peer has returned (a peer that takes the
    task ACKs; one that doesn't answers without) and every peer that ACKed has replied,
    failed or gone offline, and then nothing new came for :data:`SETTLE` seconds (an ACK or
    a reply may still be on its way); or after ``timeout`` seconds without news.

    It reads the node's events through a subscription taken at construction (so nothing
    said before the broadcast leaves is missed) and follows the broadcast's status with
    ``node.broadcast_changes``: it wakes on news only, never polls. What arrives together is
    printed in conversation order.
    """

    def __init__(self, node: Node, out: Console, *, show_acks: bool, as_json: bool = False) -> None:
        self.node = node
        self.as_json = as_json
        self.out = out
        self.show_acks = show_acks
        self.nonce: str | None = None
        self.acked: dict[str, Peer] = {}
        self.answered: set[str] = set()
        self.replies = 0
        self.errors = 0
        self.last_news = 0.0
        self._inbox: list[ConversationEvent | Peer] = []
        self._arrived = anyio.Event()
        self._events = node.subscribe(EventStored, PeerOffline, PeerLeft)

    async def _take_events(self) -> None:
        async for item in self._events:
            if isinstance(item, EventStored):
                if item.event.kind in ("ack", "reply", "error", "progress"):
                    self._inbox.append(item.event)
                    self._arrived.set()
            elif isinstance(item, PeerOffline | PeerLeft):
                self._inbox.append(item.peer)
                self._arrived.set()

    async def _follow(self, nonce: str) -> None:
        async for _ in self.node.broadcast_changes(nonce):
            self._arrived.set()

    def _state(self) -> BroadcastStatus | None:
        return None if self.nonce is None else self.node.broadcast_status(self.nonce)

    def _drain(self) -> None:
        inbox, self._inbox = self._inbox, []
        self._arrived = anyio.Event()
        events = sorted((e for e in inbox if isinstance(e, ConversationEvent)),
                        key=lambda e: (e.created_at, e.event_id))  # fmt: skip
        for event in events:
            if self.nonce in (event.conversation_id, event.parent_id):
                self._take(event)
        for peer in inbox:
            if isinstance(peer, Peer) and peer.id in self._taken() and peer.id not in self.answered:
                self.answered.add(peer.id)
                text = Text(f"✗ {_who(peer)} went offline before replying", style="red")
                self._say(text, "offline", peer)
                self.last_news = anyio.current_time()

    def _say(self, text: Text, kind: str, peer: Peer, **fields: Any) -> None:
        """A line for a person, or with ``--json`` one JSON object per line."""
        if self.as_json:
            record = {"event": kind, "peer": peer.name, "peer_id": peer.id, **fields}
            click.echo(json_text(record, indent=None))
        else:
            self.out.print(text)

    def _taken(self) -> set[str]:
        """Every peer known to have taken the task: its ACK event came, or its call said so."""
        state = self._state()
        return set(self.acked) | (state.acked if state is not None else set())

    def _take(self, event: ConversationEvent) -> None:
        peer, who = event.peer, _who(event.peer)
        if peer.id == self.node.node_id:
            return
        if event.kind == "ack":
            if peer.id in self.acked:
                return
            self.acked[peer.id] = peer
            if self.show_acks:
                self._say(Text(f"✓ {who} acked", style="green"), "ack", peer)
        elif event.kind == "reply":
            if peer.id in self.answered:
                return
            self.answered.add(peer.id)
            self.replies += 1
            result = event.payload.get("result")
            text = Text.assemble(("- ", "bold"), (who, "bold cyan"), ": ", format_result(result))
            self._say(text, "reply", peer, result=result)
        elif event.kind == "progress":
            if peer.id in self.answered:
                return
            message = clean(str(event.payload.get("message", "")))
            data = {k: v for k, v in event.payload.items() if k != "message"}
            self._say(Text(f"… {who}: {message}", style="dim"), "progress", peer,
                      message=event.payload.get("message"), data=data)  # fmt: skip
        elif event.kind == "error":
            if peer.id in self.answered:
                return
            self.answered.add(peer.id)
            self.errors += 1
            error = event.payload.get("error")
            text = Text(f"✗ {who} failed: {clean(str(error))}", style="red")
            self._say(text, "error", peer, error=error, type=event.payload.get("type"))
        else:
            return
        self.last_news = anyio.current_time()

    @property
    def waiting_on(self) -> list[str]:
        names = []
        for pid in sorted(self._taken() - self.answered):
            peer = self.acked.get(pid) or self.node.peers.get(pid)
            names.append(_who(peer) if peer is not None else pid[:8])
        return names

    def status(self) -> str:
        waiting = self.waiting_on
        if waiting:
            return f"waiting for {', '.join(waiting)}"
        state = self._state()
        if state is not None and state.pending:
            return f"waiting for {len(state.pending)} node(s) to take the ask"
        return "waiting for ACKs and replies"

    def _settled(self) -> bool:
        state = self._state()
        return (state is None or not state.pending) and not (self._taken() - self.answered)

    async def wait(self, nonce: str, *, timeout: float, forever: bool) -> None:
        """Until it is over (see the class documentation); with ``forever``, until
        cancelled."""
        self.nonce = nonce
        self.last_news = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._take_events)
            tg.start_soon(self._follow, nonce)
            while True:
                self._drain()
                if forever:
                    deadline = float("inf")
                elif self._settled():
                    deadline = self.last_news + SETTLE
                else:
                    deadline = self.last_news + timeout
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    break
                before = self._progress()
                with anyio.move_on_after(remaining):  # until news, or the deadline
                    await self._arrived.wait()
                if self._progress() != before:
                    self.last_news = anyio.current_time()
            tg.cancel_scope.cancel()
        self._events.close(discard=True)

    def _progress(self) -> tuple[int, int]:
        state = self._state()
        return (len(state.pending) if state is not None else 0, len(self._taken()))

    def exit_code(self, timeout: float) -> int:
        quiet = f"nothing new for {timeout:g} s"
        if self.replies:
            if self.waiting_on and not self.as_json:
                pending = ", ".join(self.waiting_on)
                self.out.print(Text(f"gave up on {pending}: {quiet}", style="yellow"))
            return EXIT_OK
        if self.errors:
            raise Failure("every answer was an error", EXIT_FAILED)
        if self.waiting_on:
            detail = f"{', '.join(self.waiting_on)} acked, then {quiet}"
            raise Failure(f"no replies ({detail})", EXIT_NO_ANSWER)
        if self._settled():
            if self.show_acks:
                raise Failure("no node took the task (none has an ask handler?)", EXIT_NO_ANSWER)
            raise Failure("no replies: every node answered the call without one", EXIT_NO_ANSWER)
        raise Failure(f"no replies ({quiet})", EXIT_NO_ANSWER)


def run_broadcast(
    settings: Settings,
    options: SwarmOptions,
    *,
    label: str,
    role: str,
    endpoint: str,
    args: list[Any],
    kwargs: dict[str, Any],
    timeout: float,
    forever: bool,
    as_json: bool = False,
) -> None:
    out = console()
    node = options.node(role=role, capabilities=[role])
    watch = ReplyWatch(node, out, show_acks=endpoint == "synapse.ask", as_json=as_json)
    waiting = (
        "waiting for ACKs and replies... press Ctrl+C to stop"
        if endpoint == "synapse.ask"
        else "waiting for replies... press Ctrl+C to stop"
    )

    async def main() -> int:
        async with node:
            await connect(node, options, out)
            broadcast = await node.broadcast(endpoint, *args, **kwargs)
            if as_json:
                click.echo(json_text({"event": label, "id": broadcast.nonce}, indent=None))
            else:
                out.print(f"{label}: {broadcast.nonce}")
                out.print(waiting)
            with progress(out, watch.status()) as update:
                async with anyio.create_task_group() as tg:
                    if out.is_terminal:
                        tg.start_soon(tick_progress, update, watch.status)
                    await watch.wait(broadcast.nonce, timeout=timeout, forever=forever)
                    tg.cancel_scope.cancel()
            return watch.exit_code(timeout)

    def interrupted() -> int:
        return EXIT_OK if watch.replies else EXIT_INTERRUPTED

    code = run(settings, main, on_interrupt=interrupted)
    if code:
        raise click.exceptions.Exit(code)


def _context(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> Any:
    return dict(parse_key_value(v) for v in values)


def _timing_options(fn: F) -> F:
    fn = click.option("--json", "as_json", is_flag=True,
                      help="JSON lines: the id, then one object per ACK, progress, reply, "
                      "error or peer gone.")(fn)  # fmt: skip
    fn = click.option("--forever", is_flag=True,
                      help="Keep waiting for replies until Ctrl+C.")(fn)  # fmt: skip
    fn = click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0,
                      show_default=True,
                      help="Give up after this many seconds with no ACK or reply.")(fn)  # fmt: skip
    return fn


@click.command("ask")
@swarm_options("asker")
@click.argument("task")
@click.option("--context", "-c", "context", multiple=True, callback=_context, metavar="KEY=VALUE",
              help="Context for the task (repeatable; values are strings).")  # fmt: skip
@_timing_options
@click.pass_obj
def ask_command(
    settings: Settings,
    /,
    swarm: str,
    task: str,
    context: dict[str, str],
    timeout: float,
    forever: bool,
    as_json: bool,
    **node_options: Any,
) -> None:
    """Ask the swarm to do TASK and print the ACKs and replies as they come.

    Every node with an ask handler decides for itself whether to help: it ACKs at once, then
    replies when its handler is done. The command ends once every node that ACKed has
    replied (or failed, or gone offline), or after --timeout seconds without news.

    \b
    Examples:
      sn ask myteam.example.com "Review this diff" --context url=https://github.com/org/repo/pull/1
      sn ask myteam.example.com "Summarise the logs" --seed 10.0.0.5:9999 --timeout 120
      sn ask lab "status?" --no-mdns --seed 127.0.0.1:9999 --forever

    Exit status: 0 with at least one reply, 1 if every answer was an error, 3 if the swarm
    could not be reached, 4 if nothing answered in time, 130 if interrupted before a reply.
    """
    options = SwarmOptions(swarm=swarm, **node_options)
    run_broadcast(settings, options, label="ask", role="asker", endpoint="synapse.ask",
                  args=[task], kwargs={"context": context}, timeout=timeout,
                  forever=forever, as_json=as_json)  # fmt: skip


@click.command("broadcast")
@swarm_options("speaker")
@click.argument("message")
@_timing_options
@click.pass_obj
def broadcast_command(
    settings: Settings,
    /,
    swarm: str,
    message: str,
    timeout: float,
    forever: bool,
    as_json: bool,
    **node_options: Any,
) -> None:
    """Broadcast MESSAGE to the swarm (the synapse.message endpoint) and print the replies.

    Nodes that serve synapse.message (every `sn watch`, and your own nodes if they define it)
    reply; others ignore it.

    \b
    Examples:
      sn broadcast myteam.example.com "deploy at 17:00"
      sn broadcast lab "hello" --seed 127.0.0.1:9999 --timeout 5

    Exit status: 0 with at least one reply, 3 if the swarm could not be reached, 4 if nothing
    answered in time, 130 if interrupted before a reply.
    """
    options = SwarmOptions(swarm=swarm, **node_options)
    run_broadcast(settings, options, label="broadcast", role="speaker",
                  endpoint="synapse.message", args=[message], kwargs={}, timeout=timeout,
                  forever=forever, as_json=as_json)  # fmt: skip
