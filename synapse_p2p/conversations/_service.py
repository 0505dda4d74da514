"""The node's conversations: storing, delivering, broadcasting, asking, syncing, compacting.

Delivery. A node delivers the events it creates (``emit_conversation_event``, ACKs, replies,
errors) itself, in one hop, to every live peer, through bounded per-peer queues
(:mod:`._delivery`): O(N) frames per event, and ``emit`` returns once the event is stored and
queued. Receivers store and never re-forward. What a queue drops or a peer misses is repaired
by anti-entropy: every round a node compares a digest of its recent conversations with one
random peer's and pulls (paged) what it lacks. synapse-p2p 2.5.0 peers get and send
``_synapse.conversation.event`` and ``_synapse.broadcast.reply`` exactly as they expect (and
flood among themselves as they always did).

One identity per event. A reply has the same ``event_id`` on every node (derived from the nonce
and the replier's id), and a broadcast's ``message`` event is the nonce, so syncing from
several peers never duplicates them. Authors of events are never added to the peer table:
learning an event's author is not a licence to dial it.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ..errors import BAD_REQUEST, INTERNAL_ERROR, ProtocolError, RemoteError, SynapseError
from ..membership import check_membership
from ..types import Broadcast, BroadcastReply, ConversationEvent, Peer
from ..wire import Request, pack
from ._broadcasts import BroadcastBook
from ._delivery import BATCH, EVENT_ENDPOINT, EVENTS_ENDPOINT, Delivery
from ._ids import new_nonce, random_id, reply_event_id
from ._log import UnknownCursorError

if TYPE_CHECKING:
    from ..node import Node
    from ._log import ConversationLog

__all__ = ["Conversations"]

log = logging.getLogger(__name__)

SYNC_ENDPOINT = "_synapse.conversation.sync"
DIGEST_ENDPOINT = "_synapse.conversation.digest"
SYNC_PAGE = 500
LEGACY_SYNC_BYTES = 3 * 1024 * 1024  # what a 2.5.0 caller (4 MiB limit) gets in one answer
DIGEST_SIZE = 256
ANTI_ENTROPY_ROUNDS = 4  # heartbeat intervals between two anti-entropy exchanges
ANSWER_LINGER = 0.1  # seconds an ACK or reply waits for company on its way to bystanders
REPLY_SETTLE = 0.25  # iter_replies: quiet time after the last ACKer answered, for late ACKs
Summarizer = Callable[[list[ConversationEvent]], Awaitable[str]]


class Conversations:
    """Owned by the node; the public methods are re-exposed on :class:`~synapse_p2p.Node`."""

    def __init__(self, node: Node, log_store: ConversationLog) -> None:
        self.node = node
        self.log = log_store
        self.book = BroadcastBook()
        self.delivery = Delivery(node)
        self._task_group: TaskGroup | None = None
        self._compacting: set[str] = set()
        # Conversations by recent activity, to bound how many a node keeps (a remote peer can
        # start conversations at will): past the cap, the quietest one is pruned.
        self._active: OrderedDict[str, None] = OrderedDict(
            (cid, None) for cid in reversed(log_store.conversations())
        )
        self._asks = anyio.CapacityLimiter(64)
        self._rng = random.Random()
        self.refused_old = 0
        self._register()

    # -- storing ----------------------------------------------------------------------------

    def _now(self) -> float:
        return self.node.wall_clock()

    async def remember(self, event: ConversationEvent) -> bool:
        """Store ``event`` (membership and retention checked); fire its lifecycle events.

        Returns False for a duplicate or an event older than the retention window. Raises
        ``RemoteError`` (``bad_request``) if the author is not of this swarm and team.
        """
        check_membership(self.node, event.peer)
        retention = self.node.conversation_retention
        if retention is not None and event.created_at < self._now() - retention:
            self.refused_old += 1
            return False
        if not await self.log.append(event):
            return False
        self._stored(event)
        return True

    def _stored(self, event: ConversationEvent) -> None:
        node = self.node
        cid = event.conversation_id
        self._active[cid] = None
        self._active.move_to_end(cid)
        cap = node.conversation_max_conversations
        if cap is not None and len(self._active) > cap and self._task_group is not None:
            oldest, _ = self._active.popitem(last=False)
            self._task_group.start_soon(self._prune, oldest)
        nonce = event.parent_id or event.conversation_id
        if event.kind == "ack" and event.parent_id:
            self.book.add_ack(event.parent_id, event.peer.id)
        elif event.kind == "reply" and event.parent_id:
            payload = event.payload
            reply = BroadcastReply(event.parent_id, event.peer, payload.get("result"))
            if event.peer.id != node.node_id and self.book.add_reply(reply):
                node.emit_event("broadcast.reply", reply)
        elif event.kind == "error":
            self.book.add_failure(nonce, event.peer.id)
        node.emit_event("conversation.event", event)
        node.emit_event(f"conversation.{event.kind}", event)
        limit = node.conversation_max_events
        if (
            limit is not None
            and event.kind != "summary"
            and event.conversation_id not in self._compacting
            and self.log.count(event.conversation_id) > limit
            and self._task_group is not None
        ):
            self._compacting.add(event.conversation_id)
            self._task_group.start_soon(self._auto_compact, event.conversation_id)

    # -- delivering ---------------------------------------------------------------------------

    def _deliver(self, event: ConversationEvent) -> None:
        """Queue ``event`` for every live peer. Answers to a broadcast (ACKs, replies, errors)
        go to its origin first and at once; the other peers get them after a short linger,
        batched with whatever else this node says meanwhile (an ACK and its reply often
        travel together)."""
        data = event.to_dict()
        origin: str | None = None
        peers = [p for p in self.node.peers.values() if p.id != event.peer.id]
        if event.kind in ("ack", "reply", "error"):
            state = self.book.get(event.parent_id or event.conversation_id)
            if state is not None and state.broadcast is not None:
                asker = state.broadcast.origin
                origin = asker.id
                if origin not in self.node.peers and origin not in (
                    event.peer.id,
                    self.node.node_id,
                ):
                    # The origin called us (a command-line asker that just joined, say) and
                    # is not verified yet: it still gets the answers to its own question.
                    peers.append(asker)
        if origin is not None:
            peers.sort(key=lambda p: p.id != origin)
        for peer in peers:
            linger = ANSWER_LINGER if origin is not None and peer.id != origin else 0.0
            self.delivery.send(peer, EVENT_ENDPOINT, [data], {}, linger=linger)

    def _check_size(self, event: ConversationEvent) -> None:
        size = len(pack(event.to_dict()))
        limit = self.node.max_upload_size - 1024
        if size > limit:
            raise ValueError(
                f"conversation event is {size} bytes; peers accept at most about {limit}"
            )

    async def emit(
        self,
        conversation: Broadcast | str,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        parent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        event_id: str | None = None,
    ) -> ConversationEvent:
        cid = conversation.nonce if isinstance(conversation, Broadcast) else conversation
        if not isinstance(cid, str) or not cid:
            raise TypeError("conversation must be a Broadcast or a non-empty string")
        if not isinstance(kind, str) or not kind:
            raise TypeError("kind must be a non-empty string")
        if payload is not None and not isinstance(payload, dict):
            raise TypeError("payload must be a dict or None")
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError("metadata must be a dict or None")
        event = ConversationEvent(
            conversation_id=cid,
            event_id=event_id or random_id(),
            kind=kind,
            peer=self.node.self_peer(),
            payload=dict(payload or {}),
            parent_id=parent_id,
            created_at=self._now(),
            metadata=dict(metadata or {}),
        )
        self._check_size(event)
        if await self.remember(event):
            self._deliver(event)
        return event

    # -- broadcast, ask, reply ----------------------------------------------------------------

    async def broadcast(
        self, endpoint: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Broadcast:
        if not isinstance(endpoint, str) or not endpoint:
            raise TypeError("endpoint must be a non-empty string")
        if "broadcast" in kwargs:
            raise TypeError("'broadcast' is reserved: the node passes it to every receiver")
        origin = self.node.self_peer()
        nonce = new_nonce()
        b = Broadcast(nonce, origin, endpoint)
        message = ConversationEvent(
            conversation_id=nonce,
            event_id=nonce,
            kind="message",
            peer=origin,
            payload={"endpoint": endpoint, "args": list(args), "kwargs": dict(kwargs)},
            created_at=origin.last_seen,
        )
        self._check_size(message)
        self.book.state(nonce).broadcast = b
        await self.remember(message)
        call_kwargs = {**kwargs, "broadcast": b.to_dict()}
        state = self.book.state(nonce)
        for peer in list(self.node.peers.values()):
            state.pending.add(peer.id)
            self.delivery.send(peer, endpoint, list(args), call_kwargs,
                               outcome=functools.partial(state.delivered, peer.id))  # fmt: skip
        return b

    async def ack(
        self,
        conversation: Broadcast | str,
        payload: dict[str, Any] | None = None,
        *,
        parent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ConversationEvent:
        if isinstance(conversation, Broadcast) and parent_id is None:
            parent_id = conversation.nonce
        return await self.emit(conversation, "ack", payload, parent_id=parent_id, metadata=metadata)

    async def reply(self, broadcast: Broadcast, result: Any) -> ConversationEvent:
        if not isinstance(broadcast, Broadcast):
            raise TypeError("reply needs the Broadcast being answered")
        node = self.node
        event = await self.emit(
            broadcast,
            "reply",
            {"result": result},
            parent_id=broadcast.nonce,
            event_id=reply_event_id(broadcast.nonce, node.node_id),
        )
        # synapse-p2p 2.5.0 peers expect the reply RPC (the origin and every peer).
        legacy = {p.id: p for p in node.peers.values() if node.membership.is_legacy(p.id)}
        if broadcast.origin.id != node.node_id and broadcast.origin.id not in node.peers:
            legacy.setdefault(broadcast.origin.id, broadcast.origin)
        me = node.self_peer().to_dict()
        for peer in legacy.values():
            self.delivery.send(
                peer, "_synapse.broadcast.reply", [broadcast.nonce, me], {"result": result}
            )
        return event

    def replies(self, broadcast: Broadcast | str) -> list[BroadcastReply]:
        nonce = broadcast.nonce if isinstance(broadcast, Broadcast) else broadcast
        state = self.book.get(nonce)
        return list(state.replies) if state is not None else []

    async def iter_replies(
        self, broadcast: Broadcast | str, *, timeout: float | None = None
    ) -> AsyncIterator[BroadcastReply]:
        nonce = broadcast.nonce if isinstance(broadcast, Broadcast) else broadcast
        state = self.book.state(nonce)
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        given = 0
        while True:
            while given < len(state.replies):
                reply = state.replies[given]
                given += 1
                yield reply
            done = state.replied | state.failed
            gone = {pid for pid in state.acked if pid not in self.node.peers}
            if self.book.get(nonce) is not state:  # evicted or pruned
                return
            changed = state.changed
            if not state.pending and state.acked and state.acked <= done | gone:
                # Every peer the broadcast went to has answered the call, and every ACKer
                # has replied; an ACK may still be in flight: end after a short quiet spell.
                with anyio.move_on_after(min(REPLY_SETTLE, deadline - anyio.current_time())):
                    await changed.wait()
                if not changed.is_set():
                    return
                continue
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as scope:
                # Wake up now and then to notice peers that went offline after ACKing.
                with anyio.move_on_after(max(self.node.peer_timeout / 4, 0.05)):
                    await changed.wait()
            if scope.cancelled_caught:
                return

    async def _deferred_ask(self, task: str, context: dict[str, Any], broadcast: Broadcast) -> Any:
        node = self.node
        if node._ask_handler is None:
            raise RemoteError(INTERNAL_ERROR, "node has no ask handler")
        if self._task_group is None:
            raise RemoteError(INTERNAL_ERROR, "node is stopping")
        await self.ack(broadcast)
        self._task_group.start_soon(self._run_ask, task, context, broadcast)
        return {"accepted": True, "deferred": True}

    async def _run_ask(self, task: str, context: dict[str, Any], broadcast: Broadcast) -> None:
        assert self.node._ask_handler is not None
        async with self._asks:
            try:
                result = await self.node._ask_handler(task, context)
            except Exception as exc:
                log.info("ask handler failed for %s: %s", broadcast.nonce, exc)
                await self.emit(broadcast, "error", {"task": task, "error": str(exc)})
                return
            try:
                await self.reply(broadcast, result)
            except (TypeError, ValueError) as exc:  # e.g. a result that cannot be encoded
                log.warning("could not reply to %s: %s", broadcast.nonce, exc)
                await self.emit(broadcast, "error", {"task": task, "error": str(exc)})

    # -- endpoints and the broadcast hook -----------------------------------------------------

    async def _pre_dispatch(self, request: Request) -> Request:
        raw = request.kwargs.get("broadcast")
        if not isinstance(raw, dict):
            return request
        broadcast = Broadcast.from_dict(raw)
        check_membership(self.node, broadcast.origin)
        kwargs = {k: v for k, v in request.kwargs.items() if k != "broadcast"}
        message = ConversationEvent(
            conversation_id=broadcast.nonce,
            event_id=broadcast.nonce,
            kind="message",
            peer=broadcast.origin,
            payload={"endpoint": request.endpoint, "args": list(request.args), "kwargs": kwargs},
            # The origin's peer record is stamped when the broadcast is made (by 2.5.0 nodes
            # too): every receiver gives the message the same time, so logs agree.
            created_at=broadcast.origin.last_seen,
        )
        await self.remember(message)
        self.book.state(broadcast.nonce).broadcast = broadcast
        self.node.emit_event(
            "broadcast.received",
            {
                "endpoint": request.endpoint,
                "broadcast": broadcast,
                "args": list(request.args),
                "kwargs": kwargs,
            },
        )
        return Request(
            request.endpoint, request.id, request.args, {**kwargs, "broadcast": broadcast}
        )

    def _register(self) -> None:
        node = self.node
        node._registry.pre_dispatch = self._pre_dispatch

        @node.endpoint(EVENT_ENDPOINT, publish=False)
        async def conversation_event(event: Any) -> dict[str, Any]:
            incoming = ConversationEvent.from_dict(event)
            return {"ok": True, "stored": await self.remember(incoming)}

        @node.endpoint(EVENTS_ENDPOINT, publish=False)
        async def conversation_events(events: Any) -> dict[str, Any]:
            if not isinstance(events, list) or len(events) > BATCH:
                raise RemoteError(BAD_REQUEST, f"events must be a list of at most {BATCH}")
            stored: list[bool] = []
            for item in events:
                try:
                    stored.append(await self.remember(ConversationEvent.from_dict(item)))
                except (ProtocolError, RemoteError):
                    stored.append(False)
            return {"ok": True, "stored": stored}

        @node.endpoint(SYNC_ENDPOINT, publish=False)
        async def conversation_sync(
            conversation_id: str,
            since: float = 0.0,
            after: str | None = None,
            limit: int | None = None,
        ) -> dict[str, Any]:
            if not isinstance(conversation_id, str):
                raise RemoteError(BAD_REQUEST, "conversation_id must be a string")
            if isinstance(since, bool) or not isinstance(since, int | float):
                raise RemoteError(BAD_REQUEST, "since must be a number")
            if limit is not None and (not isinstance(limit, int) or limit <= 0):
                raise RemoteError(BAD_REQUEST, "limit must be a positive integer")
            page = min(limit or SYNC_PAGE, SYNC_PAGE) if limit is not None else None
            bound = (page + 1) if page else None
            try:
                events = self.log.events(conversation_id, since=float(since), after=after,
                                         limit=bound)  # fmt: skip
            except UnknownCursorError:  # the cursor was compacted away: start over
                events = self.log.events(conversation_id, since=float(since), limit=bound)
            out: list[dict[str, Any]] = []
            size = 0
            more = False
            for event in events:
                if page is not None and len(out) >= page:
                    more = True
                    break
                data = event.to_dict()
                size += len(pack(data))
                if page is None and size > LEGACY_SYNC_BYTES:
                    more = True
                    break
                out.append(data)
            reply: dict[str, Any] = {"events": out}
            if page is not None:
                reply["more"] = more
                reply["next"] = out[-1]["event_id"] if out else after
            return reply

        @node.endpoint("_synapse.conversation.list", publish=False)
        async def conversation_list() -> list[str]:
            return self.log.conversations()

        @node.endpoint(DIGEST_ENDPOINT, publish=False)
        async def conversation_digest() -> dict[str, list[float]]:
            return self._digest()

        @node.endpoint("_synapse.broadcast.reply", publish=False)
        async def broadcast_reply(nonce: str, peer: Any, result: Any = None) -> dict[str, Any]:
            if not isinstance(nonce, str) or not nonce:
                raise RemoteError(BAD_REQUEST, "nonce must be a non-empty string")
            replier = Peer.from_dict(peer)
            check_membership(node, replier)
            state = self.book.get(nonce)
            if state is not None and replier.id in state.replied:
                return {"ok": True}
            event = ConversationEvent(
                conversation_id=nonce,
                event_id=reply_event_id(nonce, replier.id),
                kind="reply",
                peer=replier,
                payload={"result": result},
                parent_id=nonce,
                created_at=self._now(),
            )
            if not await self.remember(event):  # already known: make sure it is counted
                reply = BroadcastReply(nonce, replier, result)
                if replier.id != node.node_id and self.book.add_reply(reply):
                    node.emit_event("broadcast.reply", reply)
            return {"ok": True}

    # -- sync and anti-entropy ----------------------------------------------------------------

    def _digest(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for cid in self.log.conversations()[:DIGEST_SIZE]:
            out[cid] = [float(self.log.count(cid)), float(self.log.last_activity(cid) or 0.0)]
        return out

    async def sync(self, peer: Peer, conversation: Broadcast | str, *, since: float = 0.0) -> int:
        """Pull ``conversation`` from ``peer`` (paged with our nodes); store what is new
        (lifecycle events fire, nothing is re-delivered). Returns the number of new events."""
        cid = conversation.nonce if isinstance(conversation, Broadcast) else conversation
        node = self.node
        legacy = node.membership.is_legacy(peer.id) or node.pool.is_legacy(peer.address, peer.port)
        new = 0
        after: str | None = None
        for _ in range(100_000):  # bounded: 50 million events
            kwargs: dict[str, Any] = {"since": since}
            if not legacy:
                kwargs.update(limit=SYNC_PAGE, after=after)
            reply = await node.call_peer(peer, SYNC_ENDPOINT, cid, **kwargs)
            if not isinstance(reply, dict) or not isinstance(reply.get("events"), list):
                raise ProtocolError(f"invalid sync answer from {peer.address}:{peer.port}")
            for data in reply["events"]:
                try:
                    event = ConversationEvent.from_dict(data)
                    if event.conversation_id != cid:
                        continue
                    if await self.remember(event):
                        new += 1
                except (ProtocolError, RemoteError) as exc:
                    log.debug("skipping a synced event: %s", exc)
            if legacy or not reply.get("more"):
                return new
            after = reply.get("next")
            if not isinstance(after, str):
                return new
        return new

    async def _anti_entropy(self, interval: float) -> None:
        """Compare digests with one random peer: soon after start (a restarted or late node
        catches up), then every ``ANTI_ENTROPY_ROUNDS`` heartbeat intervals (delivery is
        direct; this is only the backstop for what a peer missed)."""
        delay = min(interval, 1.0)
        while True:
            await anyio.sleep(delay)
            delay = interval * ANTI_ENTROPY_ROUNDS
            ours = [p for p in self.node.peers.values() if not self.node.membership.is_legacy(p.id)]
            if not ours:
                delay = interval  # nobody to ask yet: try again soon
                continue
            peer = self._rng.choice(ours)
            try:
                with anyio.fail_after(self.node.call_timeout):
                    theirs = await self.node.call_peer(peer, DIGEST_ENDPOINT)
                    if not isinstance(theirs, dict):
                        continue
                    mine = self._digest()
                    for cid, info in list(theirs.items())[:DIGEST_SIZE]:
                        if not isinstance(info, list) or len(info) != 2:
                            continue
                        count, last = info
                        have = mine.get(cid)
                        if have is None or count > have[0] or last > have[1]:
                            await self.sync(peer, cid)
            except (SynapseError, OSError, TimeoutError, ValueError) as exc:
                log.debug("anti-entropy with %s:%s failed: %s", peer.address, peer.port, exc)

    # -- compaction and retention -------------------------------------------------------------

    async def compact(
        self, cid: str, *, keep_recent: int | None = None
    ) -> ConversationEvent | None:
        keep = self.node.conversation_keep_recent if keep_recent is None else keep_recent
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError("keep_recent must be an int >= 0")
        events = self.log.events(cid)
        # The opening event stays verbatim whatever its kind (a broadcast's message, a team
        # task's offer): a conversation is read from its first event.
        head = events[0] if events and events[0].kind != "summary" else None
        body = events[1:] if head is not None else events
        compactable = body[: max(0, len(body) - keep)] if keep else body
        if not compactable:
            return None
        summarizer = self.node._summarizer or _default_summarizer()
        text = await summarizer(compactable)
        summary = ConversationEvent(
            conversation_id=cid,
            event_id=random_id(),
            kind="summary",
            peer=self.node.self_peer(),
            payload={
                "summary": str(text),
                "compacted_events": len(compactable),
                "from": compactable[0].created_at,
                "until": compactable[-1].created_at,
            },
            parent_id=head.event_id if head is not None else None,
            created_at=compactable[-1].created_at,
        )
        await self.log.compact(cid, [e.event_id for e in compactable], summary)
        self.node.emit_event("conversation.compacted", summary)
        return summary

    async def _auto_compact(self, cid: str) -> None:
        try:
            await self.compact(cid)
        except Exception:
            log.exception("compacting conversation %s failed", cid)
        finally:
            self._compacting.discard(cid)

    async def _prune(self, cid: str) -> None:
        self._active.pop(cid, None)
        await self.log.prune(cid)
        self.book.drop(cid)
        self.node.emit_event("conversation.pruned", cid)

    async def _retention_loop(self, retention: float) -> None:
        while True:
            await anyio.sleep(min(60.0, max(0.05, retention / 4)))
            horizon = self._now() - retention
            for cid in self.log.conversations():
                last = self.log.last_activity(cid)
                if last is not None and last < horizon:
                    await self._prune(cid)

    # -- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(self.delivery.run)
            self._task_group = tg
            interval = self.node.heartbeat_interval or 5.0
            tg.start_soon(self._anti_entropy, interval)
            if self.node.conversation_retention is not None:
                tg.start_soon(self._retention_loop, self.node.conversation_retention)
            task_status.started()
        self._task_group = None


def _default_summarizer() -> Summarizer:
    from ._summary import default_summarizer

    return default_summarizer
