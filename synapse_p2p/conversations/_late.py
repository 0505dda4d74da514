"""Broadcasts for members that come back: sans-IO bookkeeping.

A broadcast goes to the members alive when it is sent. A member that was marked offline a
moment before (a missed heartbeat under load, a short network hiccup) would never get it,
though it is back a second later. So a node remembers which members went offline recently
(:data:`LATE_WINDOW` seconds) and, for each of its own broadcasts sent while some of them were
away, the call to make; a member that comes back within :data:`LATE_WINDOW` of the broadcast
gets the call then, once. So does a member whose call could not be delivered and that went
offline while it was being retried (:meth:`LateMembers.hold`). Members that left (a goodbye)
are forgotten: they get nothing.

Bounded: at most :data:`MAX_AWAY` members remembered and :data:`MAX_HELD` broadcasts held
(the oldest dropped first); a held call is dropped once its window is over.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LATE_WINDOW", "LateCall", "LateMembers"]

#: Seconds: a member offline for at most this long before a broadcast, and back within this
#: long after it, still gets the broadcast.
LATE_WINDOW = 60.0
MAX_AWAY = 4096
MAX_HELD = 64


@dataclass(frozen=True, slots=True)
class LateCall:
    """The broadcast call to make to a member that comes back."""

    nonce: str
    endpoint: str
    args: list[Any]
    kwargs: dict[str, Any]


@dataclass(slots=True)
class _Held:
    call: LateCall
    sent_at: float
    waiting: set[str] = field(default_factory=set)


class LateMembers:
    """Members away and broadcasts waiting for them; see the module documentation."""

    def __init__(self, window: float = LATE_WINDOW) -> None:
        self.window = window
        self._away: OrderedDict[str, float] = OrderedDict()  # member id -> when it went offline
        self._held: OrderedDict[str, _Held] = OrderedDict()  # nonce -> call and who it waits on

    def went_offline(self, node_id: str, now: float) -> None:
        self._away.pop(node_id, None)
        self._away[node_id] = now
        while len(self._away) > MAX_AWAY:
            self._away.popitem(last=False)

    def left(self, node_id: str) -> None:
        """A member said goodbye: it gets no late call."""
        self._away.pop(node_id, None)
        for held in self._held.values():
            held.waiting.discard(node_id)

    def sent(self, call: LateCall, alive: Any, now: float) -> int:
        """A broadcast went to the members in ``alive`` (a container of ids): hold ``call``
        for those away for at most the window. Returns how many it waits on."""
        self._expire(now)
        waiting = {m for m, at in self._away.items() if now - at <= self.window and m not in alive}
        if waiting:
            self._add(call, now, waiting)
        return len(waiting)

    def hold(self, call: LateCall, node_id: str, now: float) -> None:
        """Hold ``call`` for member ``node_id``, gone while its call was being made (it could
        not be delivered, and the member went offline meanwhile): it gets the call if it
        comes back within the window, as members away when the broadcast was sent do."""
        self._expire(now)
        self._add(call, now, {node_id})

    def _add(self, call: LateCall, now: float, waiting: set[str]) -> None:
        """``call`` waits on ``waiting`` too (held from ``now`` if it was not held yet)."""
        held = self._held.get(call.nonce)
        if held is not None:
            held.waiting |= waiting
            return
        self._held[call.nonce] = _Held(call, now, waiting)
        while len(self._held) > MAX_HELD:
            self._held.popitem(last=False)

    def came_back(self, node_id: str, now: float) -> list[LateCall]:
        """``node_id`` is alive again: the calls it missed (each given once)."""
        self._away.pop(node_id, None)
        self._expire(now)
        due = []
        for held in self._held.values():
            if node_id in held.waiting:
                held.waiting.discard(node_id)
                due.append(held.call)
        return due

    def _expire(self, now: float) -> None:
        for nonce in [n for n, h in self._held.items()
                      if not h.waiting or now - h.sent_at > self.window]:  # fmt: skip
            del self._held[nonce]

    def __len__(self) -> int:
        """Broadcasts held for members away."""
        return len(self._held)
