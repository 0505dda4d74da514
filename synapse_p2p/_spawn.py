"""Starting a task in a task group at the cost of the event loop's own task.

anyio 4.14 and later wrap every task started in a task group in a ``TaskHandle`` (with a
cancel scope and an event of its own, and a coroutine frame around the task's): about 1.5 KiB
a task under trio, on top of trio's own. The node's long-lived services and its per-connection
and per-call workers never use the handle, so :func:`start_soon` starts them in the group's
trio nursery directly under trio; under asyncio (where anyio's task group must know every
task to apply its cancel scopes) it is ``group.start_soon``. Either way the task belongs to
the group: its exception ends the group, cancelling the group cancels it, and the group
waits for it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any

from anyio.abc import TaskGroup

__all__ = ["start_soon"]


def start_soon(
    group: TaskGroup,
    func: Callable[..., Coroutine[Any, Any, Any]],
    *args: Any,
    name: object = None,
) -> None:
    """``group.start_soon(func, *args, name=name)``, without anyio's task handle where the
    group is a trio nursery underneath (see the module documentation)."""
    nursery = getattr(group, "_nursery", None)
    trio = sys.modules.get("trio")
    if nursery is not None and trio is not None and type(nursery) is trio.Nursery:
        nursery.start_soon(func, *args, name=name)
    elif name is None:
        group.start_soon(func, *args)
    else:
        group.start_soon(func, *args, name=name)
