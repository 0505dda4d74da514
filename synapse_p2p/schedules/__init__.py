"""Schedules: run async functions on an interval, a cron expression or the sun.

Build a schedule with :func:`every`, :func:`cron` or :func:`solar` (all validation happens
there: ``ValueError``/``TypeError`` naming the parameter) and hand it to a :class:`Scheduler`,
or to ``@node.periodic(...)``, which uses the node's scheduler::

    from synapse_p2p.schedules import Scheduler, cron, every, solar

    scheduler = Scheduler()
    scheduler.add(water_plants, cron("0 7 * * *", tz="Europe/London"))
    scheduler.add(check_sensors, every(minutes=5))
    scheduler.add(open_shutters, solar("sunrise", latitude=51.5, longitude=-0.1))
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)

Guarantees: a cron or solar job never runs at start-up; missed occurrences are coalesced into one
run, never replayed in a burst; runs of one job never overlap (an occurrence that comes while a
run is still going is skipped); an exception is logged and the schedule continues; cancelling
:meth:`Scheduler.run` cancels every job and returns promptly. See :class:`Scheduler` for the
details, :class:`CronSchedule` for daylight-saving time and :class:`SolarSchedule` for polar day
and night.
"""

from __future__ import annotations

from ._cron import CRON_HORIZON_YEARS, CronSchedule, cron
from ._runner import FirstRun, Job, JobStatistics, Scheduler, SchedulerStatistics
from ._solar import SOLAR_EVENTS, SOLAR_HORIZON_DAYS, SolarSchedule, solar
from ._specs import IntervalSchedule, Schedule, as_schedule, every

__all__ = [
    "CRON_HORIZON_YEARS",
    "SOLAR_EVENTS",
    "SOLAR_HORIZON_DAYS",
    "CronSchedule",
    "FirstRun",
    "IntervalSchedule",
    "Job",
    "JobStatistics",
    "Schedule",
    "Scheduler",
    "SchedulerStatistics",
    "SolarSchedule",
    "as_schedule",
    "cron",
    "every",
    "solar",
]
