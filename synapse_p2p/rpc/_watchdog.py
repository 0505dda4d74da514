"""One task that enforces the timeouts of many :class:`~._channel.FrameChannel` objects.

A server or a connection pool owns one :class:`Watchdog` for all its connections instead of a
task per connection. Deadlines (a channel's idle deadline, or the read deadline of a frame in
the middle of arriving) sit in a heap with at most one live entry per channel: an entry is
added only when a channel's deadline moves *earlier* than its entry (a frame starts, a
connection becomes idle); a deadline that moves later is noticed when the entry comes due,
and the channel is re-filed for its new deadline. So the per-request work is a comparison,
and the task wakes only when something may really have expired. A channel's owner can ask to
be called back at a time of its own (``FrameChannel.wake_owner_at``), e.g. for call timeouts.
Writes that make no progress are found by a sweep over the channels every ``check_interval``
(the smallest of the watched channels').
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._spawn import start_soon

if TYPE_CHECKING:
    from ._channel import FrameChannel

__all__ = ["Watchdog"]

#: Cancelled heap entries tolerated before the heap is rebuilt without them (and only once
#: they are more than half of it, so a rebuild costs O(1) per cancelled entry at any size).
#: Small: an entry is ~150 bytes, and a node of a large swarm owns two watchdogs of a few
#: dozen channels each, where 64 stale entries apiece were most of the heap's memory.
_MIN_STALE_TO_REBUILD = 16


class Watchdog:
    """Enforces the timeouts of the channels it :meth:`watch` es (see ``FrameChannel``).

    Run it with ``await task_group.start(watchdog.run)`` before watching channels; an expired
    channel's ``on_timeout`` callback and closing run in tasks of the watchdog's own task
    group (bounded by the channel's ``write_timeout``), so one slow close delays nobody.
    Cancelling :meth:`run` stops enforcement; the owner closes its channels.
    """

    def __init__(self) -> None:
        self._heap: list[list[Any]] = []  # [deadline, sequence, channel or None if cancelled]
        self._sequence = 0
        self._stale = 0
        self._channels: set[FrameChannel] = set()
        self._interval = math.inf
        self._next_sweep = math.inf
        self._wake_at = math.inf
        self._scope: anyio.CancelScope | None = None
        self._tg: TaskGroup | None = None

    @property
    def running(self) -> bool:
        return self._tg is not None

    def __len__(self) -> int:
        return len(self._channels)

    # -- channels -----------------------------------------------------------------------------

    def watch(self, channel: FrameChannel) -> None:
        """Enforce ``channel``'s timeouts from now on (until it closes or times out)."""
        channel._watchdog = self
        channel._watch_target = math.inf
        self._channels.add(channel)
        interval = channel._check_interval
        if interval < self._interval or self._next_sweep == math.inf:
            self._interval = min(self._interval, interval)
            self._next_sweep = min(self._next_sweep, anyio.current_time() + self._interval)
            self._wake(self._next_sweep)
        deadline = channel._deadline()
        if deadline < math.inf:
            self.schedule(channel, deadline)

    def unwatch(self, channel: FrameChannel) -> None:
        """Stop watching ``channel`` (idempotent)."""
        self._channels.discard(channel)
        self._cancel_entry(channel)
        channel._watch_target = -math.inf  # never re-filed
        channel._watchdog = None

    def schedule(self, channel: FrameChannel, deadline: float) -> None:
        """File ``channel`` to be looked at ``deadline`` (earlier than its current entry)."""
        self._cancel_entry(channel)
        self._sequence += 1
        entry = [deadline, self._sequence, channel]
        channel._watch_entry = entry
        channel._watch_target = deadline
        heapq.heappush(self._heap, entry)
        self._wake(deadline)
        if self._stale > _MIN_STALE_TO_REBUILD and 2 * self._stale > len(self._heap):
            self._heap = [e for e in self._heap if e[2] is not None]
            heapq.heapify(self._heap)
            self._stale = 0

    def close_soon(self, channel: FrameChannel) -> None:
        """Close ``channel`` in a task of the watchdog (for owners without a task of their
        own); does nothing if the watchdog is not running (the owner closes it)."""
        self.unwatch(channel)
        self.spawn(channel.aclose)

    def _cancel_entry(self, channel: FrameChannel) -> None:
        entry = channel._watch_entry
        if entry is not None:
            entry[2] = None
            self._stale += 1
            channel._watch_entry = None

    def _wake(self, when: float) -> None:
        if when < self._wake_at:
            self._wake_at = when
            if self._scope is not None:
                self._scope.deadline = when

    # -- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Enforce deadlines until cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                try:
                    while True:
                        now = anyio.current_time()
                        self._fire(now)
                        if now >= self._next_sweep:
                            self._sweep(now)
                        heap = self._heap
                        self._wake_at = min(heap[0][0] if heap else math.inf, self._next_sweep)
                        with anyio.CancelScope(deadline=self._wake_at) as scope:
                            self._scope = scope
                            await anyio.sleep_forever()
                        self._scope = None
                finally:
                    self._tg = None  # stopping: start no more tasks (see spawn)
        finally:
            self._tg = None
            self._scope = None

    def _fire(self, now: float) -> None:
        heap = self._heap
        while heap and (heap[0][2] is None or heap[0][0] <= now):
            _, _, channel = heapq.heappop(heap)
            if channel is None:
                self._stale -= 1
                continue
            channel._watch_entry = None
            channel._watch_target = math.inf
            expired = channel._expired(now)
            if expired is not None:
                self._expire(channel, expired)
                continue
            channel._wake_owner(now)  # may file the channel again itself
            deadline = channel._deadline()
            if deadline < channel._watch_target:
                self.schedule(channel, deadline)

    def _sweep(self, now: float) -> None:
        stalled = []
        for channel in self._channels:
            if channel._writing and now - channel._write_started >= channel._write_timeout:
                stalled.append(channel)
            elif channel._on_sweep is not None:
                channel._on_sweep()
        for channel in stalled:
            expired = channel._expired(now)
            if expired is not None:
                self._expire(channel, expired)
        self._next_sweep = now + self._interval if self._channels else math.inf

    def _expire(self, channel: FrameChannel, expired: BaseException) -> None:
        self.unwatch(channel)
        self.spawn(channel._expire, expired)

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in a task of the watchdog (a channel's chores, bounded by its
        timeouts; ``fn`` must not raise). While the watchdog shuts down (its task group no
        longer takes tasks, e.g. the node is stopping and a write was cancelled mid-frame),
        nothing is started: the channel's owner closes what is left."""
        if self._tg is None:
            return
        start_soon(self._tg, fn, *args)
