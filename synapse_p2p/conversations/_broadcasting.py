"""Broadcasts and asks: one call to every live peer, one shared conversation, ACKs, replies.

``broadcast`` stores the ``message`` event (its id is the nonce) and queues the call for every
member; a receiver's pre-dispatch hook stores the same ``message`` event before the endpoint
runs. ``synapse.ask`` received as part of a broadcast is *deferred*: the node ACKs, answers
the call at once with ``{"deferred": True}`` and runs its ask handler in the background, then
replies (a ``reply`` event) or reports an ``error`` event. What this node knows of each
broadcast (who ACKed, replied, failed, whose call has not returned) is in the
:class:`~._broadcasts.BroadcastBook`; :class:`~._broadcasts.BroadcastStatus` says when one is
over, for :meth:`Broadcasts.iter_replies` and the command line alike.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from .._hub import BroadcastReceived, EventHub, PeerJoined, PeerLeft, PeerOffline
from .._logging import FailureLog
from .._quotas import CountQuota, caller_key
from ..errors import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    OVERLOADED,
    ConnectError,
    ConnectionLost,
    DroppedCall,
    RemoteError,
    SynapseConnectionError,
)
from ..types import Broadcast, BroadcastReply, ConversationEvent, Peer
from ..wire import Request
from ._broadcasts import BroadcastState, BroadcastStatus
from ._ids import new_nonce, reply_event_id
from ._late import LateCall, LateMembers
from ._signing import SIG_FIELD

if TYPE_CHECKING:
    from ..rpc import Connection, EndpointRegistry
    from ._service import Conversations

__all__ = ["AskHandler", "Broadcasts"]

log = logging.getLogger(__name__)

#: iter_replies: quiet time after the broadcast is over, for late ACKs.
REPLY_SETTLE = 0.25
#: At most this many ask handlers of broadcasts run at once on a node; more wait their turn.
MAX_RUNNING_ASKS = 64
#: Broadcast nonces whose endpoint (or ask handler) ran here, remembered so a replayed
#: broadcast does not run it again (even after its conversation was pruned); the oldest are
#: forgotten first.
ASKED_REMEMBERED = 65536

#: A broadcast call that was not delivered is sent again this many times, after
#: ``RETRY_DELAY`` seconds and then twice that (see ``_may_resend``).
DELIVERY_RETRIES = 2
RETRY_DELAY = 1.0
ASK_ENDPOINT = "synapse.ask"

AskHandler = Callable[[str, dict[str, Any]], Awaitable[Any]]

#: The broadcast whose ask handler runs in this task (for ``progress``), if any.
_current_ask: ContextVar[Broadcast | None] = ContextVar("synapse_p2p_current_ask", default=None)


class _StatusChanges:
    """:meth:`Broadcasts.changes`: the status, then the status after each change."""

    __slots__ = ("_broadcasts", "_changed", "_nonce", "_state")

    def __init__(self, broadcasts: Broadcasts, nonce: str) -> None:
        self._broadcasts = broadcasts
        self._nonce = nonce
        self._state: BroadcastState | None = None
        self._changed: anyio.Event | None = None

    def __aiter__(self) -> _StatusChanges:
        return self

    async def aclose(self) -> None:
        """Nothing to release (for ``contextlib.aclosing``, as with the async generator this
        used to be); reading on still works."""

    async def __anext__(self) -> BroadcastStatus:
        book = self._broadcasts.book
        state = self._state
        if state is None:  # the first status: the broadcast as it is now
            state = self._state = book.state(self._nonce)
        else:
            assert self._changed is not None
            await self._changed.wait()
            if book.get(self._nonce) is not state:  # forgotten
                raise StopAsyncIteration
        self._changed = state.changed
        return BroadcastStatus.of(state, self._broadcasts.conversations.members.peers)


class Broadcasts:
    """Broadcast, ask, ACK and reply on top of :class:`~._service.Conversations`.

    ``ask_handler`` returns the node's ask handler (or ``None``) each time an ask arrives.
    Run it as a service (:meth:`run`): it hosts the deferred ask handlers and notices members
    that leave while a broadcast waits on them.
    """

    def __init__(
        self,
        conversations: Conversations,
        *,
        registry: EndpointRegistry,
        hub: EventHub,
        ask_handler: Callable[[], AskHandler | None],
    ) -> None:
        self.conversations = conversations
        self.book = conversations.book
        self.hub = hub
        self._ask_handler = ask_handler
        self._asks = anyio.CapacityLimiter(MAX_RUNNING_ASKS)
        self._failures = FailureLog(log)
        self._tg: anyio.abc.TaskGroup | None = None
        self._asked: OrderedDict[str, None] = OrderedDict()
        self._per_caller = CountQuota(conversations.config.quotas.deferred_asks)
        self.late = LateMembers()
        registry.pre_dispatch = self._pre_dispatch
        registry.add(self._broadcast_reply, "_synapse.broadcast.reply", publish=False)

    # -- sending ------------------------------------------------------------------------------

    async def broadcast(
        self, endpoint: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Broadcast:
        if not isinstance(endpoint, str) or not endpoint:
            raise TypeError("endpoint must be a non-empty string")
        if "broadcast" in kwargs:
            raise TypeError("'broadcast' is reserved: the node passes it to every receiver")
        conv = self.conversations
        origin = conv.record()
        nonce = new_nonce()
        payload = {"endpoint": endpoint, "args": list(args), "kwargs": dict(kwargs)}
        message = conv.new_event(nonce, nonce, "message", payload, peer=origin)
        # The receivers rebuild the message event from the call: its signature travels in the
        # broadcast map (synapse-p2p 2.5.0 ignores the extra key).
        b = Broadcast(nonce, origin, endpoint, sig=message.metadata.get(SIG_FIELD))
        conv.check_size(message)
        self.book.state(nonce).broadcast = b
        await conv.remember(message, local=True)
        call_kwargs = {**kwargs, "broadcast": b.to_dict()}
        state = self.book.state(nonce)
        alive = conv.members.records
        for peer in list(alive.values()):
            self._send(state, peer, endpoint, list(args), call_kwargs)
        # Members offline a moment ago get it if they come back soon (see ._late).
        self.late.sent(LateCall(nonce, endpoint, list(args), call_kwargs), alive,
                       anyio.current_time())  # fmt: skip
        return b

    def _send(
        self, state: BroadcastState, peer: Peer, endpoint: str, args: list[Any],
        kwargs: dict[str, Any], attempt: int = 0,
    ) -> None:  # fmt: skip
        state.pending.add(peer.id)
        self.conversations.delivery.send(
            peer, endpoint, args, kwargs,
            outcome=functools.partial(
                self._delivered, state.nonce, peer, (endpoint, args, kwargs), attempt
            ),
        )  # fmt: skip

    def _came_back(self, peer: Peer) -> None:
        """``peer`` is alive again: send it our broadcasts it missed while away (those it
        has not answered some other way)."""
        for call in self.late.came_back(peer.id, anyio.current_time()):
            state = self.book.get(call.nonce)
            if state is None or peer.id in state.acked or peer.id in state.replied:
                continue
            if peer.id in state.failed or peer.id in state.pending:
                continue
            log.debug("broadcast %s: sent to %s, back after a spell offline", call.nonce,
                      peer.name or peer.id[:8])  # fmt: skip
            self._send(state, peer, call.endpoint, call.args, call.kwargs)

    def _delivered(
        self,
        nonce: str,
        peer: Peer,
        call: tuple[str, list[Any], dict[str, Any]],
        attempt: int,
        result: Any,
        error: BaseException | None,
    ) -> None:
        """The broadcast call to ``peer`` returned. A call that could not be delivered is sent
        again while the peer is a member, up to :data:`DELIVERY_RETRIES` times, when that is
        safe (see :func:`_may_resend`; it stays pending meanwhile), and held for the peer's
        return if it went offline meanwhile (:meth:`_hold`); otherwise it, or a peer
        that refused it over a quota (``overloaded``), has failed, with the reason (it will
        not ACK). Retries run in the service's task group: stopping the node cancels them."""
        state = self.book.get(nonce)
        if state is None:
            return
        if isinstance(error, SynapseConnectionError | DroppedCall):
            members = self.conversations.members
            if (
                _may_resend(error, legacy=members.is_legacy(peer.id))
                and attempt < DELIVERY_RETRIES
                and self._tg is not None
            ):
                if peer.id not in members.peers:
                    self._hold(state, peer, call)
                    return
                self._tg.start_soon(self._resend, state, peer, call, attempt + 1)
                return
            state.delivered(peer.id, result, error)
            self.book.add_failure(nonce, peer, f"not delivered: {error}")
            return
        state.delivered(peer.id, result, error)
        if isinstance(error, RemoteError) and error.code == OVERLOADED:
            self.book.add_failure(nonce, peer, f"refused: {error.message}")

    async def _resend(
        self,
        state: BroadcastState,
        peer: Peer,
        call: tuple[str, list[Any], dict[str, Any]],
        attempt: int,
    ) -> None:
        await anyio.sleep(RETRY_DELAY * 2 ** (attempt - 1))
        if self.book.get(state.nonce) is not state:
            return
        if peer.id in state.acked or peer.id in state.replied or peer.id in state.failed:
            state.delivered(peer.id, None, None)
            return
        current = self.conversations.members.peers.get(peer.id)  # (it may have moved)
        if current is None:
            self._hold(state, peer, call)
            return
        log.debug("broadcast %s: sending to %s again (attempt %d)", state.nonce,
                  current.name or current.id[:8], attempt + 1)  # fmt: skip
        self._send(state, current, *call, attempt=attempt)

    def _hold(
        self, state: BroadcastState, peer: Peer, call: tuple[str, list[Any], dict[str, Any]]
    ) -> None:
        """``peer`` went offline before its call could be delivered: no longer pending (nor
        failed: it is not a member now), and it gets the call if it comes back soon, as the
        members away when the broadcast was sent do (:mod:`._late`)."""
        state.delivered(peer.id, None, None)
        self.late.hold(LateCall(state.nonce, *call), peer.id, anyio.current_time())
        log.debug("broadcast %s: %s went offline before it got it; held for its return",
                  state.nonce, peer.name or peer.id[:8])  # fmt: skip

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
        return await self.conversations.emit(
            conversation, "ack", payload, parent_id=parent_id, metadata=metadata
        )

    async def reply(self, broadcast: Broadcast, result: Any) -> ConversationEvent:
        if not isinstance(broadcast, Broadcast):
            raise TypeError("reply needs the Broadcast being answered")
        conv = self.conversations
        me = conv.local.node_id
        event = await conv.emit(
            broadcast,
            "reply",
            {"result": result},
            parent_id=broadcast.nonce,
            event_id=reply_event_id(broadcast.nonce, me),
        )
        # synapse-p2p 2.5.0 peers expect the reply RPC (the origin and every peer).
        members = conv.members
        legacy = {p.id: p for p in members.records.values() if members.is_legacy(p.id)}
        if broadcast.origin.id != me and broadcast.origin.id not in members.peers:
            origin = members.dialable(broadcast.origin)  # never on the message's word
            if origin is not None:
                legacy.setdefault(origin.id, origin)
        record = conv.record().to_dict()
        for peer in legacy.values():
            conv.delivery.send(
                peer, "_synapse.broadcast.reply", [broadcast.nonce, record], {"result": result}
            )
        return event

    # -- what came back -----------------------------------------------------------------------

    def replies(self, broadcast: Broadcast | str) -> list[BroadcastReply]:
        state = self.book.get(_nonce(broadcast))
        return list(state.replies) if state is not None else []

    def status(self, broadcast: Broadcast | str) -> BroadcastStatus | None:
        """Where the broadcast stands, or ``None`` if this node knows nothing of it."""
        state = self.book.get(_nonce(broadcast))
        if state is None:
            return None
        return BroadcastStatus.of(state, self.conversations.members.peers)

    def changes(self, broadcast: Broadcast | str) -> AsyncIterator[BroadcastStatus]:
        """The broadcast's status now, then again after every change (an ACK, a reply, a
        failure, a call returning, a member that took it leaving). Ends if the broadcast is
        forgotten (evicted or pruned). A plain iterator, not an async generator: a loop that
        breaks out of it leaves nothing to close."""
        return _StatusChanges(self, _nonce(broadcast))

    async def iter_replies(
        self, broadcast: Broadcast | str, *, timeout: float | None = None, errors: bool = False
    ) -> AsyncIterator[BroadcastReply]:
        nonce = _nonce(broadcast)
        state = self.book.state(nonce)
        members = self.conversations.members.peers
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        given = 0
        try:
            while True:
                source = state.answers if errors else state.replies
                while given < len(source):
                    reply = source[given]
                    given += 1
                    yield reply
                if self.book.get(nonce) is not state:  # evicted or pruned
                    return
                if await self._wait_more(state, members, deadline):
                    continue
                return
        finally:
            if not errors and not state.replies and state.failed:
                failures = "; ".join(
                    f"{r.peer.name or r.peer.id[:8]}: {r.error}" for r in state.answers if r.failed
                )
                log.warning("every answer to %s was an error (%s)", nonce, failures)

    async def _wait_more(
        self, state: BroadcastState, members: Mapping[str, Peer], deadline: float
    ) -> bool:
        """Wait for news of a broadcast; False once it is over (and quiet) or at
        ``deadline``."""
        changed = state.changed
        if BroadcastStatus.of(state, members).over:
            # An ACK may still be in flight: end after a short quiet spell.
            with anyio.move_on_after(min(REPLY_SETTLE, deadline - anyio.current_time())):
                await changed.wait()
            return changed.is_set()
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as scope:
            await changed.wait()
        return not scope.cancelled_caught

    # -- receiving ----------------------------------------------------------------------------

    async def run_ask(self, task: Any, context: dict[str, Any]) -> Any:
        """Run the ask handler directly (``_node.ask``, or ``synapse.ask`` outside a
        broadcast)."""
        if not isinstance(task, str):
            raise RemoteError(BAD_REQUEST, f"task must be a string, got {type(task).__name__}")
        handler = self._ask_handler()
        if handler is None:
            raise RemoteError(INTERNAL_ERROR, "node has no ask handler")
        return await handler(task, context)

    async def deferred_ask(
        self,
        task: Any,
        context: dict[str, Any],
        broadcast: Any,
        connection: Connection | None = None,
    ) -> Any:
        """An ask that came with a broadcast: ACK, answer ``deferred`` now, run the handler in
        the background, then reply (or emit an ``error`` event). A caller with
        ``Quotas.deferred_asks`` handlers running or waiting already gets ``overloaded`` (no
        ACK, the handler does not run)."""
        if not isinstance(task, str):
            raise RemoteError(BAD_REQUEST, f"task must be a string, got {type(task).__name__}")
        if not isinstance(broadcast, Broadcast):
            raise RemoteError(BAD_REQUEST, "broadcast must be a broadcast map")
        handler = self._ask_handler()
        if handler is None:
            raise RemoteError(INTERNAL_ERROR, "node has no ask handler")
        if self._tg is None:
            raise RemoteError(INTERNAL_ERROR, "node is stopping")
        if broadcast.nonce in self._asked:  # a replay: the handler ran for this nonce already
            return {"accepted": True, "deferred": True}
        key = "local" if connection is None else caller_key(connection.node_id, connection.ip)
        if not self._per_caller.acquire(key):
            raise RemoteError(
                OVERLOADED,
                f"too many asks from this caller being handled (quota: "
                f"{self._per_caller.limit} at once)",
            )
        self._ran(broadcast.nonce)
        try:
            await self.ack(broadcast)
            if self._stopping():  # the node began to stop during the ACK
                self._asked.pop(broadcast.nonce, None)  # (it did not run: a resend may run it)
                raise RemoteError(INTERNAL_ERROR, "node is stopping")
        except BaseException:
            self._per_caller.release(key)
            raise
        self._tg.start_soon(self._run_deferred, handler, task, context, broadcast, key)
        return {"accepted": True, "deferred": True}

    def _stopping(self) -> bool:
        """The service has ended, or is ending: it takes no new task (see :meth:`run`)."""
        return self._tg is None

    def _ran(self, nonce: str) -> None:
        """Remember that broadcast ``nonce``'s endpoint ran here (bounded)."""
        self._asked[nonce] = None
        while len(self._asked) > ASKED_REMEMBERED:
            self._asked.popitem(last=False)

    async def _run_deferred(
        self,
        handler: AskHandler,
        task: str,
        context: dict[str, Any],
        broadcast: Broadcast,
        key: str,
    ) -> None:
        try:
            await self._handle_deferred(handler, task, context, broadcast)
        finally:
            self._per_caller.release(key)

    async def _handle_deferred(
        self, handler: AskHandler, task: str, context: dict[str, Any], broadcast: Broadcast
    ) -> None:
        conv = self.conversations
        async with self._asks:
            _current_ask.set(broadcast)
            try:
                result = await handler(task, context)
            except Exception as exc:
                name = getattr(handler, "__qualname__", "ask handler")
                self._failures.report(name, f"ask handler {name} failed on {broadcast.nonce}:", exc)
                failure = {"task": task, "error": str(exc), "type": type(exc).__name__}
                await conv.emit(broadcast, "error", failure)
                return
            try:
                await self.reply(broadcast, result)
            except (TypeError, ValueError) as exc:  # e.g. a result that cannot be encoded
                log.warning("could not reply to %s: %s", broadcast.nonce, exc)
                await conv.emit(broadcast, "error", {"task": task, "error": str(exc)})

    async def progress(self, message: str, data: dict[str, Any]) -> ConversationEvent | None:
        """Inside an ask handler run for a broadcast: a ``progress`` event in its conversation
        (the asker sees the handler is still working). Elsewhere (a direct ``_node.ask``, no
        conversation): nothing, ``None``."""
        if not isinstance(message, str):
            raise TypeError(f"message must be a str, got {type(message).__name__}")
        broadcast = _current_ask.get()
        if broadcast is None:
            return None
        payload = {"message": message, **data}
        return await self.conversations.emit(
            broadcast, "progress", payload, parent_id=broadcast.nonce
        )

    async def _pre_dispatch(self, request: Request, connection: Connection | None) -> Request:
        raw = request.kwargs.get("broadcast")
        if not isinstance(raw, dict):
            return request
        broadcast = Broadcast.from_dict(raw)
        conv = self.conversations
        conv.config.check_member(broadcast.origin)
        kwargs = {k: v for k, v in request.kwargs.items() if k != "broadcast"}
        sig = broadcast.sig
        message = ConversationEvent(
            conversation_id=broadcast.nonce,
            event_id=broadcast.nonce,
            kind="message",
            peer=broadcast.origin,
            payload={"endpoint": request.endpoint, "args": list(request.args), "kwargs": kwargs},
            # The origin's peer record is stamped when the broadcast is made (by 2.5.0 nodes
            # too): every receiver gives the message the same time, so logs agree.
            created_at=broadcast.origin.last_seen,
            metadata={} if sig is None else {SIG_FIELD: sig},
        )
        # Checked like any event: a forged or replayed-into-the-future broadcast is refused
        # (``bad_request``) before its endpoint runs; past the caller's quota, ``overloaded``.
        conv.admit(connection, [message])
        if request.endpoint != ASK_ENDPOINT:  # (an ask answers a replay itself: deferred_ask)
            if broadcast.nonce in self._asked:
                raise RemoteError(
                    BAD_REQUEST,
                    f"broadcast {broadcast.nonce} already ran here: a broadcast runs its "
                    "endpoint once per node",
                )
            self._ran(broadcast.nonce)
        await conv.remember(message)
        self.book.state(broadcast.nonce).broadcast = broadcast
        self.hub.publish(BroadcastReceived(request.endpoint, broadcast, list(request.args), kwargs))
        return Request(
            request.endpoint, request.id, request.args, {**kwargs, "broadcast": broadcast}
        )

    async def _broadcast_reply(self, nonce: str, peer: Any, result: Any = None) -> dict[str, Any]:
        """``_synapse.broadcast.reply``: how 2.5.0 nodes reply."""
        if not isinstance(nonce, str) or not nonce:
            raise RemoteError(BAD_REQUEST, "nonce must be a non-empty string")
        replier = Peer.from_dict(peer)
        conv = self.conversations
        conv.config.check_member(replier)
        state = self.book.get(nonce)
        if state is not None and replier.id in state.replied:
            return {"ok": True}
        if conv.trust.author_verified(replier.id):
            # Our nodes send this call too (to an origin that is not a member); their signed
            # reply event is the one that counts, and an unsigned copy is never kept.
            return {"ok": True}
        event = ConversationEvent(
            conversation_id=nonce,
            event_id=reply_event_id(nonce, replier.id),
            kind="reply",
            peer=replier,
            payload={"result": result},
            parent_id=nonce,
            created_at=conv.config.wall_clock(),
        )
        if not await conv.remember(event):  # already known: make sure it is counted
            conv.count_reply(nonce, replier, result)
        return {"ok": True}

    # -- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host deferred ask handlers; wake broadcasts waiting on a member that went away;
        send members that come back the broadcasts they missed (:mod:`._late`). Cancellation
        cancels running ask handlers."""
        # (handlers cancelled before they started never released their caller's slot)
        self._per_caller = CountQuota(self._per_caller.limit)
        with self.hub.subscribe(PeerOffline, PeerLeft, PeerJoined, owner="broadcasts") as news:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    task_status.started()
                    await self._follow(news)
                finally:
                    # Under trio the group takes no new task once this body and its tasks are
                    # done, before anyio marks it inactive: a call's outcome reported meanwhile
                    # must not try (see _delivered, deferred_ask).
                    self._tg = None

    async def _follow(self, news: AsyncIterator[Any]) -> None:
        async for event in news:
            if isinstance(event, PeerJoined):
                self._came_back(event.peer)
                continue
            assert isinstance(event, PeerOffline | PeerLeft)
            if isinstance(event, PeerOffline):
                self.late.went_offline(event.peer.id, anyio.current_time())
            else:
                self.late.left(event.peer.id)
            self.book.member_gone(event.peer.id)


def _may_resend(error: BaseException, *, legacy: bool) -> bool:
    """Whether a broadcast call that failed with ``error`` may be sent again: it never left
    (the connection was refused), or its connection was lost to one of our nodes, which runs a
    broadcast's endpoint once per nonce (a copy is answered without running it again). Not
    to a synapse-p2p 2.5.0 peer (it would run it twice), and not a call dropped from a full
    queue (more calls would only add to the pressure)."""
    if isinstance(error, ConnectError):
        return True
    return isinstance(error, ConnectionLost) and not legacy


def _nonce(broadcast: Broadcast | str) -> str:
    return broadcast.nonce if isinstance(broadcast, Broadcast) else broadcast
