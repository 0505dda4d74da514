"""The contract every conversation log keeps (memory and SQLite alike).

A conversation log stores the :class:`~synapse_p2p.types.ConversationEvent` objects a node holds,
deduplicated by ``event_id``, and folds old events into a summary on compaction.

**Writes are async, reads are sync.** ``append``, ``append_many``, ``compact`` and ``prune`` are
coroutines; when they return, what they did is durable (for SQLite: committed to disk). The
reads (``seen``, ``events``, ``conversations``, ``count``, ``last_activity``, ``horizon``,
``accepts``) are plain methods, cheap enough to call from the event loop: they answer from an
in-memory index or from indexed point/range queries, and a read made after a write returned sees
that write.

**Order.** ``events()`` returns a conversation's events sorted by ``(created_at, event_id)``
ascending (ids compared by code point), in every backend. Two nodes holding the same set of
events therefore return the same list, whatever the arrival order. ``conversations()`` lists the
conversations holding at least one event, most recent ``last_activity`` first, ties by id.

**Compaction horizon.** ``compact(cid, removed_event_ids, summary)`` removes the listed events of
``cid`` and stores ``summary``, atomically. The conversation's *horizon* becomes the largest
``created_at`` among the removed events (it never moves back). From then on ``append`` refuses
(returns False for) any event of ``cid`` that is not stored and has ``created_at <= horizon``:
compacted events cannot come back through gossip or sync, and the log needs no tombstone per
removed id, so memory and disk stay bounded by what is stored. Events at or before the horizon
that were kept (the opening message, say) stay stored. ``prune(cid)`` forgets the conversation's
events *and* its horizon.

**Bounds.** Every index is bounded by the stored events: ``seen(event_id)`` answers from them
(it is False again for an event that was compacted away or pruned; ``append`` still refuses the
former thanks to the horizon). There is no ever-growing set of ids.

**Cancellation.** A write, once called, always runs to completion: it is shielded from
cancellation, the event is stored (or refused) and durable, and the method returns its result
normally; the cancellation is delivered at the caller's next checkpoint. A write never leaves a
half-applied batch or compaction behind. The delay this adds is bounded by the transaction
ahead of it and its own (nothing for the memory log).

**Errors.** Invalid events raise ``TypeError``/``ValueError`` before anything is stored. A failed
store (disk full, I/O error, database locked too long) raises :class:`ConversationLogError`; the
whole transaction was rolled back, so none of its events are stored. Reads and writes on a
closed log raise :class:`ConversationLogClosed` (``statistics()`` then reports it empty).

Events handed to a log, and the events a memory log returns, are shared objects: treat them as
immutable.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, NoReturn, Self, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from ..errors import ConversationLogClosed, ConversationLogError, UnknownCursorError
from ..types import ConversationEvent

__all__ = [
    "BaseConversationLog",
    "ConversationLog",
    "ConversationLogClosed",
    "ConversationLogError",
    "ConversationLogStatistics",
    "GroupCommit",
    "UnknownCursorError",
    "check_compaction",
    "check_event",
    "check_page",
]


@dataclass(frozen=True, slots=True)
class ConversationLogStatistics:
    """A snapshot of a log's size and counters.

    ``conversations``/``events`` is what is stored now; the counters count since the log was
    opened: ``appends`` events newly stored by ``append``/``append_many``, ``commits`` write
    transactions (SQLite; one per write call for memory), ``duplicates`` events already stored,
    ``refused`` events at or before their conversation's compaction horizon.
    """

    conversations: int
    events: int
    appends: int
    commits: int
    duplicates: int
    refused: int


def _check_id(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"event {name} must be a str, got {type(value).__name__}")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(f"event {name} is not valid Unicode text (lone surrogate)") from None


def check_event(event: object) -> ConversationEvent:
    """Validate what a log needs of an event (ids are text, ``created_at`` a finite number)."""
    if not isinstance(event, ConversationEvent):
        raise TypeError(f"expected a ConversationEvent, got {type(event).__name__}")
    _check_id(event.conversation_id, "conversation_id")
    _check_id(event.event_id, "event_id")
    created_at = event.created_at
    try:
        valid = not isinstance(created_at, bool) and math.isfinite(float(created_at))
    except (TypeError, ValueError, OverflowError):
        valid = False
    if not valid or not isinstance(created_at, int | float):
        raise ValueError(f"event created_at must be a finite number, got {created_at!r}")
    return event


def check_page(conversation_id: str, since: float, limit: int | None, after: str | None) -> float:
    """Validate the arguments of :meth:`ConversationLog.events`; ``since`` as a float."""
    if not isinstance(conversation_id, str):
        raise TypeError(f"conversation_id must be a str, got {type(conversation_id).__name__}")
    if after is not None and not isinstance(after, str):
        raise TypeError(f"after must be None or an event id (str), got {type(after).__name__}")
    try:
        number = float(since)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if isinstance(since, bool) or not isinstance(since, int | float) or math.isnan(number):
        raise TypeError(f"since must be a number, got {since!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")
    return number


class ConversationLog(abc.ABC):
    """Storage of conversation events; see the module documentation for the rules.

    Use it as an async context manager (``async with SqliteConversationLog(path) as log:``) or
    call :meth:`aclose` when done.
    """

    # -- writes (async, durable when they return) -----------------------------------------

    async def append(self, event: ConversationEvent) -> bool:
        """Store one event; True if newly stored, False if already stored or refused.

        Refused means at or before the conversation's compaction horizon. Idempotent: appending
        the same ``event_id`` again returns False and changes nothing.
        """
        return (await self.append_many([event]))[0]

    @abc.abstractmethod
    async def append_many(self, events: Iterable[ConversationEvent]) -> list[bool]:
        """Store several events in one transaction; one result per event, as :meth:`append`.

        Within the batch a repeated ``event_id`` is stored once (the first copy).
        """

    @abc.abstractmethod
    async def compact(
        self,
        conversation_id: str,
        removed_event_ids: Iterable[str],
        summary: ConversationEvent,
    ) -> None:
        """Atomically remove ``removed_event_ids`` from the conversation and store ``summary``.

        Ids the conversation does not hold are ignored. The horizon becomes
        ``max(horizon, max created_at of the removed events)``. ``summary`` must belong to
        ``conversation_id`` (``ValueError`` otherwise, or if its id is stored in another
        conversation); a stored event with the same id in this conversation is replaced.
        """

    @abc.abstractmethod
    async def prune(self, conversation_id: str) -> None:
        """Forget the conversation: its events and its horizon."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Wait for in-flight writes, then release the log's resources. Idempotent."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close synchronously, without waiting for pending writes (prefer :meth:`aclose`)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- reads (sync, cheap) --------------------------------------------------------------

    @abc.abstractmethod
    def seen(self, event_id: str) -> bool:
        """Whether an event with this id is stored now (in any conversation)."""

    @abc.abstractmethod
    def events(
        self,
        conversation_id: str,
        *,
        since: float = 0.0,
        limit: int | None = None,
        after: str | None = None,
    ) -> list[ConversationEvent]:
        """The conversation's events in ``(created_at, event_id)`` order.

        ``since`` keeps events with ``created_at > since``; ``0.0`` (the default, as in the
        protocol's ``sync(since=0)``) means no lower bound, so events with ``created_at <= 0``
        are included. ``after`` is a paging cursor: only events strictly after the stored event
        with that id; :class:`UnknownCursorError` if this conversation does not hold it.
        ``limit`` caps the number returned (``None``: no cap). Unknown conversation: ``[]``.
        """

    @abc.abstractmethod
    def conversations(self) -> list[str]:
        """Ids of the conversations holding events, most recent activity first (ties by id)."""

    @abc.abstractmethod
    def count(self, conversation_id: str) -> int:
        """How many events the conversation holds (0 if unknown)."""

    @abc.abstractmethod
    def last_activity(self, conversation_id: str) -> float | None:
        """The largest ``created_at`` among the conversation's events, None if it holds none."""

    @abc.abstractmethod
    def horizon(self, conversation_id: str) -> float | None:
        """The compaction horizon, None if the conversation was never compacted (or pruned)."""

    @abc.abstractmethod
    def statistics(self) -> ConversationLogStatistics:
        """A frozen snapshot of sizes and counters."""

    def accepts(self, conversation_id: str, event_id: str, created_at: float) -> bool:
        """Whether :meth:`append` would store such an event now (not stored, after the horizon).

        Lets a node skip fetching events it would refuse (for example during anti-entropy).
        """
        if self.seen(event_id):
            return False
        horizon = self.horizon(conversation_id)
        return horizon is None or created_at > horizon


