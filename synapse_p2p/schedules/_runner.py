"""The scheduler: runs periodic jobs as supervised tasks of one anyio task group.

Design: one task per job, each sleeping until its own next occurrence. The event loop's timer
queue (a heap in both trio and asyncio) is the dispatcher, so there is no second heap to keep in
step with it: an idle scheduler with 1,000 jobs is 1,000 parked tasks plus one clock watcher that
wakes every ``clock_check_interval`` seconds, whatever the number of jobs. A job's run is awaited
inside its own task, so two runs of one job cannot overlap by construction, and removing a job
is cancelling one scope.

Time: occurrences are wall-clock instants (``wall_clock()``, :func:`time.time` by default, turned
into aware UTC datetimes); sleeping uses anyio's monotonic clock. Each job re-reads the wall clock
whenever it wakes. One small watcher task compares the two clocks every
``clock_check_interval`` seconds and wakes every sleeping job when the wall clock jumped (clock
set, laptop resumed from suspend), so a missed occurrence runs promptly instead of after the
remaining monotonic sleep.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final, Literal

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus

from .._logging import FailureLog
from ._specs import IntervalSchedule, Schedule, as_schedule, occurrences_between

__all__ = ["FirstRun", "Job", "JobStatistics", "Scheduler", "SchedulerStatistics"]

logger = logging.getLogger(__name__)

FirstRun = Literal["now", "after_interval"]

#: Occurrences of a cron or solar schedule counted per gap at most (interval gaps are exact).
COUNT_LIMIT: Final = 100
_JUMP_TOLERANCE: Final = 0.5  # seconds of wall/monotonic drift that count as a clock jump


@dataclass(frozen=True, slots=True)
class Job:
    """A registered periodic job (what :meth:`Scheduler.add` returns)."""

    name: str
    fn: Callable[[], Awaitable[object]]
    schedule: Schedule
    first_run: FirstRun


@dataclass(frozen=True, slots=True)
class JobStatistics:
    """A snapshot of one job's counters.

    ``runs``: runs started. ``failures``: runs that raised. ``coalesced``: occurrences that got
    no run of their own because the job was late (event-loop stall, suspend, clock jump) and were
    folded into the run that followed. ``skipped``: occurrences that came while a run of the job
    was still going. Both count occurrences exactly for interval schedules and at most
    :data:`COUNT_LIMIT` per gap for other schedules. ``next_run`` is ``None`` while the job runs,
    before the scheduler starts, and once the schedule has no further occurrence.
    """

    name: str
    runs: int
    failures: int
    coalesced: int
    skipped: int
    running: bool
    next_run: datetime | None
    last_run: datetime | None
    last_duration: float | None


@dataclass(frozen=True, slots=True)
class SchedulerStatistics:
    """A snapshot of a :class:`Scheduler`: whether :meth:`Scheduler.run` is active, per job."""

    running: bool
    jobs: Mapping[str, JobStatistics]


class _JobState:
    __slots__ = (
        "coalesced",
        "failures",
        "job",
        "last_duration",
        "last_run",
        "next_run",
        "removed",
        "running",
        "runs",
        "scope",
        "skipped",
    )

    def __init__(self, job: Job) -> None:
        self.job = job
        self.runs = self.failures = self.coalesced = self.skipped = 0
        self.running = self.removed = False
        self.next_run: datetime | None = None
        self.last_run: datetime | None = None
        self.last_duration: float | None = None
        self.scope: anyio.CancelScope | None = None

    def snapshot(self) -> JobStatistics:
        return JobStatistics(
            self.job.name,
            self.runs,
            self.failures,
            self.coalesced,
            self.skipped,
            self.running,
            self.next_run,
            self.last_run,
            self.last_duration,
        )


def _is_async_callable(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with ``async def __call__``
    )


class Scheduler:
    """Runs async functions on schedules (:func:`every`, :func:`cron`, :func:`solar`).

    Semantics:

    * **Start-up**: a cron or solar job first runs at its first occurrence strictly after the
      job starts; it never runs at start-up. An interval job runs first one interval after it
      starts (``first_run="after_interval"``, the default) or at once (``first_run="now"``,
      what synapse-p2p 2.5.0 did for every job; it also works for cron and solar jobs).
    * **Late (stall, suspend, clock jump)**: all the occurrences that passed are coalesced into
      one run, started as soon as the job notices; the next occurrence is the first one after
      that run's start. Never a burst.
    * **No overlap**: runs of one job never overlap. An occurrence that comes while the previous
      run is still going is skipped (counted in ``skipped``); the next occurrence is computed from
      the time the run ended. On time, interval jobs keep a fixed rate (no drift).
    * **Errors**: an exception from a run is logged (logger ``synapse_p2p.schedules._runner``,
      with traceback) and counted in ``failures``; the schedule continues. A schedule whose
      ``next_after`` raises or returns a time not after its argument ends that job (logged at
      ``ERROR``); one with no further occurrence ends it too (logged at ``WARNING``). Other
      jobs are not affected.
    * **Wall clock set back**: a cron or solar job does not repeat occurrences it already ran;
      an interval job waits at most one interval.

    ``wall_clock`` returns the wall time in seconds since the epoch (tests tie it to
    ``anyio.current_time()`` to run on virtual time). ``clock_check_interval`` is how often (in
    monotonic seconds) the scheduler looks for wall-clock jumps; ``None`` turns that off.

    Jobs may be added and removed before or while :meth:`run` runs; call :meth:`add` and
    :meth:`remove` from the event loop's thread.
    """

    def __init__(
        self,
        *,
        wall_clock: Callable[[], float] = time.time,
        clock_check_interval: float | None = 5.0,
    ) -> None:
        self._failures = FailureLog(logger)
        if not callable(wall_clock):
            raise TypeError("wall_clock must be a callable returning seconds since the epoch")
        if clock_check_interval is not None and (
            isinstance(clock_check_interval, bool)
            or not isinstance(clock_check_interval, int | float)
            or not math.isfinite(clock_check_interval)
            or clock_check_interval <= 0
        ):
            raise ValueError("clock_check_interval must be a positive number of seconds or None")
        self._wall_clock = wall_clock
        self._clock_check_interval = clock_check_interval
        self._states: dict[str, _JobState] = {}
        self._task_group: TaskGroup | None = None
        self._sleepers: set[anyio.CancelScope] = set()  # jobs waiting for their next occurrence
        #: The wall-clock watcher runs (it starts with the first job: a node without jobs
        #: has nothing to reschedule, and an idle task costs a few KiB).
        self._watching = False

    # -- registration ---------------------------------------------------------------------------

    def add(
        self,
        fn: Callable[[], Awaitable[object]],
        schedule: Schedule | float,
        *,
        name: str | None = None,
        first_run: FirstRun = "after_interval",
    ) -> Job:
        """Register ``fn`` (an async function taking no arguments) to run on ``schedule`` (a
        schedule or a number of seconds). If :meth:`run` is active the job starts at once.

        ``name`` defaults to ``fn.__name__``, made unique with a ``#2``, ``#3``... suffix; an
        explicit ``name`` already in use raises ``ValueError``. ``TypeError`` if ``fn`` is not an
        async function; ``ValueError`` for an unknown ``first_run``.
        """
        if not _is_async_callable(fn):
            raise TypeError("periodic task must be an async function")
        resolved = as_schedule(schedule)
        if first_run not in ("now", "after_interval"):
            raise ValueError(f"first_run must be 'now' or 'after_interval', got {first_run!r}")
        if name is None:
            base = str(getattr(fn, "__name__", None) or type(fn).__name__)
            name, suffix = base, 1
            while name in self._states:
                suffix += 1
                name = f"{base}#{suffix}"
        elif not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        elif not name:
            raise ValueError("name must not be empty")
        elif name in self._states:
            raise ValueError(f"name: a periodic job named {name!r} already exists")
        job = Job(name, fn, resolved, first_run)
        state = _JobState(job)
        self._states[name] = state
        if self._task_group is not None:
            self._task_group.start_soon(self._job_task, state, name=f"periodic job {name!r}")
            self._watch(self._task_group)
        return job

    def remove(self, name: str) -> Job:
        """Unregister the job ``name`` (``KeyError`` if unknown). If it is running, its current
        run is cancelled; the cancellation completes at the run's next checkpoint."""
        state = self._states.pop(name)
        state.removed = True
        if state.scope is not None:
            state.scope.cancel()
        return state.job

    @property
    def jobs(self) -> Mapping[str, Job]:
        """The registered jobs by name (a read-only snapshot)."""
        return MappingProxyType({name: state.job for name, state in self._states.items()})

    def statistics(self) -> SchedulerStatistics:
        """A frozen snapshot of every job's counters."""
        return SchedulerStatistics(
            running=self._task_group is not None,
            jobs=MappingProxyType({n: s.snapshot() for n, s in self._states.items()}),
        )

    # -- running --------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run every job until cancelled (``await task_group.start(scheduler.run)``).

        ``task_status.started()`` is called once every registered job's task is spawned. On
        cancellation every job's task, including runs in progress, is cancelled and awaited, and
        ``run`` returns (re-raising the cancellation) without waiting for anything else; jobs stay
        registered, so ``run`` may be called again later (interval jobs then start afresh).
        Exceptions from jobs never reach here; only a bug in the scheduler itself would.
        ``RuntimeError`` if this scheduler is already running.
        """
        if self._task_group is not None:
            raise RuntimeError("this Scheduler is already running")
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                for state in list(self._states.values()):
                    task_group.start_soon(
                        self._job_task, state, name=f"periodic job {state.job.name!r}"
                    )
                if self._states:
                    self._watch(task_group)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._task_group = None
            self._watching = False

    def _watch(self, task_group: TaskGroup) -> None:
        """Start the wall-clock watcher in ``task_group`` unless it runs (or is disabled)."""
        if not self._watching and self._clock_check_interval is not None:
            self._watching = True
            task_group.start_soon(self._watch_clock, self._clock_check_interval)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._wall_clock(), UTC)

    async def _watch_clock(self, interval: float) -> None:
        offset = self._wall_clock() - anyio.current_time()
        while True:
            await anyio.sleep(interval)
            new_offset = self._wall_clock() - anyio.current_time()
            if abs(new_offset - offset) > _JUMP_TOLERANCE:
                logger.info("wall clock jumped by %+.1f s; rescheduling", new_offset - offset)
                for sleeper in list(self._sleepers):
                    sleeper.cancel()
            offset = new_offset

    async def _job_task(self, state: _JobState) -> None:
        with anyio.CancelScope() as scope:
            if state.removed:
                return
            state.scope = scope
            try:
                await self._job_loop(state)
            finally:
                state.scope = None
                state.next_run = None
                state.running = False

    def _next(self, state: _JobState, after: datetime) -> datetime | None:
        found = state.job.schedule.next_after(after)
        if found is None:
            return None
        found = found.astimezone(UTC)
        if found <= after:
            raise ValueError(f"next_after({after}) returned {found}, which is not after it")
        return found

    async def _job_loop(self, state: _JobState) -> None:
        job = state.job
        try:
            due = self._now() if job.first_run == "now" else self._next(state, self._now())
            while due is not None:
                due = await self._wait_until(state, due)
                started = self._now()
                anchor = due
                following = self._next(state, due)
                if following is not None and following <= started:
                    state.coalesced += occurrences_between(job.schedule, due, started, COUNT_LIMIT)
                    anchor = started
                    logger.debug("periodic job %r is late; missed occurrences coalesced", job.name)
                await self._run_once(state, started)
                ended = self._now()
                due = following if anchor is due else self._next(state, anchor)
                if due is not None and due <= ended:
                    state.skipped += occurrences_between(job.schedule, anchor, ended, COUNT_LIMIT)
                    due = self._next(state, ended)
        except Exception:
            logger.exception("schedule of periodic job %r failed; the job stops", job.name)
            return
        logger.warning("periodic job %r has no further occurrence; the job stops", job.name)

    async def _wait_until(self, state: _JobState, due: datetime) -> datetime:
        """Sleep until the wall clock reaches ``due``; returns the (possibly clamped) due time."""
        schedule = state.job.schedule
        state.next_run = due
        slept = False
        while True:
            now = self._wall_clock()
            delay = due.timestamp() - now
            if isinstance(schedule, IntervalSchedule) and delay > schedule.seconds + 0.001:
                # The wall clock was set back: an interval job waits at most one interval.
                due = datetime.fromtimestamp(now + schedule.seconds, UTC)
                state.next_run = due
                delay = schedule.seconds
            if delay <= 0:
                break
            # A plain sleep (a timer, no cancellation on the normal path) in a scope that the
            # clock watcher cancels when the wall clock jumps.
            with anyio.CancelScope() as wake_up:
                self._sleepers.add(wake_up)
                try:
                    await anyio.sleep(delay)
                finally:
                    self._sleepers.discard(wake_up)
            slept = True
        if not slept:
            await anyio.lowlevel.checkpoint()
        state.next_run = None
        return due

    async def _run_once(self, state: _JobState, started: datetime) -> None:
        state.running = True
        state.runs += 1
        state.last_run = started
        t0 = anyio.current_time()
        try:
            await state.job.fn()
        except Exception as exc:
            state.failures += 1
            self._failures.report(
                state.job.name,
                f"periodic job {state.job.name!r} raised (its schedule continues)",
                exc,
            )
        finally:
            state.running = False
            state.last_duration = anyio.current_time() - t0
