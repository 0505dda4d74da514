"""Text helpers of the dashboard's models: clipping, times, and one timeline row per event."""

from __future__ import annotations

import json
import math
from typing import Any

from ..types import ConversationEvent, Peer

__all__ = ["TEXT_LIMIT", "clip", "describe_event", "wall_time", "who"]

#: Longest text kept from any payload field (the page clips further).
TEXT_LIMIT = 300


def clip(value: Any, limit: int = TEXT_LIMIT) -> str:
    """``value`` as one line of at most ``limit`` characters (JSON unless it is a string)."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=repr, separators=(", ", ": "))
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def wall_time(event: ConversationEvent) -> float:
    at = event.created_at
    return float(at) if isinstance(at, int | float) and math.isfinite(at) else 0.0


def who(peer: Peer) -> str:
    """A peer's name, or the start of its id."""
    return peer.name or peer.id[:8]


def describe_event(event: ConversationEvent) -> dict[str, Any]:
    """One timeline row: ``kind`` is the event's own; ``label`` groups it for colour
    (ask, message, ack, reply, error, task, summary, event); ``text`` is short and plain."""
    payload, kind = event.payload, event.kind
    label, text = "event", ""
    if kind == "message":
        endpoint = str(payload.get("endpoint", "?"))
        args = payload.get("args")
        first = args[0] if isinstance(args, list) and args else ""
        label = "ask" if endpoint == "synapse.ask" else "message"
        text = clip(first) if label == "ask" else f"{clip(endpoint, 80)}: {clip(args)}"
    elif kind in ("ack", "reply", "error", "summary"):
        label = kind
        key = {"ack": "", "reply": "result", "error": "error", "summary": "summary"}[kind]
        text = clip(payload.get(key)) if key else "acknowledged"
    elif kind.startswith("task."):
        label = "task"
        for key in ("title", "message", "error", "reason", "worker_name", "result"):
            if key in payload:
                text = clip(payload[key])
                break
    else:
        text = clip(payload)
    return {
        "id": event.event_id,
        "cid": event.conversation_id,
        "kind": clip(kind, 60),
        "label": label,
        "peer": event.peer.id,
        "who": clip(who(event.peer), 60),
        "at": wall_time(event),
        "parent": event.parent_id,
        "text": text,
    }
