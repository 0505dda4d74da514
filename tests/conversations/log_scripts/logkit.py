"""Shared helpers of the conversation log tests: events, and a log of either backend."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from synapse_p2p.conversations import (
    ConversationLog,
    MemoryConversationLog,
    SqliteConversationLog,
)
from synapse_p2p.types import ConversationEvent, Peer

BACKENDS = ["memory", "sqlite"]
PEER = Peer(id="a" * 64, address="127.0.0.1", port=9999, name="alice", capabilities=["x"])
_counter = itertools.count()


def make_event(
    created_at: float,
    event_id: str | None = None,
    *,
    cid: str = "c1",
    kind: str = "message",
    payload: dict[str, Any] | None = None,
    peer: Peer = PEER,
) -> ConversationEvent:
    return ConversationEvent(
        conversation_id=cid,
        event_id=event_id if event_id is not None else f"ev-{next(_counter):08d}",
        kind=kind,
        peer=peer,
        payload={"n": 1} if payload is None else payload,
        parent_id=None,
        created_at=created_at,
        metadata={},
    )


def open_log(backend: str, path: Path, **options: Any) -> ConversationLog:
    """A fresh log; SQLite keeps ``synchronous=FULL`` unless told otherwise."""
    if backend == "memory":
        return MemoryConversationLog()
    return SqliteConversationLog(path / "log.db", **options)


def ids(events: list[ConversationEvent]) -> list[str]:
    return [event.event_id for event in events]


def expected_order(events: list[ConversationEvent]) -> list[str]:
    """The documented order: ``(created_at, event_id)`` ascending."""
    return [e.event_id for e in sorted(events, key=lambda e: (float(e.created_at), e.event_id))]
