"""Outgoing calls to peers through bounded per-peer queues.

``send`` never waits: it queues the call for that peer and returns. One sender task per peer
(started on demand, ending after a quiet minute) makes the calls in order over the node's
pooled connection, each bounded by the node's call timeout; conversation events queued for one
of our nodes leave in batches. A full queue drops its oldest call
(counted; conversation anti-entropy repairs what was lost), so a slow or dead peer never
stalls the caller or the other peers.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ..errors import DroppedCall, SynapseError
from ..types import Peer

if TYPE_CHECKING:
    from .._seams import PeerCaller

__all__ = [
    "BATCH",
    "EVENTS_ENDPOINT",
    "EVENT_ENDPOINT",
    "TREE_ENDPOINT",
    "Delivery",
    "DeliveryStatistics",
]

EVENT_ENDPOINT = "_synapse.conversation.event"
#: Our extension: several conversation events in one call (never sent to 2.5.0 peers).
EVENTS_ENDPOINT = "_synapse.conversation.events"
BATCH = 64
#: Conversation events on the broadcast tree (:mod:`._tree`).
TREE_ENDPOINT = "_synapse.tree"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryStatistics:
    queued: int
    in_flight: int
    sent: int
    failed: int
    dropped: int
    senders: int


#: Told how a call ended: ``(result, None)`` or ``(None, error)`` (also when it is dropped).
Outcome = Callable[[Any, BaseException | None], None]
_Call = tuple[str, list[Any], dict[str, Any], Outcome | None]


@dataclass
class _Outbox:
    peer: Peer
    calls: deque[_Call] = field(default_factory=deque)
    wake: anyio.Event = field(default_factory=anyio.Event)
    running: bool = False
    linger: float = 0.0  # the longest linger asked for by the calls queued since the last send


class Delivery:
    """Per-peer queues of outgoing calls; see the module documentation."""

    def __init__(
        self,
        caller: PeerCaller,
        *,
        is_legacy: Callable[[str], bool],
        call_timeout: float,
        queue_limit: int = 1024,
        idle_exit: float = 60.0,
    ) -> None:
        """``caller`` makes the calls (each bounded by ``call_timeout``); ``is_legacy(id)``
        says whether a peer is a synapse-p2p 2.5.0 node (no batched events)."""
        self.caller = caller
        self.is_legacy = is_legacy
        self.call_timeout = call_timeout
        self.queue_limit = queue_limit
        self.idle_exit = idle_exit
        self._outboxes: dict[tuple[str, int], _Outbox] = {}
        self._task_group: TaskGroup | None = None
        self._sent = self._failed = self._dropped = self._in_flight = 0

    def statistics(self) -> DeliveryStatistics:
        queued = sum(len(box.calls) for box in self._outboxes.values())
        senders = sum(box.running for box in self._outboxes.values())
        return DeliveryStatistics(
            queued, self._in_flight, self._sent, self._failed, self._dropped, senders
        )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Send queued calls in tasks of this one until cancelled (see :meth:`attach`)."""
        try:
            async with anyio.create_task_group() as tg:
                self.attach(tg)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self.detach()

    def attach(self, tg: TaskGroup) -> None:
        """Send queued calls in tasks of ``tg`` from now: :meth:`run` without a task of its
        own, for an owner with a task group. The owner calls :meth:`detach` once ``tg`` has
        exited (its senders cancelled with it)."""
        self._task_group = tg

    def detach(self) -> None:
        """Stop sending: calls queued from now stay queued; the queues are dropped."""
        self._task_group = None
        self._outboxes.clear()

    def send(
        self,
        peer: Peer,
        endpoint: str,
        args: list[Any],
        kwargs: dict[str, Any],
        *,
        linger: float = 0.0,
        outcome: Outcome | None = None,
    ) -> None:
        """Queue ``endpoint(*args, **kwargs)`` for ``peer``; never waits.

        ``linger`` lets an idle queue wait that long before sending, so that calls queued
        meanwhile leave together (used for traffic nobody is waiting on). ``outcome`` is
        called once the call has returned, failed or been dropped.
        """
        key = (peer.address, peer.port)
        box = self._outboxes.get(key)
        if box is None:
            box = self._outboxes[key] = _Outbox(peer)
        if len(box.calls) >= self.queue_limit:
            dropped = box.calls.popleft()
            self._dropped += 1
            log.debug("queue for %s:%s full; dropped its oldest call", *key)
            _tell(dropped[3], None, DroppedCall(f"queue for {key[0]}:{key[1]} full"))
        if not box.calls:
            box.linger = linger
        box.calls.append((endpoint, args, kwargs, outcome))
        box.wake.set()
        group = self._task_group
        # A group already cancelled is closing: starting a sender there would fail and leave
        # its coroutine unawaited; the call stays queued (and is dropped with the queues).
        if not box.running and group is not None and not group.cancel_scope.cancel_called:
            box.running = True
            group.start_soon(self._sender, key, box)

    def _next_call(self, box: _Outbox) -> _Call:
        """The next call; consecutive conversation events to one of our nodes (not a 2.5.0
        peer) leave together as one ``_synapse.conversation.events`` call, and consecutive
        tree messages of one kind (pushes, announcements) as one message."""
        call = box.calls.popleft()
        endpoint, args = call[0], call[1]
        if endpoint == TREE_ENDPOINT:
            return _merge_tree(call, box.calls)
        if (
            endpoint != EVENT_ENDPOINT
            or call[3] is not None
            or not box.calls
            or box.calls[0][0] != EVENT_ENDPOINT
            or box.calls[0][3] is not None
            or self.is_legacy(box.peer.id)
        ):
            return call
        batch = [args[0]]
        while (
            box.calls
            and box.calls[0][0] == EVENT_ENDPOINT
            and box.calls[0][3] is None
            and len(batch) < BATCH
        ):
            batch.append(box.calls.popleft()[1][0])
        return EVENTS_ENDPOINT, [batch], {}, None

    async def _sender(self, key: tuple[str, int], box: _Outbox) -> None:
        try:
            while True:
                if box.linger > 0:  # let company gather (see send)
                    await anyio.sleep(box.linger)
                    box.linger = 0.0
                while box.calls:
                    endpoint, args, kwargs, outcome = self._next_call(box)
                    self._in_flight += 1
                    try:
                        result = await self.caller.call(
                            key[0], key[1], endpoint, args, kwargs, timeout=self.call_timeout
                        )
                        self._sent += 1
                        _tell(outcome, result, None)
                    except (SynapseError, OSError) as exc:
                        self._failed += 1
                        log.debug("%s to %s:%s failed: %s", endpoint, key[0], key[1], exc)
                        _tell(outcome, None, exc)
                    finally:
                        self._in_flight -= 1
                box.wake = anyio.Event()
                with anyio.move_on_after(self.idle_exit):
                    await box.wake.wait()
                if not box.calls:
                    return
        finally:
            box.running = False
            if not box.calls and self._outboxes.get(key) is box:
                del self._outboxes[key]


#: Tree message kinds whose items consecutive messages to one peer may share, and how many.
_MERGED = {"pt.eager": BATCH, "pt.ihave": 1024}


def _merge_tree(call: _Call, queued: deque[_Call]) -> _Call:
    """``call`` (a tree message) with the items of the same kind queued right behind it."""
    message = call[1][0]
    kind = message.get("k")
    limit = _MERGED.get(kind)
    if limit is None or not queued or queued[0][0] != TREE_ENDPOINT:
        return call
    items = list(message["items"])
    while queued and queued[0][0] == TREE_ENDPOINT and queued[0][1][0].get("k") == kind:
        more = queued[0][1][0]["items"]
        if len(items) + len(more) > limit:
            break
        items.extend(more)
        queued.popleft()  # (its outcome is the first call's: the same peer, the same message)
    return TREE_ENDPOINT, [{"k": kind, "items": items}], {}, call[3]


def _tell(outcome: Outcome | None, result: Any, error: BaseException | None) -> None:
    if outcome is None:
        return
    try:
        outcome(result, error)
    except Exception:  # a broken callback must not stop the peer's queue
        log.exception("delivery outcome callback failed")
