"""Lifecycle events (``@node.on(...)``), delivered to supervised handlers."""

from __future__ import annotations

import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .._logging import FailureLog

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
    """

    def __init__(self, *, buffer: int = 4096, max_concurrency: int = 64) -> None:
        self.handlers: dict[str, list[EventHandler]] = defaultdict(list)
        self._send, self._receive = anyio.create_memory_object_stream[tuple[str, Any]](buffer)
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
        try:
            self._send.send_nowait((event, payload))
        except anyio.WouldBlock:
            self.dropped += 1
            now = anyio.current_time()
            if now - self._warned_at > 10:
                self._warned_at = now
                log.warning(
                    "lifecycle event queue full: dropped %r (%d so far)", event, self.dropped
                )
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    async def emit(self, event: str, payload: Any) -> None:
        if self.handlers.get(event):
            await self._send.send((event, payload))

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver events until cancelled; cancellation cancels running handlers."""
        async with anyio.create_task_group() as tg:
            task_status.started()
            async for event, payload in self._receive:
                for handler in list(self.handlers.get(event, ())):
                    await self._limiter.acquire()
                    tg.start_soon(self._call, handler, event, payload)

    async def _call(self, handler: EventHandler, event: str, payload: Any) -> None:
        try:
            await handler(payload)
        except Exception as exc:
            name = getattr(handler, "__qualname__", repr(handler))
            self._failures.report(f"{name}:{event}", f"handler {name} for {event!r} raised", exc)
        finally:
            self._limiter.release()
