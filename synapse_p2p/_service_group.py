"""A task group held open between ``__aenter__`` and ``__aexit__``, for objects that are
async context managers running one service task (Node, Team, Worker)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup

__all__ = ["close_service_group", "open_service_group"]


async def open_service_group(service: Callable[..., Coroutine[Any, Any, Any]]) -> TaskGroup:
    """Enter a task group and ``start`` ``service`` in it (it takes ``task_status``).

    If the service fails before it is started, the group is closed and the error raised as
    is. Must be paired with :func:`close_service_group` in the same task.
    """
    group = anyio.create_task_group()
    await group.__aenter__()
    try:
        await group.start(service)
    except BaseException:
        await close_service_group(group)
        raise
    return group


async def close_service_group(group: TaskGroup) -> None:
    """Cancel what runs in ``group`` and leave it (returns once every task has ended)."""
    group.cancel_scope.cancel()
    await group.__aexit__(None, None, None)
