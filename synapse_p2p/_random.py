"""The process's one unseeded random generator, for the services that take no seed.

A ``random.Random`` holds 2.5 KiB of state; services that only need unpredictable choices
(which member to ask, a jitter) share this one instead of each building their own, so many
nodes in one process do not each carry several. Reseeded in a forked child (as the
``random`` module's own generator is), so parent and child do not make the same choices.
Code that needs reproducible choices (the sans-IO cores, the simulator) keeps a seeded
generator of its own.
"""

from __future__ import annotations

import os
import random

__all__ = ["SHARED"]

SHARED = random.Random()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=SHARED.seed)
