"""Small helpers shared by the dashboard's models."""

from __future__ import annotations

import json
import math
from typing import Any

from ..types import ConversationEvent

__all__ = ["TEXT_LIMIT", "clip", "wall_time"]

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
