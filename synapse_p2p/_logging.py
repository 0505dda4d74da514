"""Logging helpers: failures of user code, rate-limited; console logging for scripts.

The library itself stays silent when embedded (a ``NullHandler`` on ``synapse_p2p``).
:func:`configure_console_logging` is what ``node.run()`` and the ``sn`` command do, the way
uvicorn and hypercorn do: show the library's records on stderr unless the application has
configured logging already.
"""

from __future__ import annotations

import logging
import math
import sys
import time

import anyio

__all__ = ["FAILURE_LOG_INTERVAL", "FailureLog", "configure_console_logging"]

#: A failing handler's traceback is logged at most this often (seconds) per handler.
FAILURE_LOG_INTERVAL = 10.0

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class FailureLog:
    """Logs exceptions raised by user code (endpoints, ask handlers, periodic jobs, ``@node.on``
    handlers, worker tasks) at ERROR with the traceback, on the node where they happened: at
    most once per :data:`FAILURE_LOG_INTERVAL` seconds per handler; the failures in between
    are counted and the count is logged with the next report."""

    def __init__(self, logger: logging.Logger, interval: float = FAILURE_LOG_INTERVAL) -> None:
        self.logger = logger
        self.interval = interval
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (last logged, suppressed)

    def report(self, key: str, what: str, exc: BaseException) -> bool:
        """Log ``what`` (e.g. ``"endpoint 'sum' raised"``) with ``exc``; False if it was only
        counted (rate limit)."""
        now = _now()
        last, suppressed = self._seen.get(key, (-math.inf, 0))
        if last <= now < last + self.interval:  # (another event loop's clock: report)
            self._seen[key] = (last, suppressed + 1)
            return False
        if len(self._seen) > 4096:  # keys are handler names; bound them anyway
            self._seen.clear()
        self._seen[key] = (now, 0)
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        self.logger.error("%s %s: %s%s", what, type(exc).__name__, exc, more, exc_info=exc)
        return True


def _now() -> float:
    """The event loop's clock when there is one (virtual time in tests), else monotonic."""
    try:
        return anyio.current_time()
    except Exception:
        return time.monotonic()


def _configured() -> bool:
    package = logging.getLogger("synapse_p2p")
    if any(not isinstance(h, logging.NullHandler) for h in package.handlers):
        return True
    return bool(logging.getLogger().handlers)


def configure_console_logging(level: int = logging.INFO) -> bool:
    """Send the library's records at ``level`` and above to stderr, unless the application
    configured logging already (a handler on the root logger or on ``synapse_p2p``). Returns
    whether it did."""
    if _configured():
        return False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    package = logging.getLogger("synapse_p2p")
    package.addHandler(handler)
    package.setLevel(level)
    return True
