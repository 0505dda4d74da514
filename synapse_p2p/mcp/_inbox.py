"""Asks that reach the node, held until the MCP client takes and answers them.

The node's ask handlers normally ACK a swarm ask the moment it arrives and reply when the
handler returns. Behind an MCP server the handler is a model that polls, so an ask is ACKed
only when the client *takes* it (the ``next_ask`` tool), never while it merely waits in the
queue: an ask nobody takes is never ACKed, and the asker is not told anything was promised.

What the asker sees:

* **Swarm asks** (``synapse.ask`` with a broadcast). If a client is waiting in ``next_ask``
  at that moment, it takes the ask at once: the ``ack`` event is emitted and the call answers
  ``{"accepted": true, "deferred": true}``, as any node's ask handler does. Otherwise the ask
  is queued and the call answers ``{"accepted": true, "deferred": false, "queued": true}``
  (not an ACK); the ``ack`` event follows when the client takes it. An ask still untaken after
  ``hold`` seconds is dropped (never ACKed, nothing emitted). A taken ask is answered with a
  ``reply`` event, or an ``error`` event when the client reports a failure or gives no answer
  within ``answer_timeout`` seconds. With the queue full the call answers
  ``{"accepted": false, "deferred": false, "reason": "..."}``.
* **Direct asks** (``_node.ask``, or ``synapse.ask`` without a broadcast): the call waits.
  It fails with ``internal_error`` if no client takes the ask within ``hold`` seconds or no
  answer comes within ``answer_timeout``, and with ``overloaded`` when the queue is full. If
  the caller stops waiting, the ask is withdrawn.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from ..errors import BAD_REQUEST, INTERNAL_ERROR, OVERLOADED, RemoteError
from ..types import Broadcast, Peer

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["Ask", "AskInbox", "InboxError"]

log = logging.getLogger(__name__)

#: How long an incoming swarm ask waits for a client already in ``next_ask`` to take it.
HANDOFF = 1.0
#: Ids of answered or withdrawn asks remembered, to say why a late answer is refused.
GONE_LIMIT = 256
#: What askers are told once the MCP client has gone (the inbox is closed).
GONE = "the agent behind this node has gone (its MCP client disconnected)"
#: How long closing the inbox spends telling the swarm about asks it had ACKed.
CLOSE_GRACE = 2.0


class InboxError(Exception):
    """A request about a queued ask or task that cannot be done (the message says why)."""


@dataclass(eq=False)
class Ask:
    """One ask held for the client: ``broadcast`` is None for a direct ask."""

    id: str
    task: str
    context: dict[str, Any]
    broadcast: Broadcast | None
    caller: Peer | None
    received_at: float
    taken_at: float | None = None
    taken: anyio.Event = field(default_factory=anyio.Event)
    answered: anyio.Event = field(default_factory=anyio.Event)
    outcome: tuple[bool, Any] | None = None  # (ok, result or error text)

    def describe(self) -> dict[str, Any]:
        """What the client is shown when it takes the ask."""
        data: dict[str, Any] = {
            "ask_id": self.id,
            "task": self.task,
            "context": self.context,
            "kind": "direct" if self.broadcast is None else "swarm",
        }
        if self.broadcast is not None:
            data["conversation_id"] = self.broadcast.nonce
            origin = self.broadcast.origin
            data["from"] = {"id": origin.id, "name": origin.name}
        return data


class AskInbox:
    """The queue of asks for one node (see the module documentation).

    :meth:`install` makes this inbox the node's ask handler (``@node.ask``) and its
    ``synapse.ask`` endpoint. :meth:`run` must run while the inbox is used (it expires asks);
    :meth:`take` and :meth:`answer` are what the ``next_ask`` and ``reply`` tools call.
    """

    def __init__(
        self,
        node: Node,
        *,
        capacity: int = 32,
        hold: float = 120.0,
        answer_timeout: float = 3600.0,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if hold <= 0 or answer_timeout <= 0:
            raise ValueError("hold and answer_timeout must be positive")
        self.node = node
        self.capacity = capacity
        self.hold = float(hold)
        self.answer_timeout = float(answer_timeout)
        self._queue: deque[Ask] = deque()
        self._taken: dict[str, Ask] = {}
        self._gone: OrderedDict[str, str] = OrderedDict()
        self._nonces: OrderedDict[str, Ask] = OrderedDict()  # swarm asks held or recent
        self._ids = itertools.count(1)
        self._arrived = anyio.Event()
        self._changed = anyio.Event()
        self._waiters = 0
        self._closed = False

    # -- the node side ------------------------------------------------------------------------

    def install(self) -> None:
        """Take over the node's ask handler and ``synapse.ask`` endpoint."""
        node = self.node

        @node.ask
        async def direct_ask(task: str, context: dict[str, Any]) -> Any:
            return await self._direct(task, context)

        @node.endpoint("synapse.ask", publish=False)
        async def swarm_ask(task: Any, context: Any = None, broadcast: Any = None) -> Any:
            if not isinstance(task, str):
                raise RemoteError(BAD_REQUEST, f"task must be a string, got {type(task).__name__}")
            if context is None:
                context = {}
            if not isinstance(context, dict):
                raise RemoteError(
                    BAD_REQUEST, f"context must be a map, got {type(context).__name__}"
                )
            if broadcast is None:
                return await self._direct(task, context)
            if not isinstance(broadcast, Broadcast):
                broadcast = Broadcast.from_dict(broadcast)
            return await self._swarm(task, context, broadcast)

    def _open(self) -> int:
        return len(self._queue) + len(self._taken)

    def _enqueue(self, task: str, context: dict[str, Any], broadcast: Broadcast | None) -> Ask:
        self._expire_queued()
        ask = Ask(
            id=f"ask-{next(self._ids)}",
            task=task,
            context=dict(context),
            broadcast=broadcast,
            caller=broadcast.origin if broadcast is not None else None,
            received_at=anyio.current_time(),
        )
        self._queue.append(ask)
        self._arrived.set()
        self._notify()
        return ask

    async def _swarm(self, task: str, context: dict[str, Any], broadcast: Broadcast) -> Any:
        if self._closed:
            return {"accepted": False, "deferred": False, "reason": GONE}
        known = self._nonces.get(broadcast.nonce)
        if known is not None:  # a redelivery: one ask per broadcast
            if self._holds(known):
                return {"accepted": True, "deferred": known.taken.is_set()}
            reason = self._gone.get(known.id, "closed")
            return {"accepted": False, "deferred": False, "reason": f"ask {known.id}: {reason}"}
        if self._open() >= self.capacity:
            reason = f"busy: {self._open()} asks are waiting for the agent"
            return {"accepted": False, "deferred": False, "reason": reason}
        ask = self._enqueue(task, context, broadcast)
        self._nonces[broadcast.nonce] = ask
        while len(self._nonces) > GONE_LIMIT + self.capacity:
            self._nonces.popitem(last=False)
        if self._waiters:  # a client is in next_ask: it takes (and ACKs) the ask at once
            with anyio.move_on_after(HANDOFF):
                await ask.taken.wait()
        if ask.taken.is_set():
            return {"accepted": True, "deferred": True}
        return {"accepted": True, "deferred": False, "queued": True}

    async def _direct(self, task: str, context: dict[str, Any]) -> Any:
        if self._closed:
            raise RemoteError(INTERNAL_ERROR, GONE)
        if self._open() >= self.capacity:
            raise RemoteError(OVERLOADED, f"busy: {self._open()} asks are waiting for the agent")
        ask = self._enqueue(task, context, None)
        try:
            with anyio.move_on_after(self.hold):
                await ask.taken.wait()
            if not ask.taken.is_set():
                self._forget(ask, "no agent took it in time")
                raise RemoteError(INTERNAL_ERROR, f"no agent took the ask within {self.hold:g} s")
            with anyio.move_on_after(self.answer_timeout):
                await ask.answered.wait()
            if ask.outcome is None:
                self._forget(ask, "the agent did not answer in time")
                raise RemoteError(
                    INTERNAL_ERROR, f"the agent did not answer within {self.answer_timeout:g} s"
                )
            ok, value = ask.outcome
            if ok:
                return value
            raise RemoteError(INTERNAL_ERROR, str(value))
        finally:
            if self._holds(ask):  # cancelled: the caller stopped waiting
                self._forget(ask, "the asker stopped waiting")

    # -- the client side ----------------------------------------------------------------------

    async def take(self, timeout: float) -> Ask | None:
        """The oldest waiting ask, taken (a swarm ask is ACKed now), or None after ``timeout``
        seconds with none. Raises like :meth:`Node.ack` if the ACK cannot be emitted (the ask
        is then put back). Cancellation takes nothing."""
        ask: Ask | None = None
        with anyio.move_on_after(timeout):
            while ask is None:
                self._expire_queued()
                if self._queue:
                    ask = self._queue.popleft()
                    break
                if self._arrived.is_set():
                    self._arrived = anyio.Event()
                arrived = self._arrived  # shared by every waiter: one set() wakes them all
                self._waiters += 1
                try:
                    await arrived.wait()
                finally:
                    self._waiters -= 1
        if ask is None:
            return None
        self._taken[ask.id] = ask  # held while the ACK goes out (a redelivery sees it)
        try:
            if ask.broadcast is not None:
                await self.node.ack(ask.broadcast)
        except BaseException:
            del self._taken[ask.id]
            self._queue.appendleft(ask)
            raise
        ask.taken_at = anyio.current_time()
        ask.taken.set()
        self._notify()
        return ask

    async def answer(self, ask_id: str, *, result: Any = None, error: str | None = None) -> Ask:
        """Answer a taken ask with ``result``, or report ``error``. Raises :class:`InboxError`
        for an ask that is not taken (unknown, answered, withdrawn or expired), and like
        :meth:`Node.reply` for a result that cannot be sent (the ask stays open)."""
        ask = self._taken.get(ask_id)
        if ask is None:
            raise InboxError(self._why_not(ask_id))
        if ask.broadcast is not None:
            if error is None:
                await self.node.reply(ask.broadcast, result)
            else:
                await self.node.emit_conversation_event(
                    ask.broadcast, "error", {"task": ask.task, "error": error}
                )
        ask.outcome = (True, result) if error is None else (False, error)
        ask.answered.set()
        self._forget(ask, "answered already")
        return ask

    def _why_not(self, ask_id: str) -> str:
        if any(a.id == ask_id for a in self._queue):
            return f"ask {ask_id} is not taken yet: take it with next_ask first"
        reason = self._gone.get(ask_id)
        if reason is not None:
            return f"ask {ask_id} is closed: {reason}"
        return f"no ask {ask_id!r} (ids come from next_ask)"

    def pending(self) -> int:
        """How many asks wait to be taken."""
        self._expire_queued()
        return len(self._queue)

    def open_asks(self) -> list[Ask]:
        """Asks taken and not answered yet."""
        return list(self._taken.values())

    async def aclose(self) -> None:
        """Stop taking asks (new ones are refused with :data:`GONE`): waiting direct askers
        get that error, and every taken swarm ask (ACKed, so the asker waits) gets an
        ``error`` event, best effort within :data:`CLOSE_GRACE` seconds. Untaken swarm asks
        were never ACKed and are dropped silently. Idempotent."""
        if self._closed:
            return
        self._closed = True
        held = [*self._queue, *self._taken.values()]
        with anyio.move_on_after(CLOSE_GRACE, shield=True):
            for ask in held:
                if ask.broadcast is None:
                    ask.outcome = (False, GONE)
                    ask.taken.set()
                    ask.answered.set()
                elif ask.id in self._taken:
                    try:
                        await self.answer(ask.id, error=GONE)
                    except Exception as exc:  # the node may be stopping too
                        log.info("could not close ask %s: %s", ask.id, exc)
        for ask in held:
            if self._holds(ask):
                self._forget(ask, GONE)

    # -- expiry ---------------------------------------------------------------------------------

    def _holds(self, ask: Ask) -> bool:
        return ask.id in self._taken or ask in self._queue

    def _forget(self, ask: Ask, reason: str) -> None:
        self._taken.pop(ask.id, None)
        try:
            self._queue.remove(ask)
        except ValueError:
            pass
        self._gone[ask.id] = reason
        while len(self._gone) > GONE_LIMIT:
            self._gone.popitem(last=False)
        self._notify()

    def _expire_queued(self) -> None:
        """Drop swarm asks left untaken for ``hold`` seconds (never ACKed: nothing to say);
        direct asks expire in their own call."""
        horizon = anyio.current_time() - self.hold
        for ask in [a for a in self._queue if a.broadcast is not None and a.received_at <= horizon]:
            log.info("ask %s (%s) was not taken within %g s; dropped", ask.id, ask.task, self.hold)
            self._forget(ask, "no agent took it in time")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Expire asks until cancelled: untaken swarm asks after ``hold``; taken swarm asks
        left unanswered for ``answer_timeout`` get an ``error`` event (they were ACKed)."""
        task_status.started()
        while True:
            now = anyio.current_time()
            self._expire_queued()
            for ask in list(self._taken.values()):
                if ask.broadcast is None or ask.taken_at is None:
                    continue
                if now - ask.taken_at >= self.answer_timeout:
                    error = f"the agent did not answer within {self.answer_timeout:g} s"
                    try:
                        await self.answer(ask.id, error=error)
                    except (InboxError, RuntimeError, TypeError, ValueError) as exc:
                        log.warning("could not close ask %s: %s", ask.id, exc)
                        self._forget(ask, error)
            deadlines = [a.received_at + self.hold for a in self._queue if a.broadcast]
            deadlines += [
                a.taken_at + self.answer_timeout
                for a in self._taken.values()
                if a.broadcast is not None and a.taken_at is not None
            ]
            delay = max(0.0, min(deadlines) - anyio.current_time()) if deadlines else 60.0
            changed = self._changed
            with anyio.move_on_after(delay + 0.01):
                await changed.wait()
