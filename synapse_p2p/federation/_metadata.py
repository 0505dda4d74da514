"""Agent metadata and discovery filters (plain data, no I/O, no clock)."""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AgentMetadata", "Filters", "Labels", "normalise_labels"]

#: What ``tools=`` / ``tags=`` accept: ``None`` (no filter), one name, or an iterable of names.
Labels = Iterable[str] | str | None


def _text(value: object, name: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TypeError(f"Agent {name} must be a string, not {type(value).__name__}.")
    if not value:
        raise ValueError(f"Agent {name} must be a non-empty string.")
    return value


def _names(value: object, name: str) -> list[str]:
    """A list of unique non-empty names; ``None`` -> ``[]``; a bare string -> ``[string]``."""
    if value is None:
        return []
    items: Iterable[object]
    if isinstance(value, str):
        items = (value,)
    elif isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        items = value
    else:
        raise TypeError(f"{name} must be a string or an iterable of strings.")
    seen: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{name} must contain strings, not {type(item).__name__}.")
        if not item:
            raise ValueError(f"{name} must not contain empty names.")
        seen[item] = None
    return list(seen)


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or value is None:
        raise TypeError(f"Agent {name} must be a number, not {type(value).__name__}.")
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"Agent {name} must be a number, not {value!r}.") from None
    else:
        raise TypeError(f"Agent {name} must be a number, not {type(value).__name__}.")
    if not math.isfinite(number):
        raise ValueError(f"Agent {name} must be a finite number, not {number}.")
    return number


