"""Helpers for the teams tests: events by hand, and the wall clock on virtual time."""

from __future__ import annotations

import itertools
from typing import Any

import anyio

from synapse_p2p.types import ConversationEvent, Peer

_ids = itertools.count(1)
BASE = 1_800_000_000.0


def wall() -> float:
    """Epoch seconds that follow anyio's clock (virtual under trio's MockClock)."""
    return BASE + anyio.current_time()


def peer(name: str, capabilities: list[str] | None = None) -> Peer:
    return Peer(id=name, address="10.0.0.1", port=7000, name=name, capabilities=capabilities or [])


def event(
    kind: str,
    task_id: str,
    author: Peer | str,
    parent_id: str | None = None,
    t: float = 0.0,
    event_id: str | None = None,
    **payload: Any,
) -> ConversationEvent:
    who = peer(author) if isinstance(author, str) else author
    return ConversationEvent(
        conversation_id=task_id,
        event_id=event_id or f"e{next(_ids)}",
        kind=kind,
        peer=who,
        payload={"task_id": task_id, **payload},
        parent_id=parent_id,
        created_at=t,
    )
