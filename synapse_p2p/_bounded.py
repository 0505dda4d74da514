"""Bounded maps of recently used keys, on plain dicts.

An ``OrderedDict`` costs about 70 bytes an entry against 25 for a dict, and the maps a node
keeps per member (ids it saw verified, addresses that proved an id, signatures found good)
hold one entry for every member. A dict keeps insertion order too: a key used again is taken
out and put back at the end (it is then the newest), and a map past its limit forgets its
oldest eighth at once, so that a stream of new keys costs one pass per eighth, not one per
key. A full map keeps between seven eighths of ``limit`` and ``limit`` keys.

Taking a key out and putting it back leaves a hole; a dict whose entries are all holes and
keys grows its table to three times the keys it holds (about 75 bytes a key). Keys used
again are therefore moved only once the map holds more than an eighth of its limit, which
the maps of a swarm of a few hundred stay under (the limits are 4,096 and more: an eighth
is 512 and more). Either way a key is forgotten only after at least seven eighths of the
limit in new keys since it was last used (in exact least-recently-used order: the limit).

Threads may share a map: each step is one dict operation, or one C call that copies the
keys (a thread switch cannot change the dict in the middle of a pass); a key another
thread removed meanwhile is simply gone, and a map other threads grew meanwhile is trimmed
by the next insert.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["put_newest", "touch"]

K = TypeVar("K")
V = TypeVar("V")


def put_newest(mapping: dict[K, V], key: K, value: V, limit: int) -> None:
    """Map ``key`` to ``value`` as the newest key (a key held moves only once the map holds
    more than an eighth of ``limit``), then, past ``limit`` keys, forget the oldest eighth of
    ``limit`` at once."""
    if len(mapping) > limit // 8:
        mapping.pop(key, None)
    mapping[key] = value
    _trim(mapping, limit)


def touch(mapping: dict[K, V], key: K, limit: int) -> V | None:
    """The value of ``key`` (now the newest key, if the map holds more than an eighth of
    ``limit``), or ``None`` if it is not held."""
    if len(mapping) <= limit // 8:
        return mapping.get(key)
    value = mapping.pop(key, _ABSENT)
    if value is _ABSENT:
        return None
    mapping[key] = value  # type: ignore[assignment]
    _trim(mapping, limit)  # (another thread may have added keys meanwhile)
    return value  # type: ignore[return-value]


def _trim(mapping: dict[K, V], limit: int) -> None:
    """Past ``limit`` keys, forget the oldest eighth of ``limit`` at once (again while other
    threads keep adding)."""
    while len(mapping) > limit:
        for old in list(mapping)[: max(1, limit // 8)]:  # (one C call: see the module doc)
            mapping.pop(old, None)


_ABSENT: object = object()
