"""How a node runs its services (``synapse_p2p.node._node._Running``): started in the node's
one task group, stopped in reverse order; a start's error reaches the caller as is, and a
caller cancelled during a start is not held by it."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus

from synapse_p2p.node._node import _Running

pytestmark = pytest.mark.anyio


async def test_a_service_gives_its_start_value_and_stops_in_reverse_order(
    anyio_backend: str,
) -> None:
    stopped: list[str] = []

    def service(name: str) -> Any:
        async def run(*, task_status: TaskStatus[str]) -> None:
            try:
                task_status.started(f"{name} ready")
                await anyio.sleep_forever()
            finally:
                stopped.append(name)

        return run

    async with anyio.create_task_group() as services:
        async with AsyncExitStack() as stack:
            first = await stack.enter_async_context(_Running(services, service("a"), "a"))
            second = await stack.enter_async_context(_Running(services, service("b"), "b"))
            assert (first, second) == ("a ready", "b ready")
            assert stopped == []
        assert stopped == ["b", "a"]  # (each awaited as its block ends, the last first)


async def test_an_error_before_the_start_is_raised_as_is_and_the_others_keep_running(
    anyio_backend: str,
) -> None:
    async def fails(*, task_status: TaskStatus[None]) -> None:
        raise ValueError("cannot start")

    async def returns(*, task_status: TaskStatus[None]) -> None:
        return

    async def runs(*, task_status: TaskStatus[None]) -> None:
        task_status.started()
        await anyio.sleep_forever()

    async with anyio.create_task_group() as services, AsyncExitStack() as stack:
        await stack.enter_async_context(_Running(services, runs, "the one that runs"))
        with pytest.raises(ValueError, match="cannot start"):
            await stack.enter_async_context(_Running(services, fails, "the failing one"))
        with pytest.raises(RuntimeError):  # (it never said it started)
            await stack.enter_async_context(_Running(services, returns, "the quiet one"))
        assert not services.cancel_scope.cancel_called  # the group and the first go on


async def test_a_caller_cancelled_during_a_start_is_not_held_by_it(anyio_backend: str) -> None:
    """The service's scope is shielded (so that a stopping node stops its services in
    order); a start that does not come must not hold a cancelled caller: the start is
    cancelled with it, and awaited. Before, the caller's cancellation went unheeded by the
    shielded start, which then started and ran on, shielded (here until it ended on its own,
    5 s; a service's run does not end: the node's group could never close)."""
    ended = anyio.Event()
    reached: list[str] = []

    async def slow(*, task_status: TaskStatus[None]) -> None:
        try:
            await anyio.sleep(2.0)  # (a start waiting on something that does not come)
            reached.append("start")
            task_status.started()
            await anyio.sleep(3.0)
        finally:
            ended.set()

    async with anyio.create_task_group() as services:
        with anyio.move_on_after(0.05):
            async with _Running(services, slow, "slow"):
                pytest.fail("the service never starts")
        assert ended.is_set()  # cancelled and awaited, not left running
        assert reached == []  # its start was cancelled, not waited for
        assert not services.cancel_scope.cancel_called


async def test_a_start_that_comes_as_its_caller_is_cancelled_is_still_awaited_to_its_end(
    anyio_backend: str,
) -> None:
    """A service whose start comes while its cancelled caller waits for it to end (a setup
    it shields) is awaited to its end, not only to its start: the services before it must
    not stop while it still cleans up."""
    ended = anyio.Event()

    async def shielded_setup(*, task_status: TaskStatus[None]) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.2)
            task_status.started()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.2)  # (cleaning up)
            ended.set()

    async with anyio.create_task_group() as services:
        with anyio.move_on_after(0.05):
            async with _Running(services, shielded_setup, "shielded"):
                pytest.fail("the caller was cancelled before the start")
        assert ended.is_set()