@dataclass(slots=True)
class AgentMetadata:
    """Describes a registered agent.

    Validation on construction: ``id`` and ``model`` must be non-empty strings; ``tools`` and
    ``tags`` take ``None``, one name or an iterable of names (duplicates are dropped, order is
    kept); ``capacity`` is a non-negative integer (numbers and numeric strings are truncated
    with ``int()``, as in synapsekit); ``cost_multiplier`` a finite non-negative number;
    ``last_heartbeat`` ``None`` or a finite Unix time. A wrong type raises :class:`TypeError`,
    a bad value (NaN, infinity, negative, empty) :class:`ValueError`; both messages name the
    field. Assigning attributes later is not checked; registries re-validate on ``register``.

    ``capacity`` is the agent's concurrency limit: :class:`AgentFederation` never has more
    than ``capacity`` calls in flight on it, and never routes to an agent with capacity 0.
    """

    id: str
    model: str
    tools: list[str] = field(default_factory=list)
    capacity: int = 1
    cost_multiplier: float = 1.0
    tags: list[str] = field(default_factory=list)
    endpoint: str | None = None
    last_heartbeat: float | None = None

    def __post_init__(self) -> None:
        self.id = _text(self.id, "id")  # type: ignore[assignment]
        self.model = _text(self.model, "model")  # type: ignore[assignment]
        self.tools = _names(self.tools, "tools")
        self.tags = _names(self.tags, "tags")
        capacity = _number(self.capacity, "capacity")
        if capacity < 0:
            raise ValueError("Agent capacity must be greater than or equal to zero.")
        self.capacity = int(capacity)
        cost = _number(self.cost_multiplier, "cost_multiplier")
        if cost < 0:
            raise ValueError("Agent cost_multiplier must be greater than or equal to zero.")
        self.cost_multiplier = cost
        self.endpoint = _text(self.endpoint, "endpoint", optional=True)
        if self.last_heartbeat is not None:
            self.last_heartbeat = _number(self.last_heartbeat, "last_heartbeat")

    def to_dict(self) -> dict[str, Any]:
        """A plain dict with exactly the eight fields (lists are copies)."""
        return {
            "id": self.id,
            "model": self.model,
            "tools": list(self.tools),
            "capacity": self.capacity,
            "cost_multiplier": self.cost_multiplier,
            "tags": list(self.tags),
            "endpoint": self.endpoint,
            "last_heartbeat": self.last_heartbeat,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentMetadata:
        """Build from a mapping: ``id`` and ``model`` are required (:class:`KeyError`
        otherwise), other keys default as in the constructor, unknown keys are ignored."""
        return cls(
            id=data["id"],
            model=data["model"],
            tools=data.get("tools"),  # type: ignore[arg-type]
            capacity=data.get("capacity", 1),
            cost_multiplier=data.get("cost_multiplier", 1.0),
            tags=data.get("tags"),  # type: ignore[arg-type]
            endpoint=data.get("endpoint"),
            last_heartbeat=data.get("last_heartbeat"),
        )

    def copy(self) -> AgentMetadata:
        """An independent copy (the lists are copied; values are not re-validated)."""
        new = object.__new__(AgentMetadata)
        new.id = self.id
        new.model = self.model
        new.tools = list(self.tools)
        new.capacity = self.capacity
        new.cost_multiplier = self.cost_multiplier
        new.tags = list(self.tags)
        new.endpoint = self.endpoint
        new.last_heartbeat = self.last_heartbeat
        return new

    def validated(self) -> AgentMetadata:
        """A validated copy (re-runs every check; used by registries on ``register``)."""
        return AgentMetadata(
            self.id,
            self.model,
            list(self.tools) if isinstance(self.tools, list) else self.tools,
            self.capacity,
            self.cost_multiplier,
            list(self.tags) if isinstance(self.tags, list) else self.tags,
            self.endpoint,
            self.last_heartbeat,
        )

    def is_healthy(self, stale_timeout: float, now: float | None = None) -> bool:
        """True when the last heartbeat is at most ``stale_timeout`` seconds old (inclusive).

        No heartbeat means unhealthy; a heartbeat in the future counts as healthy until it is
        ``stale_timeout`` seconds in the past.
        """
        if self.last_heartbeat is None:
            return False
        current = time.time() if now is None else now
        return current - self.last_heartbeat <= stale_timeout


def normalise_labels(value: Labels, name: str) -> frozenset[str] | None:
    """Turn a ``tools=``/``tags=`` filter into a set; ``None`` or empty means no filter."""
    names = _names(value, name)
    return frozenset(names) if names else None


def check_time(value: object, name: str = "timestamp") -> float:
    """Validate a finite Unix time."""
    return _number(value, name)


def check_timeout(value: object, name: str) -> float:
    """Validate a non-negative, non-NaN number of seconds (infinity allowed)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}.")
    number = float(value)
    if math.isnan(number) or number < 0:
        raise ValueError(f"{name} must be a non-negative number of seconds, not {number}.")
    return number


@dataclass(frozen=True, slots=True)
class Filters:
    """Normalised discovery filters: all-of ``tools``, all-of ``tags``, inclusive
    ``min_capacity``, and ``healthy_only``. Hashable, so it keys caches and rotations."""

    tools: frozenset[str] | None = None
    tags: frozenset[str] | None = None
    min_capacity: float | None = None
    healthy_only: bool = True

    @classmethod
    def make(
        cls,
        tools: Labels = None,
        tags: Labels = None,
        min_capacity: float | None = None,
        healthy_only: bool = True,
    ) -> Filters:
        bound: object = min_capacity
        if bound is not None:
            if isinstance(bound, bool) or not isinstance(bound, numbers.Real):
                raise TypeError("min_capacity must be a number or None.")
            if math.isnan(bound):
                raise ValueError("min_capacity must not be NaN.")
        return cls(
            normalise_labels(tools, "tools"),
            normalise_labels(tags, "tags"),
            min_capacity,
            bool(healthy_only),
        )

    def matches_static(self, tools: frozenset[str], tags: frozenset[str], capacity: int) -> bool:
        """Everything but health: tools and tags are subsets, capacity is large enough."""
        if self.tools is not None and not self.tools <= tools:
            return False
        if self.tags is not None and not self.tags <= tags:
            return False
        return self.min_capacity is None or capacity >= self.min_capacity

    def matches(self, agent: AgentMetadata, stale_timeout: float, now: float) -> bool:
        """Whether ``agent`` passes every filter at time ``now``."""
        if not self.matches_static(frozenset(agent.tools), frozenset(agent.tags), agent.capacity):
            return False
        return not self.healthy_only or agent.is_healthy(stale_timeout, now)

    def key(self) -> str:
        """A canonical string for this filter set (the same in every process)."""
        tools = ",".join(sorted(self.tools)) if self.tools else ""
        tags = ",".join(sorted(self.tags)) if self.tags else ""
        return f"tools={tools};tags={tags};min={self.min_capacity};healthy={self.healthy_only}"
