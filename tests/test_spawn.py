"""``_spawn.start_soon``: a task of the group in every way, without anyio's handle under trio."""

from __future__ import annotations

import sys

import anyio
import pytest

from synapse_p2p._spawn import start_soon

pytestmark = pytest.mark.anyio


async def test_the_group_waits_for_the_task_and_passes_its_arguments(anyio_backend: str) -> None:
    done: list[tuple[int, str]] = []

    async def task(n: int, s: str) -> None:
        await anyio.sleep(0)
        done.append((n, s))

    async with anyio.create_task_group() as tg:
        start_soon(tg, task, 1, "a", name="one")
    assert done == [(1, "a")]


async def test_a_failing_task_ends_the_group_with_its_error(anyio_backend: str) -> None:
    async def fails() -> None:
        raise LookupError("boom")

    with pytest.raises(BaseExceptionGroup) as caught:  # noqa: PT012
        async with anyio.create_task_group() as tg:
            start_soon(tg, fails)
            await anyio.sleep_forever()
    assert caught.group_contains(LookupError, match="boom")


async def test_cancelling_the_group_cancels_the_task(anyio_backend: str) -> None:
    ended = anyio.Event()

    async def forever() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            ended.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            start_soon(tg, forever)
            await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert ended.is_set()


async def test_a_closed_group_refuses_a_task(anyio_backend: str) -> None:
    async def nothing() -> None:
        pass

    async with anyio.create_task_group() as tg:
        pass
    with pytest.raises(RuntimeError):
        start_soon(tg, nothing)


@pytest.mark.parametrize("anyio_backend", ["trio"])  # (asyncio: anyio's group wraps its tasks)
async def test_under_trio_the_task_runs_its_own_coroutine(anyio_backend: str) -> None:
    """No ``TaskHandle`` around it (its scope, event and frame: about 1.5 KiB a task)."""
    trio = sys.modules["trio"]
    seen: list[object] = []

    async def task() -> None:
        seen.append(trio.lowlevel.current_task().coro.cr_code)

    async with anyio.create_task_group() as tg:
        start_soon(tg, task)
    assert seen == [task.__code__]
