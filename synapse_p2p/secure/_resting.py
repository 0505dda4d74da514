"""Idle secure connections let go of their cipher contexts: the sweep of a thread's record
layers (it reads a clock; the layers themselves do not, see ``RecordLayer.watch``)."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

from ._records import RecordLayer

__all__ = ["REST_AFTER", "look"]

#: A record layer that carried no record between two sweeps, which come at most this often
#: (seconds), lets go of its AEAD objects (:meth:`RecordLayer.rest`).
REST_AFTER = 2.0
_clock: Callable[[], float] = time.monotonic


class _Awake(threading.local):
    """This thread's record layers that may hold AEAD objects, and when to sweep them next
    (a thread's event loop sweeps only its own layers)."""

    def __init__(self) -> None:
        self.layers: weakref.WeakSet[RecordLayer] = weakref.WeakSet()
        self.sweep_at = 0.0


_awake = _Awake()


def look(layer: RecordLayer) -> None:
    """The watch of a secure stream's record layer (told as ``RecordLayer`` says): keep it
    among this thread's layers, and if a sweep is due, rest every layer that carried no
    record since the last one."""
    awake = _awake
    awake.layers.add(layer)
    now = _clock()
    if now < awake.sweep_at:
        return
    awake.sweep_at = now + REST_AFTER
    for other in list(awake.layers):
        if not other.take_used():
            other.rest()
            awake.layers.discard(other)
