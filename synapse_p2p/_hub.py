"""Typed events inside a node: ordered, bounded subscriptions that never drop silently.

Services publish what happened (a peer joined, an event was stored...) as small frozen
dataclasses. Two kinds of listener get them:

* internal consumers (teams, workers, the swarm agent registry, the command line) take a
  :class:`Subscription` to the types they care about and read it in their own task, in
  publication order. A subscription's buffer is bounded; if a consumer falls so far behind
  that it fills, further events for it are dropped, **counted** (``Subscription.dropped``,
  ``EventHub.dropped``) and logged at ERROR: that is a bug in the consumer, never a normal
  state, and the publisher (a network handler) is never blocked by it;
* the user's ``@node.on(name)`` handlers, through the sink given to the hub (the node's
  lifecycle :class:`~synapse_p2p.node._events.EventBus`), under the public event names.

Publishing is synchronous and cheap when nobody listens.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import anyio
import anyio.lowlevel

from .types import BroadcastReply, ConversationEvent, Peer

__all__ = [
    "BroadcastReceived",
    "ConversationCompacted",
    "ConversationPruned",
    "EventHub",
    "EventStored",
    "NodeEvent",
    "PeerHeartbeat",
    "PeerJoined",
    "PeerLeft",
    "PeerOffline",
    "ReplyReceived",
    "Subscription",
]

log = logging.getLogger(__name__)


class NodeEvent:
    """Base of the typed events; ``name`` is the public ``@node.on`` name."""

    __slots__ = ()
    name: ClassVar[str] = ""

    def user_events(self) -> list[tuple[str, Any]]:
        """``(name, payload)`` pairs for the ``@node.on`` handlers."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class PeerJoined(NodeEvent):
    """A member was verified (new, moved, or back from offline)."""

    peer: Peer
    name: ClassVar[str] = "peer.joined"

    def user_events(self) -> list[tuple[str, Any]]:
        return [(self.name, self.peer)]


@dataclass(frozen=True, slots=True)
class PeerHeartbeat(NodeEvent):
    """A member was heard from directly."""

    peer: Peer
    name: ClassVar[str] = "peer.heartbeat"

    def user_events(self) -> list[tuple[str, Any]]:
        return [(self.name, self.peer)]


@dataclass(frozen=True, slots=True)
class PeerOffline(NodeEvent):
    """A member was silent for ``peer_timeout`` seconds."""

    peer: Peer
    name: ClassVar[str] = "peer.offline"

    def user_events(self) -> list[tuple[str, Any]]:
        return [(self.name, self.peer)]


@dataclass(frozen=True, slots=True)
class PeerLeft(NodeEvent):
    """A member said goodbye (it is removed at once)."""

    peer: Peer
    name: ClassVar[str] = "peer.left"

    def user_events(self) -> list[tuple[str, Any]]:
        return [(self.name, self.peer)]


@dataclass(frozen=True, slots=True)
class EventStored(NodeEvent):
    """A conversation event was stored (locally made or received); not for duplicates."""

    event: ConversationEvent
    name: ClassVar[str] = "conversation.event"

    def user_events(self) -> list[tuple[str, Any]]:
        event = self.event
        return [(self.name, event), (f"conversation.{event.kind}", event)]


@dataclass(frozen=True, slots=True)
class BroadcastReceived(NodeEvent):
    """Another node's broadcast call arrived (before its endpoint runs)."""

    endpoint: str
    broadcast: Any  # a synapse_p2p.types.Broadcast
    args: list[Any]
    kwargs: dict[str, Any]
    name: ClassVar[str] = "broadcast.received"

    def user_events(self) -> list[tuple[str, Any]]:
        payload = {
            "endpoint": self.endpoint,
            "broadcast": self.broadcast,
            "args": self.args,
            "kwargs": self.kwargs,
        }
        return [(self.name, payload)]


@dataclass(frozen=True, slots=True)
class ReplyReceived(NodeEvent):
    """Another node replied to a broadcast (first reply of that node only)."""

    reply: BroadcastReply
    name: ClassVar[str] = "broadcast.reply"

    def user_events(self) -> list[tuple[str, Any]]:
        return [(self.name, self.reply)]


@dataclass(frozen=True, slots=True)
class ConversationCompacted(NodeEvent):
    """A conversation was compacted; ``summary`` is the new ``summary`` event."""

    summary: ConversationEvent
    name: ClassVar[str] = "conversation.compacted"

    def user_events(self) -> list[tuple[str, Any]]:
        return [(self.name, self.summary)]


@dataclass(frozen=True, slots=True)
class ConversationPruned(NodeEvent):
    """A conversation was removed (retention, or the cap on conversations)."""

    conversation_id: str
    name: ClassVar[str] = "conversation.pruned"

    def user_events(self) -> list[tuple[str, Any]]:
        return [(self.name, self.conversation_id)]


