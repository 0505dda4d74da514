"""examples/periodic_tasks/garden.py on virtual time: two simulated days in milliseconds."""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trio
import trio.testing

from synapse_p2p.schedules import CronSchedule, IntervalSchedule, Scheduler, SolarSchedule

GARDEN = Path(__file__).resolve().parents[2] / "examples" / "periodic_tasks" / "garden.py"
LONDON = ZoneInfo("Europe/London")


@pytest.fixture
def garden() -> ModuleType:
    """The example module, loaded afresh (its ``node`` is built at import)."""
    import synapse_p2p

    if not hasattr(getattr(synapse_p2p, "Node", None), "periodic"):
        pytest.skip("Node.periodic is not available")
    spec = importlib.util.spec_from_file_location("garden_example", GARDEN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not isinstance(getattr(module.node, "scheduler", None), Scheduler):
        pytest.skip("the node does not expose its Scheduler as node.scheduler")
    return module


@pytest.mark.trio
async def test_garden_jobs_on_virtual_time(
    garden: ModuleType, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = {name: job for name, job in garden.node.scheduler.jobs.items() if name in {
        "read_moisture", "water", "morning_check"}}  # fmt: skip
    assert isinstance(jobs["read_moisture"].schedule, IntervalSchedule)
    assert isinstance(jobs["water"].schedule, CronSchedule)
    assert isinstance(jobs["morning_check"].schedule, SolarSchedule)

    broadcasts: list[tuple[float, str]] = []

    async def broadcast(endpoint: str, *args: Any, **kwargs: Any) -> None:
        broadcasts.append((trio.current_time(), endpoint))

    monkeypatch.setattr(garden.node, "broadcast", broadcast)
    start = datetime(2024, 6, 1, tzinfo=LONDON)
    origin = trio.current_time()
    scheduler = Scheduler(
        wall_clock=lambda: start.timestamp() + trio.current_time() - origin,
        clock_check_interval=None,
    )
    for job in jobs.values():
        scheduler.add(job.fn, job.schedule, name=job.name, first_run=job.first_run)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        await trio.sleep(2 * 86400 + 60)
        nursery.cancel_scope.cancel()

    def wall(t: float) -> datetime:
        return start + timedelta(seconds=t - origin)

    stats = scheduler.statistics().jobs
    assert stats["read_moisture"].runs == 2 * 24 * 6
    assert stats["water"].runs == 2
    assert stats["water"].last_run is not None
    assert stats["water"].last_run.astimezone(LONDON).hour == 7
    sunrises = [wall(t) for t, endpoint in broadcasts if endpoint == "garden.status"]
    assert [t.date().day for t in sunrises] == [1, 2]
    assert all(4 <= t.astimezone(LONDON).hour < 5 for t in sunrises)  # June sunrise in London
    assert garden.garden["readings"] == 2 * 24 * 6