#: The reference implementation's name for :class:`ConversationLog`.
BaseConversationLog = ConversationLog


def check_compaction(
    conversation_id: str, removed_event_ids: Iterable[str], summary: ConversationEvent
) -> list[str]:
    """Validate the arguments of :meth:`ConversationLog.compact`; the distinct removed ids."""
    check_event(summary)
    if summary.conversation_id != conversation_id:
        raise ValueError(
            f"summary belongs to conversation {summary.conversation_id!r}, not {conversation_id!r}"
        )
    if isinstance(removed_event_ids, str):
        raise TypeError("removed_event_ids must be an iterable of ids, not a single str")
    ids = list(dict.fromkeys(removed_event_ids))
    for event_id in ids:
        if not isinstance(event_id, str):
            raise TypeError(f"removed event ids must be str, got {type(event_id).__name__}")
    return ids


# -- for implementations: group commit ------------------------------------------------------

RowT = TypeVar("RowT")
T = TypeVar("T")


class _Batch(Generic[RowT]):
    __slots__ = ("done", "error", "results", "rows")

    def __init__(self) -> None:
        self.rows: list[RowT] = []
        self.done = anyio.Event()
        self.results: list[bool] | None = None
        self.error: Exception | None = None


class _LoopState(Generic[RowT]):
    __slots__ = ("batch", "drained", "limiter", "lock")

    def __init__(self) -> None:
        self.lock = anyio.Lock()  # one write at a time, batches and others in arrival order
        self.limiter = anyio.CapacityLimiter(1)  # one worker thread
        self.batch: _Batch[RowT] | None = None  # the batch still open to newcomers
        self.drained: anyio.Event | None = None


