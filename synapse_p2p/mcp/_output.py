"""Bounded, JSON-safe output for tool results: what peers send is never passed on unbounded."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from ..types import ConversationEvent, Peer

__all__ = ["MAX_TEXT", "clip", "event_view", "json_text", "peer_view"]

#: The longest text a tool returns (characters).
MAX_TEXT = 60_000
#: Longest string, most items and deepest nesting kept inside a value shown to the client.
MAX_STRING = 8_000
MAX_ITEMS = 200
MAX_DEPTH = 12


def clip(
    value: Any,
    *,
    max_string: int = MAX_STRING,
    max_items: int = MAX_ITEMS,
    depth: int = MAX_DEPTH,
) -> Any:
    """``value`` as JSON-compatible data, with long strings, long lists and maps, and deep
    nesting cut (marked with ``…``). Bytes become ``{"$bytes": base64}``."""
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        encoded = base64.b64encode(raw[: max_string * 3 // 4]).decode("ascii")
        return {"$bytes": encoded, "size": len(raw)}
    if isinstance(value, str):
        text = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        if len(text) > max_string:
            return f"{text[:max_string]}… ({len(text) - max_string} more characters)"
        return text
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth <= 0:
        return "…"
    kw = {"max_string": max_string, "max_items": max_items, "depth": depth - 1}
    if isinstance(value, dict):
        items = list(value.items())
        out = {str(k): clip(v, **kw) for k, v in items[:max_items]}
        if len(items) > max_items:
            out["…"] = f"{len(items) - max_items} more keys"
        return out
    if isinstance(value, list | tuple | set | frozenset):
        seq = list(value)
        kept = [clip(v, **kw) for v in seq[:max_items]]
        if len(seq) > max_items:
            kept.append(f"… {len(seq) - max_items} more items")
        return kept
    return clip(str(value), **kw)


def json_text(value: Any) -> str:
    """Indented JSON, cut at :data:`MAX_TEXT` characters (the cut is said)."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    if len(text) > MAX_TEXT:
        text = f"{text[:MAX_TEXT]}\n… (output cut at {MAX_TEXT} characters)"
    return text


def peer_view(peer: Peer) -> dict[str, Any]:
    return {
        "id": peer.id,
        "name": clip(peer.name, max_string=256),
        "address": peer.address,
        "port": peer.port,
        "kind": peer.kind.value if hasattr(peer.kind, "value") else str(peer.kind),
        "capabilities": clip(list(peer.capabilities), max_string=256, max_items=64),
        "last_seen": peer.last_seen,
    }


def event_view(event: ConversationEvent, *, max_string: int = 2_000) -> dict[str, Any]:
    """One conversation event as a client reads it (payload cut to a readable size)."""
    data: dict[str, Any] = {
        "event_id": event.event_id,
        "kind": event.kind,
        "from": {"id": event.peer.id, "name": clip(event.peer.name, max_string=256)},
        "created_at": event.created_at,
        "payload": clip(event.payload, max_string=max_string, max_items=50, depth=6),
    }
    if event.parent_id:
        data["parent_id"] = event.parent_id
    if event.metadata:
        data["metadata"] = clip(event.metadata, max_string=500, max_items=20, depth=4)
    return data