UserSink = Callable[[str, Any], None]


class Subscription:
    """Events of some types, in publication order (see the module documentation).

    Iterate it (``async for event in subscription``) or call :meth:`receive`. Closing it (or
    leaving ``with subscription:``) detaches it from the hub and ends iteration. Its buffer is
    a plain deque: a subscription dropped without being closed leaves nothing open.
    """

    def __init__(
        self, hub: EventHub, types: tuple[type[NodeEvent], ...], buffer: int, owner: str
    ) -> None:
        self._hub = hub
        self.types = types
        self.owner = owner
        self.dropped = 0
        self._warned_at = -math.inf
        self._queue: deque[NodeEvent] = deque()
        self._buffer = buffer
        self._ready: anyio.Event | None = None  # readers wait on it while the queue is empty
        self._waiting = 0  # readers waiting on it
        self._closed = False  # detached: nothing more comes

    def _put(self, event: NodeEvent) -> None:
        if self._closed:
            return
        # (a reader waiting takes one more, as a memory stream hands it one: buffer=0 works)
        if len(self._queue) >= self._buffer + self._waiting:
            self.dropped += 1
            self._hub.dropped += 1
            now = anyio.current_time() if _in_event_loop() else 0.0
            if now - self._warned_at > 10:
                self._warned_at = now
                log.error(
                    "%s fell behind: dropped %s (%d so far); this is a bug",
                    self.owner,
                    type(event).__name__,
                    self.dropped,
                )
            return
        self._queue.append(event)
        self._wake()

    def _wake(self) -> None:
        ready, self._ready = self._ready, None
        if ready is not None:
            ready.set()

    async def receive(self) -> NodeEvent:
        """The next event; raises ``anyio.EndOfStream`` once closed and drained."""
        await anyio.lowlevel.checkpoint()  # (a schedule point even with events at hand)
        while not self._queue:
            if self._closed:
                raise anyio.EndOfStream
            ready = self._ready
            if ready is None:
                ready = self._ready = anyio.Event()
            self._waiting += 1
            try:
                await ready.wait()
            finally:
                self._waiting -= 1
                if not self._waiting and self._ready is ready:
                    # (nobody waits on it: a later read, maybe in another event loop,
                    # makes a new one)
                    self._ready = None
        return self._queue.popleft()

    def receive_nowait(self) -> NodeEvent:
        """The next event if one is buffered (``anyio.WouldBlock`` otherwise; once closed and
        drained, ``anyio.EndOfStream``)."""
        if self._queue:
            return self._queue.popleft()
        if self._closed:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> NodeEvent:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def close(self, *, discard: bool = False) -> None:
        """Detach from the hub; events already buffered can still be read (``discard``: they
        are dropped, and reading ends at once)."""
        self._hub._detach(self)
        self._closed = True
        if discard:
            self._queue.clear()
        self._wake()  # (readers waiting: the end)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(discard=True)


def _in_event_loop() -> bool:
    try:
        anyio.current_time()
    except Exception:
        return False
    return True


class EventHub:
    """Routes published :class:`NodeEvent` objects to subscriptions and to the user sink."""

    def __init__(self, user_sink: UserSink | None = None) -> None:
        self._user_sink = user_sink
        self._by_type: dict[type[NodeEvent], list[Subscription]] = {}
        #: Events dropped for consumers that fell behind (every one is also logged).
        self.dropped = 0
        self.published = 0

    def subscribe(
        self, *types: type[NodeEvent], buffer: int = 4096, owner: str = "a subscriber"
    ) -> Subscription:
        """A new subscription to ``types`` (events published from now on)."""
        if not types:
            raise TypeError("subscribe to at least one event type")
        if buffer != math.inf and (isinstance(buffer, bool) or not isinstance(buffer, int)):
            raise ValueError(f"buffer must be an int or math.inf, got {buffer!r}")
        if buffer < 0:
            raise ValueError(f"buffer cannot be negative, got {buffer}")
        subscription = Subscription(self, types, buffer, owner)
        for kind in types:
            self._by_type.setdefault(kind, []).append(subscription)
        return subscription

    @property
    def subscriptions(self) -> int:
        """Open subscriptions."""
        return len({id(s) for subs in self._by_type.values() for s in subs})

    def _detach(self, subscription: Subscription) -> None:
        for kind in subscription.types:
            subs = self._by_type.get(kind)
            if subs is not None and subscription in subs:
                subs.remove(subscription)

    def publish(self, event: NodeEvent) -> None:
        self.published += 1
        for subscription in self._by_type.get(type(event), ()):
            subscription._put(event)
        if self._user_sink is not None:
            for name, payload in event.user_events():
                self._user_sink(name, payload)
