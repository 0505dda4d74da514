"""Running a request handler inline in the reading task: a deliberate break with trio's habits.

The usual structured-concurrency shape gives each request its own task. On this server most
handlers finish without ever waiting (a ping, a lookup, storing an event in memory), and a
task per request costs a spawn and at least one switch: on the RPC benchmark that was most of
the per-call overhead. :func:`run_inline` instead drives the handler's coroutine *in the
task that read the request*, by hand (``coro.send``), and calls back just before the
coroutine first yields to the event loop. The server uses that moment to pass the reading
role to another worker (see ``_ConnState`` in :mod:`._server`), so a handler that does wait
never holds up the connection.

What keeps it honest:

* values, exceptions and cancellation pass through unchanged: awaiting ``run_inline(coro,
  ...)`` behaves as awaiting ``coro`` (the trampoline re-throws what the event loop throws
  in, and closes the coroutine on ``GeneratorExit``);
* a handler that never waits gives the event loop no schedule point, so a worker answering a
  stream of pipelined requests inline checkpoints every ``INLINE_STREAK`` requests
  (:mod:`._server`); a test floods 3,000 requests and measures that the loop keeps turning.

The measured effect is in ``docs/architecture.md`` (``benchmarks/rpc.py``, with and without
it).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

__all__ = ["run_inline"]


@types.coroutine
def run_inline(
    coro: Coroutine[Any, Any, None], on_suspend: Callable[[], None]
) -> Generator[Any, Any, bool]:
    """Run ``coro`` in the calling task, calling ``on_suspend()`` just before it first waits
    (yields to the event loop); return whether it did.

    Awaiting it is like awaiting ``coro`` (values, exceptions and cancellation pass through
    unchanged), so a handler that completes without waiting costs no task switch while one
    that waits lets the caller react first.
    """
    try:
        value = coro.send(None)
    except StopIteration:
        return False
    on_suspend()
    while True:
        try:
            sent = yield value
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # thrown in by the event loop (e.g. cancellation)
            try:
                value = coro.throw(exc)
            except StopIteration:
                return True
        else:
            try:
                value = coro.send(sent)
            except StopIteration:
                return True
