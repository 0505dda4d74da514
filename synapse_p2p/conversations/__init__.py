"""Conversations: event logs (memory and SQLite), delivery, sync, compaction and retention.

The node side lives in :mod:`._service` and is reached through :class:`synapse_p2p.Node`
(``broadcast``, ``emit_conversation_event``, ``sync_conversation``, ...).
"""

from __future__ import annotations

from ._broadcasts import BroadcastStatus
from ._ids import new_nonce, random_id, reply_event_id
from ._log import (
    BaseConversationLog,
    ConversationLog,
    ConversationLogClosed,
    ConversationLogError,
    ConversationLogStatistics,
    UnknownCursorError,
)
from ._memory import MemoryConversationLog
from ._sqlite import SqliteConversationLog
from ._summary import SUMMARY_KIND, Summarizer, default_summarizer

__all__ = [
    "SUMMARY_KIND",
    "BaseConversationLog",
    "BroadcastStatus",
    "ConversationLog",
    "ConversationLogClosed",
    "ConversationLogError",
    "ConversationLogStatistics",
    "MemoryConversationLog",
    "SqliteConversationLog",
    "Summarizer",
    "UnknownCursorError",
    "default_summarizer",
    "new_nonce",
    "random_id",
    "reply_event_id",
]