def _raise_again(error: Exception) -> NoReturn:
    if isinstance(error, ConversationLogError):
        raise type(error)(*error.args) from error
    raise ConversationLogError(f"conversation log write failed: {error!r}") from error


class GroupCommit(Generic[RowT]):
    """Runs a store's writes one at a time in a worker thread, coalescing concurrent appends.

    ``submit(rows)`` adds rows to the open batch. The first submitter of a batch (its leader)
    keeps it open while other submitters ready to run keep joining (for at most ``window``
    seconds and ``max_batch`` rows; while the write ahead of it runs, the batch simply fills),
    then calls ``write_batch(rows)`` in the worker thread, one transaction; every submitter gets
    its slice of the results once that returns, or the error it raised (as a
    :class:`ConversationLogError`). ``run(write, *args)`` runs any other write alone, in order
    with the batches, and returns or raises what it does. Both are shielded from cancellation
    until the write is done. Their state lives per event loop (an ``anyio.lowlevel.RunVar``), so
    a store can serve successive ``anyio.run`` calls.
    """

    def __init__(
        self, write_batch: Callable[[Sequence[RowT]], list[bool]], *, window: float, max_batch: int
    ) -> None:
        self._write_batch = write_batch
        self._window = window
        self._max_batch = max_batch
        self._loops: anyio.lowlevel.RunVar[_LoopState[RowT]] = anyio.lowlevel.RunVar("writes")
        self.pending = 0  # writes submitted and not finished, all event loops together

    def _state(self) -> _LoopState[RowT]:
        try:
            return self._loops.get()
        except LookupError:
            state: _LoopState[RowT] = _LoopState()
            self._loops.set(state)
            return state

    def _finished(self, state: _LoopState[RowT]) -> None:
        self.pending -= 1
        if self.pending == 0 and state.drained is not None:
            state.drained.set()

    async def submit(self, rows: list[RowT]) -> list[bool]:
        state = self._state()
        batch = state.batch
        leader = batch is None or len(batch.rows) >= self._max_batch
        if batch is None or leader:  # (spelled out for the type checker)
            batch = state.batch = _Batch()
        start = len(batch.rows)
        batch.rows.extend(rows)
        self.pending += 1
        try:
            with anyio.CancelScope(shield=True):
                if leader:
                    await self._lead(state, batch)
                else:
                    await batch.done.wait()
        finally:
            self._finished(state)
        if batch.results is None:
            _raise_again(batch.error or ConversationLogError("the write was abandoned"))
        return batch.results[start : start + len(rows)]

    async def _lead(self, state: _LoopState[RowT], batch: _Batch[RowT]) -> None:
        try:
            deadline = anyio.current_time() + self._window
            while True:
                size = len(batch.rows)
                await anyio.lowlevel.cancel_shielded_checkpoint()  # ready submitters join
                if (
                    len(batch.rows) == size
                    or len(batch.rows) >= self._max_batch
                    or state.lock.locked()
                    or anyio.current_time() >= deadline
                ):
                    break
            async with state.lock:
                if state.batch is batch:
                    state.batch = None
                batch.results = await anyio.to_thread.run_sync(
                    self._write_batch, batch.rows, limiter=state.limiter
                )
        except Exception as exc:
            batch.error = exc
        finally:
            batch.done.set()

    async def run(self, write: Callable[..., T], *args: Any) -> T:
        state = self._state()
        self.pending += 1
        try:
            with anyio.CancelScope(shield=True):
                async with state.lock:
                    result = await anyio.to_thread.run_sync(write, *args, limiter=state.limiter)
        finally:
            self._finished(state)
        return result

    async def drain(self) -> None:
        """Wait, shielded, until no write submitted from this event loop is pending."""
        with anyio.CancelScope(shield=True):
            state = self._state()
            while self.pending:
                state.drained = anyio.Event()
                await state.drained.wait()
