"""Waiting for a free agent slot: one waiter woken per released slot, across threads too."""

from __future__ import annotations

import threading

import anyio
import pytest

from synapse_p2p.federation._load import SlotTracker

pytestmark = pytest.mark.anyio


async def test_each_release_wakes_one_waiter_that_can_use_it(anyio_backend: str) -> None:
    slots = SlotTracker()
    assert slots.try_acquire("a", 1)
    assert slots.try_acquire("b", 1)
    woken: list[str] = []

    async def wait(name: str, agents: set[str]) -> None:
        await slots.wait_for_release(slots.generation, agents)
        woken.append(name)

    async with anyio.create_task_group() as tg:
        for count, (name, agents) in enumerate(
            (("first-a", {"a"}), ("only-b", {"b"}), ("second-a", {"a"})), 1
        ):
            tg.start_soon(wait, name, agents)
            while slots.waiting() < count:  # queued in this order
                await anyio.sleep(0)
        slots.release("a")
        while not woken:
            await anyio.sleep(0)
        for _ in range(10):
            await anyio.sleep(0)
        assert woken == ["first-a"]  # one release, one waiter; the b waiter is not disturbed
        slots.release("b")
        for _ in range(10):
            await anyio.sleep(0)
        assert woken == ["first-a", "only-b"]
        assert slots.waiting() == 1
        tg.cancel_scope.cancel()
    assert slots.waiting() == 0


async def test_a_woken_waiter_that_leaves_passes_the_wake_on(anyio_backend: str) -> None:
    slots = SlotTracker()
    assert slots.try_acquire("a", 1)
    woken: list[str] = []
    first_scope = anyio.CancelScope()

    async def first() -> None:
        with first_scope:
            await slots.wait_for_release(slots.generation, {"a"})
            woken.append("first")

    async def second() -> None:
        await slots.wait_for_release(slots.generation, {"a"})
        woken.append("second")

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        while slots.waiting() < 1:
            await anyio.sleep(0)
        tg.start_soon(second)
        while slots.waiting() < 2:
            await anyio.sleep(0)
        # A release in another thread has picked ``first`` and its wake is on the way, when
        # ``first`` is cancelled: the wake must go to ``second``, not be lost.
        in_flight = slots._take_waiter("a")
        assert in_flight is not None
        first_scope.cancel()
        with anyio.fail_after(5):
            while "second" not in woken:
                await anyio.sleep(0.001)
    assert woken == ["second"]


async def test_a_release_in_another_thread_wakes_the_waiter_at_once(anyio_backend: str) -> None:
    slots = SlotTracker()
    assert slots.try_acquire("a", 1)
    async with anyio.create_task_group() as tg:
        done = anyio.Event()

        async def wait() -> None:
            await slots.wait_for_release(slots.generation, {"a"})
            done.set()

        tg.start_soon(wait)
        while slots.waiting() < 1:
            await anyio.sleep(0)
        started = anyio.current_time()
        thread = threading.Thread(target=slots.release, args=("a",))
        thread.start()
        with anyio.fail_after(5):
            await done.wait()
        thread.join()
        # Woken by the release itself, not by a poll (it used to re-check every 0.25 s).
        assert anyio.current_time() - started < 0.2
