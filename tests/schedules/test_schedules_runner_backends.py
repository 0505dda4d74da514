"""The scheduler in real time, under both trio and asyncio (anyio's ``anyio_backend``)."""

from __future__ import annotations

import functools
import logging
import time

import anyio
import pytest

from synapse_p2p.schedules import Scheduler, every

pytestmark = pytest.mark.anyio


async def started(scheduler: Scheduler, task_group: anyio.abc.TaskGroup) -> None:
    await task_group.start(scheduler.run)
    assert scheduler.statistics().running


async def test_an_interval_job_runs_repeatedly() -> None:
    scheduler = Scheduler()
    five = anyio.Event()
    calls = 0

    async def tick() -> None:
        nonlocal calls
        calls += 1
        if calls == 5:
            five.set()

    scheduler.add(tick, every(0.01))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await started(scheduler, tg)
            await five.wait()
            tg.cancel_scope.cancel()
    assert scheduler.statistics().jobs["tick"].runs >= 5
    assert not scheduler.statistics().running


async def test_exceptions_do_not_stop_the_schedule(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = Scheduler()
    three = anyio.Event()
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            three.set()
        raise ValueError(f"failure {calls}")

    scheduler.add(broken, every(0.01), first_run="now")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await started(scheduler, tg)
            await three.wait()
            tg.cancel_scope.cancel()
    stats = scheduler.statistics().jobs["broken"]
    assert stats.failures == stats.runs == calls >= 3
    errors = [r for r in caplog.records if r.name.startswith("synapse_p2p.schedules")]
    assert len(errors) == 1  # one traceback per 10 s per job; the failures are counted
    assert all(r.levelno == logging.ERROR for r in errors)


async def test_a_slow_job_never_overlaps_itself() -> None:
    scheduler = Scheduler()
    active = max_active = runs = 0
    done = anyio.Event()

    async def slow() -> None:
        nonlocal active, max_active, runs
        active += 1
        max_active = max(max_active, active)
        await anyio.sleep(0.05)  # five intervals long
        active -= 1
        runs += 1
        if runs == 3:
            done.set()

    scheduler.add(slow, every(0.01), first_run="now")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await started(scheduler, tg)
            await done.wait()
            tg.cancel_scope.cancel()
    assert max_active == 1
    assert scheduler.statistics().jobs["slow"].skipped >= 3 * 3


async def test_cancelling_run_cancels_running_jobs_promptly() -> None:
    scheduler = Scheduler()
    running, cleaned_up = anyio.Event(), anyio.Event()

    async def forever() -> None:
        running.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned_up.set()

    scheduler.add(forever, every(3600), first_run="now")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await started(scheduler, tg)
            await running.wait()
            assert scheduler.statistics().jobs["forever"].running
            before = anyio.current_time()
            tg.cancel_scope.cancel()
    assert anyio.current_time() - before < 0.5
    assert cleaned_up.is_set()
    assert not scheduler.statistics().jobs["forever"].running


async def test_a_blocked_event_loop_gives_one_run_not_a_burst() -> None:
    interval = 0.05
    scheduler = Scheduler()
    times: list[float] = []
    warmed_up, after_stall = anyio.Event(), anyio.Event()
    stall_ended: list[float] = []

    async def tick() -> None:
        times.append(anyio.current_time())
        if len(times) == 2:
            warmed_up.set()
        if stall_ended and len([t for t in times if t >= stall_ended[0]]) == 3:
            after_stall.set()

    async def block_the_loop() -> None:
        await warmed_up.wait()
        time.sleep(8 * interval)  # a blocking call: nothing else runs meanwhile
        stall_ended.append(anyio.current_time())

    scheduler.add(tick, every(interval))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await started(scheduler, tg)
            tg.start_soon(block_the_loop)
            await after_stall.wait()
            tg.cancel_scope.cancel()
    post = [t for t in times if t >= stall_ended[0]]
    # The first run after the stall stands for every missed occurrence; the next one comes a
    # full interval later (2.5.0 replayed the missed runs back to back instead).
    assert post[1] - post[0] >= 0.8 * interval
    assert post[2] - post[1] >= 0.8 * interval
    assert scheduler.statistics().jobs["tick"].coalesced >= 5


async def test_jobs_added_while_running_start_and_removed_ones_stop() -> None:
    scheduler = Scheduler()
    ran = anyio.Event()

    async def late() -> None:
        ran.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await started(scheduler, tg)
            scheduler.add(late, 0.01)  # a plain number of seconds works too
            await ran.wait()
            scheduler.remove("late")
            runs = scheduler.statistics().jobs.get("late")
            assert runs is None
            tg.cancel_scope.cancel()


async def test_add_validates_its_arguments() -> None:
    scheduler = Scheduler()

    def not_async() -> None:
        pass

    async def job() -> None:
        pass

    class AsyncCallable:
        async def __call__(self) -> None:
            pass

    with pytest.raises(TypeError, match=r"^periodic task must be an async function$"):
        scheduler.add(not_async, every(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="first_run"):
        scheduler.add(job, every(1), first_run="later")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="number of seconds or a schedule"):
        scheduler.add(job, "hourly")  # type: ignore[arg-type]
    assert scheduler.add(job, every(1)).name == "job"
    assert scheduler.add(job, every(2)).name == "job#2"
    assert scheduler.add(functools.partial(job), 3, name="partial").schedule == every(3)
    assert scheduler.add(AsyncCallable(), 4).name == "AsyncCallable"
    with pytest.raises(ValueError, match="already exists"):
        scheduler.add(job, every(1), name="job")
    assert list(scheduler.jobs) == ["job", "job#2", "partial", "AsyncCallable"]
    with pytest.raises(ValueError, match="clock_check_interval"):
        Scheduler(clock_check_interval=0)
