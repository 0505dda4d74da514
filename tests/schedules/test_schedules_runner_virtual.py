"""The scheduler on trio's virtual clock: hours of schedule in milliseconds of test."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import trio
import trio.testing

from synapse_p2p.schedules import Scheduler, cron, every, solar

pytestmark = pytest.mark.trio

LOGGER = "synapse_p2p.schedules._runner"


class VirtualWall:
    """A wall clock tied to trio's virtual clock, which a test can set forward or back."""

    def __init__(self, start: datetime) -> None:
        self.start = start.timestamp()
        self.origin = trio.current_time()
        self.offset = 0.0

    def __call__(self) -> float:
        return self.start + (trio.current_time() - self.origin) + self.offset

    def at(self, when: datetime) -> float:
        """The virtual time at which the wall clock shows ``when`` (with no offset)."""
        return when.timestamp() - self.start + self.origin


class Recorder:
    """An async job that records the virtual time of each run."""

    def __init__(self, work: Callable[[], Awaitable[object]] | None = None) -> None:
        self.times: list[float] = []
        self.work = work
        self.active = self.max_active = 0
        self.__name__ = "recorder"

    async def __call__(self) -> None:
        self.times.append(trio.current_time())
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.work is not None:
                await self.work()
        finally:
            self.active -= 1


async def run_for(scheduler: Scheduler, seconds: float) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()


def approx(values: list[float]) -> object:
    return pytest.approx(values, abs=1e-3)


async def test_cron_and_solar_jobs_never_run_at_start_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    wall = VirtualWall(datetime(2024, 3, 1, 23, 59, 30, tzinfo=UTC))
    scheduler = Scheduler(wall_clock=wall, clock_check_interval=None)
    midnight, minutely, sunrise = Recorder(), Recorder(), Recorder()
    scheduler.add(midnight, cron("0 0 * * *"), name="midnight")
    scheduler.add(minutely, cron("* * * * *"), name="minutely")
    sunrise_schedule = solar("sunrise", latitude=51.5, longitude=-0.1, tz="Europe/London")
    scheduler.add(sunrise, sunrise_schedule, name="sunrise")
    await run_for(scheduler, 2 * 86400)
    assert midnight.times == approx([30.0, 30.0 + 86400])
    assert minutely.times[:3] == approx([30.0, 90.0, 150.0])
    first_sunrise = sunrise_schedule.next_after(datetime(2024, 3, 1, 23, 59, 30, tzinfo=UTC))
    assert first_sunrise is not None
    assert sunrise.times[0] == pytest.approx(wall.at(first_sunrise), abs=1e-3)
    assert len(sunrise.times) == 2


async def test_interval_first_run_is_after_one_interval_by_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    wall = VirtualWall(datetime(2024, 1, 1, tzinfo=UTC))
    scheduler = Scheduler(wall_clock=wall)
    later, now = Recorder(), Recorder()
    scheduler.add(later, every(10), name="later")
    scheduler.add(now, every(10), name="now", first_run="now")
    await run_for(scheduler, 35)
    assert later.times == approx([10, 20, 30])
    assert now.times == approx([0, 10, 20, 30])


async def test_interval_jobs_keep_a_fixed_rate(autojump_clock: trio.testing.MockClock) -> None:
    async def work() -> None:
        await trio.sleep(0.3)

    job = Recorder(work)
    scheduler = Scheduler(wall_clock=VirtualWall(datetime(2024, 1, 1, tzinfo=UTC)))
    scheduler.add(job, every(1))
    await run_for(scheduler, 100.5)
    assert job.times == approx([float(n) for n in range(1, 101)])  # no drift from the 0.3 s runs


