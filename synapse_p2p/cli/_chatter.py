"""One line per swarm happening, for ``sn watch`` and ``sn demo``."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio
from rich.console import Console
from rich.text import Text

from ..types import ConversationEvent, NodeKind, Peer
from ._common import clean, format_result, json_text

__all__ = ["Inbox", "Line", "causal_order", "describe_event", "describe_peer"]

MAX_TEXT = 200
#: A chatter line wraps onto at most this many rows on screen; the rest is elided ("…").
MAX_ROWS = 3
#: Below this many columns for the text, wrapped rows are not indented under it.
MIN_INDENTED = 24

STYLES = {
    "JOINED": "bold green",
    "BEAT": "dim",
    "OFFLINE": "bold red",
    "LEFT": "red",
    "ASK": "bold magenta",
    "MESSAGE": "bold blue",
    "ACK": "green",
    "REPLY": "bold cyan",
    "ERROR": "bold red",
    "TASK": "yellow",
    "SUMMARY": "dim",
    "EVENT": "blue",
}


@dataclass(frozen=True, slots=True)
class Line:
    """``at`` is wall-clock time; ``label`` one of :data:`STYLES`."""

    at: float
    label: str
    text: str

    def plain(self) -> str:
        return f"{_stamp(self.at)} {self.label:<7} {clean(self.text)}"

    def rich(self, *, clock: bool = True) -> Text:
        return Text.assemble(*self._head(clock), clean(self.text))

    def _head(self, clock: bool) -> tuple[tuple[str, str], tuple[str, str]]:
        stamp = f"{_stamp(self.at)} " if clock else ""
        return (stamp, "dim"), (f"{self.label:<7} ", STYLES.get(self.label, ""))

    def rows(
        self, console: Console, width: int, *, clock: bool = True, max_rows: int = MAX_ROWS
    ) -> list[Text]:
        """The line wrapped to ``width`` columns: the clock and label, then the text, its
        further rows indented under it; past ``max_rows`` rows the end is elided with "…"
        (the start of the text always shows)."""
        head = Text.assemble(*self._head(clock))
        indent = head.cell_len if width - head.cell_len >= MIN_INDENTED else 0
        body = Text(clean(self.text))
        if indent == 0:
            body = Text.assemble(head, body)
        wrapped = list(body.wrap(console, max(1, width - indent), overflow="fold"))
        if len(wrapped) > max_rows:
            wrapped = wrapped[:max_rows]
            last = wrapped[-1]
            last.rstrip()
            last.truncate(max(1, width - indent - 1))
            last.append("…")
        rows = []
        for i, row in enumerate(wrapped):
            row.rstrip()
            if indent:
                row = Text.assemble(head if i == 0 else " " * indent, row)
            row.no_wrap = True
            row.overflow = "ellipsis"
            rows.append(row)
        return rows


def _stamp(at: float) -> str:
    try:
        return time.strftime("%H:%M:%S", time.localtime(at))
    except (OverflowError, OSError, ValueError):  # a peer's clock far off
        return "??:??:??"


def kind_of(peer: Peer) -> str:
    return peer.kind.value if isinstance(peer.kind, NodeKind) else str(peer.kind)


def who(peer: Peer) -> str:
    return clean(peer.name or peer.id[:8])


def short_id(conversation_id: str) -> str:
    """The random tail of an id: uuid7 nonces made in the same minute share their head."""
    return conversation_id.replace("-", "")[-8:]


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _compact(value: Any) -> str:
    return _clip(value if isinstance(value, str) else json_text(value, indent=None))


def _task_text(name: str, kind: str, payload: dict[str, Any]) -> str:
    def field(key: str) -> str:
        return _clip(str(payload.get(key) or ""))

    if kind == "task.offer":
        requires = payload.get("requires") or []
        if not isinstance(requires, list):
            requires = [requires]
        needs = f" (requires {_clip(', '.join(map(str, requires)))})" if requires else ""
        return f"{name} offers {field('title')!r}{needs}"
    if kind == "task.claim":
        return f"{name} claims it"
    if kind == "task.grant":
        worker = payload.get("worker_name") or str(payload.get("worker_id") or "?")[:8]
        return f"{name} grants it to {worker}"
    if kind == "task.progress":
        return f"{name}: {field('message')}"
    if kind == "task.done":
        return f"{name} done: {_compact(payload.get('result'))}"
    if kind == "task.failed":
        return f"{name} failed: {field('error')}"
    if kind == "task.release":
        return f"{name} releases it: {field('reason')}"
    rest = {k: v for k, v in payload.items() if k != "task_id"}
    return f"{name} {kind}: {_compact(rest)}"


def describe_event(event: ConversationEvent) -> Line | None:
    """The chatter line for a conversation event; a payload of unexpected shape gets a
    plain line instead of failing (events come from any peer)."""
    try:
        return _describe(event)
    except Exception:
        tag, name = short_id(event.conversation_id), who(event.peer)
        return Line(_at(event), "EVENT", f"{tag}  {name} {event.kind}: (malformed payload)")


def _at(event: ConversationEvent) -> float:
    at = event.created_at
    return at if isinstance(at, int | float) and 0 <= at < 1e11 else time.time()


def _describe(event: ConversationEvent) -> Line | None:
    tag, name, payload = short_id(event.conversation_id), who(event.peer), event.payload
    at = _at(event)
    kind = event.kind
    if kind == "message":
        endpoint = _clip(str(payload.get("endpoint", "?")))
        args = payload.get("args") or []
        kwargs = payload.get("kwargs") or {}
        if not isinstance(args, list):
            args = [args]
        if not isinstance(kwargs, dict):
            kwargs = {}
        if endpoint == "synapse.ask" and args:
            context = kwargs.get("context") or {}
            extra = f"  {_compact(context)}" if context else ""
            return Line(at, "ASK", f"{tag}  {name}: {_clip(str(args[0]))}{extra}")
        shown = ", ".join(_compact(a) for a in args)
        return Line(at, "MESSAGE", f"{tag}  {name} → {endpoint}: {shown}")
    if kind == "ack":
        return Line(at, "ACK", f"{tag}  {name} acked")
    if kind == "reply":
        result = format_result(payload.get("result"))
        return Line(at, "REPLY", f"{tag}  {name} → {_clip(result)}")
    if kind == "error":
        return Line(at, "ERROR", f"{tag}  {name}: {_clip(str(payload.get('error')))}")
    if kind == "summary":
        return Line(at, "SUMMARY", f"{tag}  {name} compacted the conversation")
    if kind.startswith("task."):
        return Line(at, "TASK", f"{tag}  {_task_text(name, kind, payload)}")
    return Line(at, "EVENT", f"{tag}  {name} {_clip(kind)}: {_compact(payload)}")


def describe_peer(
    label: str, peer: Peer, *, capabilities: bool = True, at: float | None = None
) -> Line:
    """The chatter line for a peer that joined, left... ``at`` (default now) is when."""
    caps = f"  caps={','.join(peer.capabilities)}" if capabilities and peer.capabilities else ""
    where = f"{peer.address}:{peer.port}"
    when = time.time() if at is None else at
    return Line(when, label, f"{who(peer)} @ {where} ({kind_of(peer)}){caps}")


def causal_order(events: Iterable[ConversationEvent]) -> list[ConversationEvent]:
    """``events`` in creation order, ``(created_at, event_id)``, except that an event never
    comes before its parent among them (a reply stamped by a clock running behind the
    asker's still follows the ask)."""
    ordered = sorted(events, key=lambda e: (_at(e), e.event_id))
    present = {e.event_id for e in ordered}
    waiting: dict[str, list[ConversationEvent]] = {}
    out: list[ConversationEvent] = []
    placed: set[str] = set()

    def place(event: ConversationEvent) -> None:
        stack = [event]
        while stack:
            item = stack.pop()
            if item.event_id in placed:
                continue
            placed.add(item.event_id)
            out.append(item)
            stack.extend(reversed(waiting.pop(item.event_id, [])))

    for event in ordered:
        parent = event.parent_id
        if parent and parent != event.event_id and parent in present and parent not in placed:
            waiting.setdefault(parent, []).append(event)
        else:
            place(event)
    for children in waiting.values():  # a cycle of parents (malformed): creation order
        for event in children:
            place(event)
    return out


class Inbox:
    """Collects lifecycle events from handler tasks (which may run in either order when they
    arrive together, and events from different peers travel separately) and hands them out
    in batches, conversation events in their order: a batch is handed out ``hold`` seconds
    after its first item arrived, so that items close in time are sorted together."""

    def __init__(self, *, hold: float = 0.15) -> None:
        self.hold = hold
        self._items: list[tuple[str, Any, float]] = []
        self._arrived = anyio.Event()

    def put(self, name: str, payload: Any) -> None:
        self._items.append((name, payload, time.time()))
        self._arrived.set()

    async def next_batch(self) -> list[tuple[str, Any]]:
        """Wait for at least one item; return everything waiting, conversation events in
        :func:`causal_order` after the other events."""
        return [(name, payload) for name, payload, _ in await self.next_stamped()]

    async def next_stamped(self) -> list[tuple[str, Any, float]]:
        """:meth:`next_batch` with the wall-clock time each item arrived."""
        if not self._items:
            await self._arrived.wait()
        if self.hold > 0:
            await anyio.sleep(self.hold)
        items, self._items = self._items, []
        self._arrived = anyio.Event()
        others = [item for item in items if not isinstance(item[1], ConversationEvent)]
        stamps = {id(item[1]): item for item in items if isinstance(item[1], ConversationEvent)}
        events = causal_order(item[1] for item in stamps.values())
        return others + [stamps[id(event)] for event in events]
