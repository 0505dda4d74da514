"""Agent cards of swarm peers, parsed leniently (sans-IO): the routing fields a peer's
``agent-card`` artifact offers (``model``, ``tools``, ``tags``/``capabilities``,
``capacity``, ``cost``/``cost_multiplier``). An invalid field gets its default and is logged
at debug level; the card is never rejected as a whole unless it is not a JSON object.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

__all__ = ["MAX_NAMES", "MAX_NAME_LENGTH", "AgentCard", "valid_name"]

logger = logging.getLogger(__name__)

MAX_NAMES = 256
MAX_NAME_LENGTH = 256


def valid_name(value: object) -> TypeGuard[str]:
    """A name a card may hold: a non-empty string of at most MAX_NAME_LENGTH characters."""
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH


def _names(value: object, key: str, source: str, *, named: bool = False) -> tuple[str, ...]:
    items = [] if value is None else [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        logger.debug("agent card of %s: %r is not a list of names; ignored", source, key)
        return ()
    names: dict[str, None] = {}
    for item in items:
        name = item.get("name") if named and isinstance(item, Mapping) else item
        if valid_name(name) and len(names) < MAX_NAMES:
            names[name] = None
        else:
            logger.debug("agent card of %s: %r item %.80r dropped", source, key, item)
    return tuple(names)


def _number(content: Mapping[Any, Any], key: str, source: str, *, integral: bool) -> float:
    value = content.get(key, 1)
    if not isinstance(value, bool) and isinstance(value, numbers.Real):
        number = float(value)
        if math.isfinite(number) and number >= 0 and (number.is_integer() or not integral):
            return number
    logger.debug("agent card of %s: invalid %r %.80r ignored", source, key, value)
    return 1.0


@dataclass(frozen=True, slots=True)
class AgentCard:
    """The routing fields of a peer's agent card (the schema is in the module docs)."""

    model: str | None = None
    tools: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    capacity: int = 1
    cost_multiplier: float = 1.0

    @classmethod
    def parse(cls, content: object, *, source: str = "?") -> AgentCard | None:
        """Read a card leniently; ``None`` if it is not a JSON object. Never raises."""
        if isinstance(content, str):
            try:
                content = json.loads(content)
            except ValueError:
                content = None
        if not isinstance(content, Mapping):
            logger.debug("agent card of %s is not a JSON object; ignored", source)
            return None
        model = content.get("model")
        if model is not None and not valid_name(model):
            logger.debug("agent card of %s: invalid 'model' %.80r ignored", source, model)
            model = None
        tags = _names(content.get("tags"), "tags", source)
        tags += _names(content.get("capabilities"), "capabilities", source, named=True)
        cost = "cost_multiplier" if "cost_multiplier" in content else "cost"
        return cls(
            model=model,
            tools=_names(content.get("tools"), "tools", source),
            tags=tuple(dict.fromkeys(tags))[:MAX_NAMES],
            capacity=int(_number(content, "capacity", source, integral=True)),
            cost_multiplier=_number(content, cost, source, integral=False),
        )