async def test_wall_clock_jump_forward_gives_one_coalesced_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    wall = VirtualWall(datetime(2024, 1, 1, tzinfo=UTC))
    scheduler = Scheduler(wall_clock=wall, clock_check_interval=5)
    job = Recorder()
    scheduler.add(job, every(10), name="tick")

    async def suspend_laptop() -> None:
        await trio.sleep(12)
        wall.offset += 3600  # an hour passes on the wall while the process is frozen

    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        nursery.start_soon(suspend_laptop)
        await trio.sleep(40)
        nursery.cancel_scope.cancel()
    # The clock watcher notices at t=15: one run there, then the cadence resumes from it.
    assert job.times == approx([10, 15, 25, 35])
    stats = scheduler.statistics().jobs["tick"]
    assert stats.runs == 4
    assert stats.coalesced == 359  # the occurrences 20 .. 3610 s were folded into the run at 15


async def test_wall_clock_jump_without_the_watcher_is_noticed_on_wake_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    wall = VirtualWall(datetime(2024, 1, 1, tzinfo=UTC))
    scheduler = Scheduler(wall_clock=wall, clock_check_interval=None)
    job = Recorder()
    scheduler.add(job, every(10), name="tick")

    async def jump() -> None:
        await trio.sleep(12)
        wall.offset += 3600

    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        nursery.start_soon(jump)
        await trio.sleep(35)
        nursery.cancel_scope.cancel()
    # The job sleeps on the monotonic clock until t=20, then sees the jump: one run.
    assert job.times == approx([10, 20, 30])
    assert scheduler.statistics().jobs["tick"].coalesced == 360


async def test_cron_job_runs_promptly_after_a_suspend(
    autojump_clock: trio.testing.MockClock,
) -> None:
    wall = VirtualWall(datetime(2024, 1, 1, 10, tzinfo=UTC))
    scheduler = Scheduler(wall_clock=wall, clock_check_interval=5)
    job = Recorder()
    scheduler.add(job, cron("0 * * * *"), name="hourly")

    async def suspend() -> None:
        await trio.sleep(58)
        wall.offset += 2 * 3600  # resume at 12:01, past the 11:00 and 12:00 occurrences

    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        nursery.start_soon(suspend)
        await trio.sleep(3700)
        nursery.cancel_scope.cancel()
    # One run at the watcher's next look (t=60), then 13:00 on the (shifted) wall clock.
    assert job.times == approx([60, 3600])
    assert scheduler.statistics().jobs["hourly"].coalesced == 1


async def test_wall_clock_set_back(autojump_clock: trio.testing.MockClock) -> None:
    wall = VirtualWall(datetime(2024, 1, 1, 10, tzinfo=UTC))
    scheduler = Scheduler(wall_clock=wall, clock_check_interval=5)
    tick, hourly = Recorder(), Recorder()
    scheduler.add(tick, every(10), name="tick")
    scheduler.add(hourly, cron("0 * * * *"), name="hourly")

    async def set_back() -> None:
        await trio.sleep(3612)
        wall.offset -= 3600  # 11:00:12 becomes 10:00:12

    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        nursery.start_soon(set_back)
        await trio.sleep(3 * 3600 + 10)
        nursery.cancel_scope.cancel()
    # The interval job waits at most one interval; the cron job does not repeat 11:00.
    assert tick.times[360:363] == approx([3610, 3625, 3635])
    assert hourly.times == approx([3600, 3 * 3600])


