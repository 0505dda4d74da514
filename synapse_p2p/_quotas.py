"""Per-caller quotas (sans-IO: the caller passes ``now``).

* :class:`RateQuota`: a token bucket per key (``rate`` per second, up to ``burst``), for
  "events per second" and "new conversations per minute" per verified identity.
* :class:`CountQuota`: at most ``limit`` things held at once per key, for "deferred asks".

Keys are verified node ids, or ``"ip:<address>"`` for unverified (plaintext) callers. Both
keep at most ``max_keys`` keys: the least recently used is forgotten first (a forgotten key
starts again with a full bucket; a :class:`CountQuota` never forgets a key that holds
something, so its bound is ``max_keys`` keys holding something, then it refuses new keys).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["CountQuota", "Quotas", "RateQuota", "caller_key"]


@dataclass(frozen=True, slots=True)
class Quotas:
    """What one caller (a verified node id, or an IP address for plaintext callers) may ask of
    a node; past a quota the caller gets ``overloaded`` and nothing is stored or run.

    * ``events_per_second`` (sustained) and ``event_burst``: conversation events delivered;
    * ``new_conversations_per_second`` and ``new_conversation_burst``: events that start a
      conversation this node does not hold yet (broadcasts included);
    * ``deferred_asks``: ask handlers running or waiting for this caller's broadcasts.

    Connections are capped too (``max_connections_per_peer`` of the RPC server). The defaults
    are far above what an honest node sends and keep one flooding member from filling the
    node's queues; ``Node(quotas=Quotas(...))`` changes them.
    """

    events_per_second: float = 500.0
    event_burst: int = 2000
    new_conversations_per_second: float = 50.0
    new_conversation_burst: int = 500
    deferred_asks: int = 32

    def __post_init__(self) -> None:
        for name in ("events_per_second", "new_conversations_per_second"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("event_burst", "new_conversation_burst", "deferred_asks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


def caller_key(node_id: str | None, ip: str) -> str:
    """What quotas count a caller under: its verified node id, else its IP address."""
    return node_id if node_id is not None else f"ip:{ip}"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateQuota:
    """A token bucket per key: ``allow(key, now)`` takes one token if there is one."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 4096) -> None:
        if not rate > 0 or not burst >= 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.refused = 0

    def allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = now - bucket.stamp
            if elapsed > 0:
                bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
                bucket.stamp = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return True
        self.refused += 1
        return False


class CountQuota:
    """At most ``limit`` held at once per key: ``acquire`` / ``release``."""

    def __init__(self, limit: int, *, max_keys: int = 4096) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.max_keys = max_keys
        self._held: dict[str, int] = {}
        self.refused = 0

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def acquire(self, key: str) -> bool:
        held = self._held.get(key, 0)
        if held >= self.limit or (not held and len(self._held) >= self.max_keys):
            self.refused += 1
            return False
        self._held[key] = held + 1
        return True

    def release(self, key: str) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)
