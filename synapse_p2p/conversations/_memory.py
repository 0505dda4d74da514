"""The in-memory conversation log: pure Python, no I/O, gone when the process exits."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from operator import itemgetter

import anyio.lowlevel

from ..types import ConversationEvent
from ._log import (
    ConversationLog,
    ConversationLogClosed,
    ConversationLogStatistics,
    UnknownCursorError,
    check_compaction,
    check_event,
    check_page,
)

__all__ = ["MemoryConversationLog"]

_created_at = itemgetter(0)


class _Conversation:
    """One conversation: its events by id and their sorted ``(created_at, event_id)`` keys."""

    __slots__ = ("events", "horizon", "keys")

    def __init__(self) -> None:
        self.events: dict[str, ConversationEvent] = {}
        self.keys: list[tuple[float, str]] = []
        self.horizon: float | None = None

    def add(self, event: ConversationEvent) -> None:
        key = (float(event.created_at), event.event_id)  # compared as SQLite compares REALs
        keys = self.keys
        if not keys or key > keys[-1]:
            keys.append(key)  # the usual case: events arrive roughly in time order
        else:
            bisect.insort(keys, key)
        self.events[event.event_id] = event


class MemoryConversationLog(ConversationLog):
    """A conversation log held in memory (the node's default).

    Implements the :class:`~synapse_p2p.conversations.ConversationLog` contract exactly as the
    SQLite log does (same order, same horizon rule), without I/O: a write completes inside the
    coroutine, which then yields once to the scheduler without raising a cancellation (so a
    cancelled ``append`` has stored its event, like the SQLite log). Memory is bounded by the
    stored events: an index of ``event_id -> conversation`` plus, per conversation, the events
    and their sorted keys. Appends in time order cost O(1); out-of-order ones an insertion into
    a sorted list. ``events()`` is a binary search plus a slice.

    The log stores and returns the event objects it was given, without copying: treat them as
    immutable. Unlike the SQLite log it does not encode payloads, so it neither rejects values
    MsgPack cannot carry nor turns tuples into lists.
    """

    def __init__(self) -> None:
        self._conversations: dict[str, _Conversation] = {}
        self._where: dict[str, str] = {}  # event_id -> conversation_id, for stored events only
        self._closed = False
        self._appends = 0
        self._commits = 0
        self._duplicates = 0
        self._refused = 0

    def __repr__(self) -> str:
        return f"<MemoryConversationLog {len(self._conversations)} conversations>"

    def _check_open(self) -> None:
        if self._closed:
            raise ConversationLogClosed("the conversation log is closed")

    # -- writes ---------------------------------------------------------------------------

    def _store(self, event: ConversationEvent) -> bool:
        if event.event_id in self._where:
            self._duplicates += 1
            return False
        conversation = self._conversations.get(event.conversation_id)
        if conversation is None:
            conversation = self._conversations[event.conversation_id] = _Conversation()
        elif conversation.horizon is not None and float(event.created_at) <= conversation.horizon:
            self._refused += 1
            return False
        conversation.add(event)
        self._where[event.event_id] = event.conversation_id
        self._appends += 1
        return True

    async def append(self, event: ConversationEvent) -> bool:
        """Store one event (see :meth:`ConversationLog.append`)."""
        check_event(event)
        self._check_open()
        stored = self._store(event)
        self._commits += 1
        await anyio.lowlevel.cancel_shielded_checkpoint()
        return stored

    async def append_many(self, events: Iterable[ConversationEvent]) -> list[bool]:
        """Store several events at once; all are validated before any is stored."""
        batch = [check_event(event) for event in events]
        self._check_open()
        results = [self._store(event) for event in batch]
        self._commits += 1
        await anyio.lowlevel.cancel_shielded_checkpoint()
        return results

    async def compact(
        self,
        conversation_id: str,
        removed_event_ids: Iterable[str],
        summary: ConversationEvent,
    ) -> None:
        """Remove events and store the summary, atomically (see :meth:`ConversationLog.compact`)."""
        removed = check_compaction(conversation_id, removed_event_ids, summary)
        self._check_open()
        owner = self._where.get(summary.event_id)
        if owner is not None and owner != conversation_id:
            raise ValueError(f"summary id {summary.event_id!r} is stored in another conversation")
        conversation = self._conversations.setdefault(conversation_id, _Conversation())
        horizon = conversation.horizon
        dropped: set[str] = set()
        for event_id in removed:
            event = conversation.events.pop(event_id, None)
            if event is not None:
                dropped.add(event_id)
                del self._where[event_id]
                if horizon is None or event.created_at > horizon:
                    horizon = float(event.created_at)
        if summary.event_id in conversation.events:  # replaced by the new summary
            del conversation.events[summary.event_id]
            dropped.add(summary.event_id)
        if dropped:
            conversation.keys = [key for key in conversation.keys if key[1] not in dropped]
        conversation.add(summary)
        conversation.horizon = horizon
        self._where[summary.event_id] = conversation_id
        self._commits += 1
        await anyio.lowlevel.cancel_shielded_checkpoint()

    async def prune(self, conversation_id: str) -> None:
        """Forget the conversation, its events and its horizon."""
        self._check_open()
        conversation = self._conversations.pop(conversation_id, None)
        if conversation is not None:
            for event_id in conversation.events:
                del self._where[event_id]
        self._commits += 1
        await anyio.lowlevel.cancel_shielded_checkpoint()

    async def aclose(self) -> None:
        """Close the log: every later operation raises ``ConversationLogClosed``."""
        self.close()
        await anyio.lowlevel.cancel_shielded_checkpoint()

    def close(self) -> None:
        """Close the log and drop its contents."""
        self._closed = True
        self._conversations.clear()
        self._where.clear()

    # -- reads ----------------------------------------------------------------------------

    def seen(self, event_id: str) -> bool:
        self._check_open()
        return event_id in self._where

    def events(
        self,
        conversation_id: str,
        *,
        since: float = 0.0,
        limit: int | None = None,
        after: str | None = None,
    ) -> list[ConversationEvent]:
        since = check_page(conversation_id, since, limit, after)
        self._check_open()
        conversation = self._conversations.get(conversation_id)
        if conversation is None:
            if after is not None:
                raise UnknownCursorError(f"conversation {conversation_id!r} holds no events")
            return []
        keys = conversation.keys
        start = 0
        if since != 0.0:
            start = bisect.bisect_right(keys, since, key=_created_at)
        if after is not None:
            cursor = conversation.events.get(after)
            if cursor is None:
                raise UnknownCursorError(
                    f"conversation {conversation_id!r} does not hold event {after!r}"
                )
            start = max(start, bisect.bisect_right(keys, (float(cursor.created_at), after)))
        stop = len(keys) if limit is None else min(len(keys), start + limit)
        events = conversation.events
        return [events[key[1]] for key in keys[start:stop]]

    def conversations(self) -> list[str]:
        self._check_open()
        active = [(-c.keys[-1][0], cid) for cid, c in self._conversations.items() if c.keys]
        active.sort()
        return [cid for _, cid in active]

    def count(self, conversation_id: str) -> int:
        self._check_open()
        conversation = self._conversations.get(conversation_id)
        return 0 if conversation is None else len(conversation.keys)

    def last_activity(self, conversation_id: str) -> float | None:
        self._check_open()
        conversation = self._conversations.get(conversation_id)
        if conversation is None or not conversation.keys:
            return None
        return conversation.keys[-1][0]

    def horizon(self, conversation_id: str) -> float | None:
        self._check_open()
        conversation = self._conversations.get(conversation_id)
        return None if conversation is None else conversation.horizon

    def statistics(self) -> ConversationLogStatistics:
        return ConversationLogStatistics(
            conversations=sum(1 for c in self._conversations.values() if c.keys),
            events=len(self._where),
            appends=self._appends,
            commits=self._commits,
            duplicates=self._duplicates,
            refused=self._refused,
        )