async def test_a_stalled_event_loop_gives_one_run_not_a_burst(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scheduler = Scheduler(wall_clock=VirtualWall(datetime(2024, 1, 1, tzinfo=UTC)))
    job = Recorder()
    scheduler.add(job, every(0.2), name="tick")

    async def stall() -> None:
        await trio.sleep(1.1)
        autojump_clock.jump(2.0)  # 2 s pass with no checkpoint: nothing else can run

    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        nursery.start_soon(stall)
        await trio.sleep(3.55)
        nursery.cancel_scope.cancel()
    assert job.times == approx([0.2, 0.4, 0.6, 0.8, 1.0, 3.1, 3.3, 3.5])
    assert scheduler.statistics().jobs["tick"].coalesced == 9  # 1.4 .. 3.0


async def test_runs_never_overlap_late_occurrences_are_skipped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow() -> None:
        await trio.sleep(2.5)

    scheduler = Scheduler(wall_clock=VirtualWall(datetime(2024, 1, 1, tzinfo=UTC)))
    interval, minutely = Recorder(slow), Recorder(functools.partial(trio.sleep, 150))
    scheduler.add(interval, every(1), name="interval")
    scheduler.add(minutely, cron("* * * * *"), name="minutely")
    await run_for(scheduler, 430)
    # Each run ends 2.5 s after it starts; the next one is computed from the end.
    assert interval.times[:4] == approx([1, 4.5, 8, 11.5])
    assert interval.max_active == minutely.max_active == 1
    assert minutely.times == approx([60, 240, 420])  # 120 and 180 fell inside the first run
    stats = scheduler.statistics().jobs
    assert stats["minutely"].skipped == 4
    assert stats["interval"].skipped == 2 * (stats["interval"].runs - 1)


async def test_an_exception_is_logged_and_the_schedule_continues(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("sensor unplugged")

    scheduler = Scheduler(wall_clock=VirtualWall(datetime(2024, 1, 1, tzinfo=UTC)))
    scheduler.add(broken, every(1))
    await run_for(scheduler, 3.5)
    stats = scheduler.statistics().jobs["broken"]
    assert (stats.runs, stats.failures) == (3, 3)
    records = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert len(records) == 1  # rate-limited: one traceback per 10 s per job
    assert "broken" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert str(records[0].exc_info[1]) == "sensor unplugged"
    await run_for(scheduler, 10)  # the next report says how many were not logged
    records = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert len(records) >= 2
    assert "more since the last report" in records[1].getMessage()


async def test_add_and_remove_while_running(autojump_clock: trio.testing.MockClock) -> None:
    scheduler = Scheduler(wall_clock=VirtualWall(datetime(2024, 1, 1, tzinfo=UTC)))
    added = Recorder()
    cancelled = trio.Event()

    async def stuck() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        scheduler.add(stuck, every(1))
        await trio.sleep(5)
        scheduler.add(added, every(10), name="added")
        assert scheduler.statistics().jobs["stuck"].running
        scheduler.remove("stuck")
        await cancelled.wait()  # the run in progress is cancelled
        await trio.sleep(21)
        scheduler.remove("added")
        await trio.sleep(30)
        nursery.cancel_scope.cancel()
    assert added.times == approx([15, 25])
    assert dict(scheduler.jobs) == {}
    with pytest.raises(KeyError):
        scheduler.remove("added")


async def test_statistics_snapshot(autojump_clock: trio.testing.MockClock) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    scheduler = Scheduler(wall_clock=VirtualWall(start))
    scheduler.add(Recorder(), every(10), name="tick")
    before = scheduler.statistics()
    assert not before.running
    assert before.jobs["tick"].next_run is None
    assert before.jobs["tick"].runs == 0
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        await trio.sleep(15)
        snapshot = scheduler.statistics()
        nursery.cancel_scope.cancel()
    assert snapshot.running
    tick = snapshot.jobs["tick"]
    assert tick.runs == 1
    assert not tick.running
    assert tick.next_run == start + timedelta(seconds=20)
    assert tick.last_run == start + timedelta(seconds=10)
    with pytest.raises(AttributeError):
        tick.runs = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot.jobs["x"] = tick  # type: ignore[index]
    assert not scheduler.statistics().running


async def test_a_schedule_that_ends_or_breaks_stops_only_its_job(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    class Once:
        def __init__(self) -> None:
            self.used = False

        def next_after(self, t: datetime, /) -> datetime | None:
            if self.used:
                return None
            self.used = True
            return t + timedelta(seconds=5)

    class Broken:
        def next_after(self, t: datetime, /) -> datetime | None:
            raise ZeroDivisionError

    scheduler = Scheduler(wall_clock=VirtualWall(datetime(2024, 1, 1, tzinfo=UTC)))
    once, broken, healthy = Recorder(), Recorder(), Recorder()
    scheduler.add(once, Once(), name="once")
    scheduler.add(broken, Broken(), name="broken")
    scheduler.add(healthy, every(1), name="healthy")
    await run_for(scheduler, 10.5)
    assert once.times == approx([5])
    assert broken.times == []
    assert len(healthy.times) == 10
    messages = {(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER}
    assert (logging.WARNING, "periodic job 'once' has no further occurrence; the job stops") in (
        messages
    )
    assert (logging.ERROR, "schedule of periodic job 'broken' failed; the job stops") in messages


async def test_dst_fall_back_runs_once(autojump_clock: trio.testing.MockClock) -> None:
    new_york = ZoneInfo("America/New_York")
    wall = VirtualWall(datetime(2024, 11, 2, 12, tzinfo=new_york))
    scheduler = Scheduler(wall_clock=wall, clock_check_interval=None)
    job = Recorder()
    scheduler.add(job, cron("30 1 * * *", tz=new_york))
    await run_for(scheduler, 3 * 86400)
    ran = [datetime.fromtimestamp(wall.start + t - wall.origin, new_york) for t in job.times]
    assert [t.isoformat() for t in ran] == [
        "2024-11-03T01:30:00-04:00",
        "2024-11-04T01:30:00-05:00",
        "2024-11-05T01:30:00-05:00",
    ]


async def test_polar_night_sunrise_job_waits_for_the_sun(
    autojump_clock: trio.testing.MockClock,
) -> None:
    oslo = ZoneInfo("Europe/Oslo")
    wall = VirtualWall(datetime(2024, 12, 1, tzinfo=oslo))
    scheduler = Scheduler(wall_clock=wall, clock_check_interval=None)
    job = Recorder()
    scheduler.add(job, solar("sunrise", latitude=69.65, longitude=18.96, tz=oslo))
    await run_for(scheduler, 50 * 86400)
    ran = [datetime.fromtimestamp(wall.start + t - wall.origin, oslo) for t in job.times]
    assert ran, "no sunrise at all"
    assert ran[0].year == 2025
    assert ran[0].month == 1
    assert len({t.date() for t in ran}) == len(ran)  # one run a day once the sun is back


async def test_run_is_not_reentrant_but_can_run_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    scheduler = Scheduler(wall_clock=VirtualWall(datetime(2024, 1, 1, tzinfo=UTC)))
    job = Recorder()
    scheduler.add(job, every(1))
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        with pytest.raises(RuntimeError, match="already running"):
            await scheduler.run()
        await trio.sleep(2.5)
        nursery.cancel_scope.cancel()
    await run_for(scheduler, 1.5)
    assert scheduler.statistics().jobs["recorder"].runs == 3


async def test_the_clock_watcher_starts_with_the_first_job(
    autojump_clock: trio.testing.MockClock,
) -> None:
    wall = VirtualWall(datetime(2024, 1, 1, tzinfo=UTC))
    scheduler = Scheduler(wall_clock=wall, clock_check_interval=5)
    job = Recorder()

    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        await trio.sleep(1)
        assert not watching(scheduler)  # no job: nothing to reschedule, no task
        scheduler.add(job, every(10), name="tick")
        assert watching(scheduler)
        await trio.sleep(11)
        wall.offset += 3600  # at t=12
        await trio.sleep(28)
        nursery.cancel_scope.cancel()
    # Added at t=1: runs at 11; the watcher (checking at 6, 11, 16) notices the jump at 16.
    assert job.times == approx([11, 16, 26, 36])
    assert not watching(scheduler)


def watching(scheduler: Scheduler) -> bool:
    """Whether the scheduler's wall-clock watcher task runs."""
    return scheduler._watching
