"""What the MCP tools do, on a running node: plain async methods returning JSON-ready data.

Every method raises :class:`ToolError` (or a library error the server maps to a message) for
anything the client should be told; nothing here knows about MCP itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio

from ..conversations import UnknownCursorError
from ..errors import BAD_REQUEST, RemoteError
from ..node import Node
from ..teams import Team, TeamTask
from ..types import Peer
from ._desk import TaskDesk
from ._inbox import AskInbox
from ._output import clip, event_view, peer_view

__all__ = ["SwarmBridge", "ToolError", "open_bridge"]

#: How long one agent-card fetch may take, and how long a fetched card is reused.
CARD_TIMEOUT = 3.0
CARD_TTL = 60.0
#: list_peers spends at most this long fetching cards (slow peers show none).
CARDS_DEADLINE = 6.0
#: Event kinds a client may not post by hand: each has its own tool or belongs to the node.
RESERVED_KINDS = frozenset({"message", "ack", "reply", "error", "summary"})
#: The only protocol built-ins (``_synapse.*``) call_endpoint reaches: the read-only ones.
READABLE_BUILTINS = frozenset({
    "_synapse.ping", "_synapse.info", "_synapse.methods", "_synapse.peers",
    "_synapse.artifacts", "_synapse.artifact.get", "_synapse.conversation.list",
})  # fmt: skip


class ToolError(Exception):
    """A tool call that cannot be done; the message is what the client reads."""


class SwarmBridge:
    """A running node seen through the tools: its peers, asks, team tasks and conversations.

    Built by :func:`open_bridge`, which owns the team, the ask inbox and the task desk.
    """

    def __init__(self, node: Node, team: Team, inbox: AskInbox, desk: TaskDesk | None) -> None:
        self.node = node
        self.team = team
        self.inbox = inbox
        self.desk = desk
        self._cards: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._card_limiter = anyio.CapacityLimiter(8)

    # -- peers --------------------------------------------------------------------------------

    def find_peer(self, ref: str) -> Peer:
        """A peer by id, unique id prefix (6+ characters), name, or ``host:port``."""
        peers = list(self.node.peers.values())
        for peer in peers:
            if ref == peer.id:
                return peer
        named = [p for p in peers if p.name == ref]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            ids = ", ".join(p.id[:12] for p in named)
            raise ToolError(f"several peers are named {ref!r} ({ids}): give the id instead")
        if len(ref) >= 6:
            prefixed = [p for p in peers if p.id.startswith(ref)]
            if len(prefixed) == 1:
                return prefixed[0]
        for peer in peers:
            if ref in (f"{peer.address}:{peer.port}", f"[{peer.address}]:{peer.port}"):
                return peer
        known = ", ".join(sorted(p.name or p.id[:12] for p in peers)[:20]) or "none yet"
        raise ToolError(f"no peer {ref!r} in the swarm (it may have left); known peers: {known}")

    async def agent_card(self, peer: Peer) -> dict[str, Any] | None:
        """The peer's ``agent-card`` artifact (cached for :data:`CARD_TTL` seconds), or None
        if it has none or does not answer within :data:`CARD_TIMEOUT` seconds."""
        now = anyio.current_time()
        cached = self._cards.get(peer.id)
        if cached is not None and now - cached[0] < CARD_TTL:
            return cached[1]
        card: dict[str, Any] | None = None
        async with self._card_limiter:
            with anyio.move_on_after(CARD_TIMEOUT):
                try:
                    artifact = await self.node.fetch_artifact(peer, "agent-card")
                    card = {
                        "mime_type": artifact.mime_type,
                        "content": clip(artifact.content, max_string=2_000, depth=6),
                    }
                except Exception:  # no card, or the peer did not answer: shown as none
                    card = None
        for stale in [pid for pid in self._cards if pid not in self.node.peers]:
            del self._cards[stale]
        self._cards[peer.id] = (anyio.current_time(), card)
        return card

    async def list_peers(self, capability: str | None, cards: bool, limit: int) -> dict[str, Any]:
        peers = sorted(self.node.peers.values(), key=lambda p: (p.name, p.id))
        if capability is not None:
            peers = [p for p in peers if capability in p.capabilities]
        shown = peers[:limit]
        views = [peer_view(p) for p in shown]
        incomplete = False
        if cards:
            for view in views:
                view["agent_card"] = None
            with anyio.move_on_after(CARDS_DEADLINE) as scope:
                async with anyio.create_task_group() as tg:
                    for view, peer in zip(views, shown, strict=True):

                        async def fetch(view: dict[str, Any] = view, peer: Peer = peer) -> None:
                            view["agent_card"] = await self.agent_card(peer)

                        tg.start_soon(fetch)
            incomplete = scope.cancelled_caught
        me = self.node
        return {
            "self": {
                "id": me.node_id,
                "name": me.name,
                "swarm": me.swarm,
                "team": me.team,
                "address": f"{me.address}:{me.port}",
                "capabilities": [c.name for c in me.capabilities],
            },
            "count": len(peers),
            "peers": views,
            **({"more": len(peers) - limit} if len(peers) > limit else {}),
            **({"note": "some agent cards were not fetched in time"} if incomplete else {}),
        }

    async def describe_peer(self, ref: str, timeout: float) -> dict[str, Any]:
        peer = self.find_peer(ref)
        out: dict[str, Any] = {"peer": peer_view(peer)}
        with anyio.fail_after(timeout):
            out["info"] = clip(await self.node.call_peer(peer, "_node.info", timeout=timeout))
            caps = await self.node.call_peer(peer, "_node.capabilities", timeout=timeout)
            out["capabilities"] = clip(caps, max_items=64)
            methods = await self.node.call_peer(peer, "_synapse.methods", timeout=timeout)
            out["endpoints"] = clip(methods, max_items=100)
        out["agent_card"] = await self.agent_card(peer)
        return out

    # -- asking -------------------------------------------------------------------------------

    async def ask_swarm(
        self, task: str, context: dict[str, Any], timeout: float, max_replies: int | None
    ) -> dict[str, Any]:
        node = self.node
        if not node.peers:
            raise ToolError("nobody to ask: this node has no peers yet (is a seed running?)")
        asked = len(node.peers)
        broadcast = await node.broadcast("synapse.ask", task, context=context)
        replies: list[dict[str, Any]] = []
        async for reply in node.iter_replies(broadcast, timeout=timeout):
            replies.append({"from": _who(reply.peer), "result": clip(reply.result)})
            if max_replies is not None and len(replies) >= max_replies:
                break
        events = [e for e in node.conversation(broadcast) if e.peer.id != node.node_id]
        acked = {e.peer.id: e.peer for e in events if e.kind == "ack"}
        answered = {e.peer.id for e in events if e.kind in ("reply", "error")}
        errors = [
            {"from": _who(e.peer), "error": clip(e.payload.get("error"), max_string=2_000)}
            for e in events
            if e.kind == "error"
        ]
        return {
            "conversation_id": broadcast.nonce,
            "peers_asked": asked,
            "acked": [_who(p) for p in acked.values()],
            "replies": replies,
            "errors": errors,
            "still_working": [_who(p) for pid, p in acked.items() if pid not in answered],
        }

    async def ask_peer(
        self, ref: str, task: str, context: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        peer = self.find_peer(ref)
        with anyio.fail_after(timeout + 1):
            result = await self.node.call_peer(peer, "_node.ask", task, context, timeout=timeout)
        return {"from": _who(peer), "answer": clip(result)}

    async def call_endpoint(
        self, ref: str, endpoint: str, args: list[Any], kwargs: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        if endpoint.startswith("_synapse.") and endpoint not in READABLE_BUILTINS:
            raise ToolError(
                f"{endpoint} is part of the swarm's own protocol (joins, gossip, conversation "
                "delivery): use the tools for asks, tasks and conversations instead"
            )
        peer = self.find_peer(ref)
        if "broadcast" in kwargs:
            raise ToolError("'broadcast' is reserved: use ask_swarm to reach every peer")
        with anyio.fail_after(timeout + 1):
            result = await self.node.call_peer(peer, endpoint, *args, timeout=timeout, **kwargs)
        return {"from": _who(peer), "endpoint": endpoint, "result": clip(result)}

    # -- team tasks ---------------------------------------------------------------------------

    async def offer_task(
        self, title: str, spec: dict[str, Any], requires: list[str]
    ) -> dict[str, Any]:
        task = await self.team.offer(title, spec=spec, requires=requires)
        return {"task": _task_view(task), "peers_now": len(self.node.peers)}

    def task_status(self, task_id: str | None, limit: int) -> dict[str, Any]:
        if task_id is None:
            tasks = sorted(self.team.tasks.values(), key=lambda t: t.last_activity, reverse=True)
            return {
                "count": len(tasks),
                "tasks": [_task_view(t, brief=True) for t in tasks[:limit]],
            }
        task = self.team.tasks.get(task_id)
        if task is None:
            raise ToolError(f"no task {task_id!r} offered by this node (ids come from offer_task)")
        return {"task": _task_view(task)}

    async def wait_task(self, task_id: str, timeout: float) -> dict[str, Any]:
        task = self.team.tasks.get(task_id)
        if task is None:
            raise ToolError(f"no task {task_id!r} offered by this node (ids come from offer_task)")
        if not task.finished:
            with anyio.move_on_after(timeout):
                with contextlib.suppress(Exception):  # failures are read from the record
                    await self.team.wait(task)
        if not task.finished:
            who = f", assigned to {_who(task.assignee)}" if task.assignee else ""
            raise ToolError(
                f"task {task_id} is not finished after {timeout:g} s (status {task.status}"
                f"{who}); it goes on: wait again or check task_status later"
            )
        return {"task": _task_view(task)}

    # -- conversations ------------------------------------------------------------------------

    def list_conversations(self, limit: int) -> dict[str, Any]:
        log = self.node.conversation_log
        ids = self.node.conversations()
        out = []
        for cid in ids[:limit]:
            first = log.events(cid, limit=1)
            opening = event_view(first[0], max_string=300) if first else None
            out.append({
                "conversation_id": cid,
                "events": log.count(cid),
                "last_activity": log.last_activity(cid),
                "opening": opening,
            })  # fmt: skip
        return {"count": len(ids), "conversations": out}

    def read_conversation(
        self, cid: str, since: float, after: str | None, limit: int
    ) -> dict[str, Any]:
        log = self.node.conversation_log
        total = log.count(cid)
        if total == 0:
            raise ToolError(f"no conversation {cid!r} on this node (see list_conversations)")
        try:
            events = log.events(cid, since=since, after=after, limit=limit + 1)
        except UnknownCursorError:
            raise ToolError(
                f"cursor {after!r} is not in conversation {cid} (it may have been compacted): "
                "read again without 'after'"
            ) from None
        page = events[:limit]
        more = len(events) > limit
        result: dict[str, Any] = {
            "conversation_id": cid,
            "total_events": total,
            "events": [event_view(e) for e in page],
            "more": more,
        }
        if more and page:
            result["next_after"] = page[-1].event_id
        return result

    async def post_event(
        self,
        cid: str,
        kind: str,
        text: str | None,
        payload: dict[str, Any],
        parent_id: str | None,
    ) -> dict[str, Any]:
        if kind in RESERVED_KINDS or kind.startswith("task."):
            raise ToolError(
                f"kind {kind!r} is reserved (asks are answered with reply, team tasks with "
                "progress/done/fail); use another kind, such as 'note'"
            )
        if text is not None:
            payload = {**payload, "text": text}
        event = await self.node.emit_conversation_event(cid, kind, payload, parent_id=parent_id)
        return {"posted": event_view(event), "peers_now": len(self.node.peers)}

    # -- being asked --------------------------------------------------------------------------

    async def next_ask(self, timeout: float) -> dict[str, Any]:
        ask = await self.inbox.take(timeout)
        waiting = self.inbox.pending()
        if ask is None:
            return {"ask": None, "waiting": waiting, "note": f"no ask within {timeout:g} s"}
        return {"ask": ask.describe(), "waiting": waiting}

    async def reply(self, ask_id: str, result: Any, error: str | None) -> dict[str, Any]:
        ask = await self.inbox.answer(ask_id, result=result, error=error)
        sent = "an error" if error is not None else "the reply"
        if ask.broadcast is None:
            to = "the asker's call (if its caller still waits: calls time out, 30 s by default)"
        else:
            to = "the swarm, in conversation " + ask.broadcast.nonce
        return {"ask_id": ask_id, "sent": f"{sent} to {to}"}

    def _desk(self) -> TaskDesk:
        if self.desk is None:
            raise ToolError("this server does not take team tasks (started without a worker)")
        return self.desk

    async def next_task(self, timeout: float) -> dict[str, Any]:
        desk = self._desk()
        held = await desk.take(timeout)
        if held is None:
            return {"task": None, "waiting": desk.pending(),
                    "note": f"no task within {timeout:g} s"}  # fmt: skip
        return {"task": held.describe(), "waiting": desk.pending()}

    async def progress(self, task_id: str, message: str, data: dict[str, Any]) -> dict[str, Any]:
        await self._desk().progress(task_id, message, data)
        return {"task_id": task_id, "reported": message}

    def finish(self, task_id: str, result: Any, error: str | None) -> dict[str, Any]:
        self._desk().finish(task_id, result=result, error=error)
        return {"task_id": task_id, "status": "done" if error is None else "failed"}


def _who(peer: Peer | None) -> str:
    if peer is None:
        return "?"
    return f"{peer.name} ({peer.id[:8]})" if peer.name else peer.id[:12]


def _task_view(task: TeamTask, *, brief: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "task_id": task.id,
        "title": clip(task.title, max_string=500),
        "status": task.status,
        "assignee": _who(task.assignee) if task.assignee else None,
        "attempts": task.attempts,
    }
    if task.status == "done":
        data["result"] = clip(task.result, max_string=2_000 if brief else 8_000)
    if task.error:
        data["error"] = clip(task.error, max_string=2_000)
    if not brief:
        data["requires"] = list(task.requires)
        data["spec"] = clip(task.spec, max_string=2_000)
        data["progress"] = [clip(p, max_string=500, depth=4) for p in task.progress[-5:]]
        data["lease_expires"] = task.lease_expires
    return data


@contextlib.asynccontextmanager
async def open_bridge(
    node: Node,
    *,
    team: Team | None = None,
    tasks: bool = True,
    lease: float = 300.0,
    hold: float = 120.0,
    answer_timeout: float = 3600.0,
    ask_capacity: int = 32,
    task_capacity: int = 4,
    task_idle_timeout: float = 3600.0,
) -> AsyncIterator[SwarmBridge]:
    """Make ``node`` (running) answerable through the tools, for the life of the block.

    Installs an :class:`AskInbox` (``ask_capacity`` asks, ``hold`` and ``answer_timeout``
    seconds) as the node's ask handler and ``synapse.ask`` endpoint, replacing any the
    application registered; runs a :class:`~synapse_p2p.teams.Team` (``team``, or a new one
    with ``lease``) and, with ``tasks``, a :class:`TaskDesk` (``task_capacity`` tasks, ``hold``
    and ``task_idle_timeout`` seconds) whose worker opens at the first ``next_task``; a node
    running a :class:`~synapse_p2p.teams.Worker` of its own passes ``tasks=False``.

    Leaving the block (or cancelling it) closes the inbox (askers waiting on a taken ask get an
    ``error`` event, new asks are refused) and stops the team and the worker (held team tasks
    are handed back). The node keeps running. Raises ``RuntimeError`` if it is not running.
    """
    if not node.running:
        raise RuntimeError("the node is not running: enter `async with node:` first")
    async with anyio.create_task_group() as tg:
        if team is None:
            team = Team(node, lease=lease)
            await tg.start(team.serve)
        inbox = AskInbox(node, capacity=ask_capacity, hold=hold, answer_timeout=answer_timeout)
        inbox.install()
        await tg.start(inbox.run)
        desk = None
        if tasks:
            desk = TaskDesk(node, tg, capacity=task_capacity, hold=hold,
                            idle_timeout=task_idle_timeout)  # fmt: skip
        try:
            yield SwarmBridge(node, team, inbox, desk)
        finally:
            await inbox.aclose()
            tg.cancel_scope.cancel()


def remote_message(exc: RemoteError) -> str:
    """A remote failure as the client reads it."""
    if exc.code == BAD_REQUEST:
        return f"the peer refused the call: {exc.message}"
    return f"the peer failed: {exc.code}: {exc.message}"
