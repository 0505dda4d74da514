"""Bounded maps of recently used keys, on plain dicts.

An ``OrderedDict`` costs about 70 bytes an entry against 25 for a dict, and the maps a node
keeps per member (ids it saw verified, addresses that proved an id, signatures found good)
hold one entry for every member. A dict keeps insertion order too: a key used again is taken
out and put back at the end (it is then the newest), and a full map forgets its oldest
eighth at once, so that a stream of new keys costs one pass over the holes at the dict's
front per eighth, not one per key. A full map keeps between seven eighths of ``limit`` and
``limit`` keys.

Taking a key out and putting it back leaves a hole; a dict whose entries are all holes and
keys grows its table to three times the keys it holds (about 75 bytes a key). Keys used
again are therefore moved only while the map is more than half full, when forgetting comes
near: the oldest keys are then those not used since the map passed half its limit, in the
order they came (the least recently used, to within that).

Each step is one dict operation, or a pass that runs without releasing the GIL, so threads
may share a map (a key another thread removed meanwhile is simply gone).
"""

from __future__ import annotations

import itertools
from typing import TypeVar

__all__ = ["put_newest", "touch"]

K = TypeVar("K")
V = TypeVar("V")


def put_newest(mapping: dict[K, V], key: K, value: V, limit: int) -> None:
    """Map ``key`` to ``value`` as the newest key (a key held moves only while the map is
    more than half of ``limit`` full), first forgetting the oldest eighth of ``limit`` keys
    if ``key`` is new and the map holds ``limit`` already."""
    if len(mapping) <= limit // 2:
        mapping[key] = value  # (a key held stays where it is: see the module documentation)
        return
    if mapping.pop(key, _ABSENT) is _ABSENT and len(mapping) >= limit:
        for old in list(itertools.islice(mapping, max(1, limit // 8))):
            mapping.pop(old, None)
    mapping[key] = value


def touch(mapping: dict[K, V], key: K, limit: int) -> V | None:
    """The value of ``key`` (now the newest key, if the map is more than half of ``limit``
    full), or ``None`` if it is not held."""
    if len(mapping) <= limit // 2:
        return mapping.get(key)
    value = mapping.pop(key, _ABSENT)
    if value is _ABSENT:
        return None
    mapping[key] = value  # type: ignore[assignment]
    return value  # type: ignore[return-value]


_ABSENT: object = object()
