"""Lifecycle events (``@node.on(...)``), delivered to supervised handlers."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .._logging import FailureLog
from .._spawn import start_soon

__all__ = ["EventBus", "EventHandler"]

log = logging.getLogger(__name__)

EventHandler = Callable[[Any], Awaitable[Any]]


class EventBus:
    """Queues lifecycle events and runs their handlers as children of the node.

    Events are taken in order from a bounded queue; each handler of an event runs as its own
    task (at most ``max_concurrency`` at once, further events wait). An exception in a handler
    is logged with its traceback and affects neither the node nor the other handlers. Events
    with no handler are not queued. If the queue is full, :meth:`emit_nowait` drops the event
    and counts it in :attr:`dropped` (a warning is logged); :meth:`emit` waits instead.
    Events queued while the node is stopped are delivered when it runs again. The queue is a
    plain deque (no stream to close: a node dropped without stopping leaves nothing open).
    """

    def __init__(self, *, buffer: int = 4096, max_concurrency: int = 64) -> None:
        self.handlers: dict[str, list[EventHandler]] = defaultdict(list)
        self._queue: deque[tuple[str, Any]] = deque()
        self._buffer = buffer
        self._ready: anyio.Event | None = None  # the runner waits on it while the queue is empty
        self._room: anyio.Event | None = None  # emit() waits on it while the queue is full
        self._limiter = anyio.Semaphore(max_concurrency)
        self.dropped = 0
        self._warned_at = -1e9
        self._failures = FailureLog(log)

    def on(self, event: str, handler: EventHandler) -> EventHandler:
        if not isinstance(event, str) or not event:
            raise TypeError("event name must be a non-empty string")
        if not inspect.iscoroutinefunction(handler):
            raise TypeError(f"handler for {event!r} must be an async function")
        self.handlers[event].append(handler)
        return handler

    def has_handlers(self, event: str) -> bool:
        return bool(self.handlers.get(event))

    def emit_nowait(self, event: str, payload: Any) -> None:
        if not self.handlers.get(event):
            return
        if len(self._queue) >= self._buffer:
            self.dropped += 1
            now = anyio.current_time()
            if now - self._warned_at > 10:
                self._warned_at = now
                log.warning(
                    "lifecycle event queue full: dropped %r (%d so far)", event, self.dropped
                )
            return
        self._put((event, payload))

    async def emit(self, event: str, payload: Any) -> None:
        if not self.handlers.get(event):
            return
        while len(self._queue) >= self._buffer:
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()
        self._put((event, payload))

    def _put(self, item: tuple[str, Any]) -> None:
        self._queue.append(item)
        if self._ready is not None:
            self._ready.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver events until cancelled; cancellation cancels running handlers."""
        queue = self._queue
        room, self._room = self._room, None
        if room is not None:  # emit() calls left waiting by the last run look again
            with contextlib.suppress(RuntimeError):  # (that run's event loop is closed)
                room.set()
        try:
            async with anyio.create_task_group() as tg:
                task_status.started()
                while True:
                    while not queue:
                        self._ready = anyio.Event()
                        await self._ready.wait()
                    event, payload = queue.popleft()
                    self._made_room()
                    for handler in list(self.handlers.get(event, ())):
                        await self._limiter.acquire()
                        start_soon(tg, self._call, handler, event, payload)
        finally:
            self._ready = None

    def _made_room(self) -> None:
        """Wake the emit() calls waiting for room."""
        room, self._room = self._room, None
        if room is not None:
            room.set()

    async def _call(self, handler: EventHandler, event: str, payload: Any) -> None:
        try:
            await handler(payload)
        except Exception as exc:
            name = getattr(handler, "__qualname__", repr(handler))
            self._failures.report(f"{name}:{event}", f"handler {name} for {event!r} raised", exc)
        finally:
            self._limiter.release()
