"""A service task held open between ``__aenter__`` and ``__aexit__``, for the objects that are
async context managers running one service (Node, Team, Worker)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

import anyio

__all__ = ["ServiceGroup", "close_service_group", "open_service_group"]


class ServiceGroup:
    """The task group that runs one service, owned through an :class:`AsyncExitStack`.

    Closing it cancels the service and returns once every task of the group has ended.
    """

    def __init__(self, stack: AsyncExitStack, task_group: anyio.abc.TaskGroup) -> None:
        self._stack = stack
        self.cancel_scope = task_group.cancel_scope

    async def aclose(self) -> None:
        await self._stack.aclose()


async def open_service_group(service: Callable[..., Coroutine[Any, Any, Any]]) -> ServiceGroup:
    """Enter a task group and ``start`` ``service`` in it (it takes ``task_status``).

    If the service fails before it is started, the group is closed and the error raised as
    is. Must be paired with :func:`close_service_group` in the same task.
    """
    stack = AsyncExitStack()
    task_group = await stack.enter_async_context(anyio.create_task_group())
    stack.callback(task_group.cancel_scope.cancel)  # on close: cancel first, then wait
    try:
        await task_group.start(service)
    except BaseException:
        await stack.aclose()
        raise
    return ServiceGroup(stack, task_group)


async def close_service_group(group: ServiceGroup) -> None:
    """Cancel what runs in ``group`` and leave it (returns once every task has ended)."""
    await group.aclose()
