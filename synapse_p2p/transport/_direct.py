"""Trying a peer's advertised address itself before another way to it.

Two ways of reaching a node stand in for its advertised address when that address cannot be
connected to: an alias (a seed reached at another address, ``rpc/_aliases.py``) and a relay
route learned from its signed record (``relay/_dial.py``). Either way the address itself is
tried first, because a record proves who signed it, not who answers there: a node answering
at the address directly wins. :class:`DirectFirst` runs that attempt and remembers failures.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

__all__ = ["DIRECT_BUDGET", "DIRECT_RETRY", "DirectFirst"]

T = TypeVar("T")
Address = tuple[str, int]

#: How long the address itself is tried before the other way.
DIRECT_BUDGET = 1.5
#: After a failed direct attempt, how long the address goes straight to the other way.
DIRECT_RETRY = 60.0


class DirectFirst:
    """Direct attempts and the addresses whose last one failed (at most ``limit``, the
    oldest forgotten first)."""

    def __init__(self, *, budget: float = DIRECT_BUDGET, retry: float = DIRECT_RETRY,
                 limit: int = 4096) -> None:  # fmt: skip
        self.budget = budget
        self.retry = retry
        self.limit = limit
        self._failed: OrderedDict[Address, float] = OrderedDict()  # address -> until when

    async def attempt(self, address: Address, connect: Callable[[], Awaitable[T]]) -> T | None:
        """``await connect()`` (the direct dial) within ``budget`` seconds, unless an attempt
        at ``address`` failed in the last ``retry`` seconds; ``None`` if it was skipped or
        failed in any way (refused, silent, not synapse-p2p: the other way is then taken).
        Cancellation counts as a failure too, and propagates."""
        now = anyio.current_time()
        until = self._failed.get(address)
        if until is not None:
            if now < until:
                return None
            del self._failed[address]
        try:
            with anyio.fail_after(self.budget):
                return await connect()
        except Exception:
            self._fail(address, now)
            return None
        except BaseException:
            self._fail(address, now)
            raise

    def forget(self, address: Address) -> None:
        """Try ``address`` directly again on the next dial."""
        self._failed.pop(address, None)

    def _fail(self, address: Address, now: float) -> None:
        self._failed[address] = now + self.retry
        self._failed.move_to_end(address)
        while len(self._failed) > self.limit:
            self._failed.popitem(last=False)
