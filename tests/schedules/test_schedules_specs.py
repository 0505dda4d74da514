"""Schedule construction, validation, daylight-saving time and polar day/night."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from synapse_p2p.schedules import (
    SOLAR_EVENTS,
    CronSchedule,
    IntervalSchedule,
    Schedule,
    SolarSchedule,
    as_schedule,
    cron,
    every,
    solar,
)
from synapse_p2p.schedules._specs import occurrences_between

NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
OSLO = ZoneInfo("Europe/Oslo")


def run_times(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Every occurrence in (start, end], by iterating next_after."""
    found = []
    when = schedule.next_after(start)
    while when is not None and when.astimezone(UTC) <= end.astimezone(UTC):
        found.append(when)
        when = schedule.next_after(when)
    return found


# -- construction -------------------------------------------------------------------------------


def test_every_adds_up_its_parts_and_keeps_seconds() -> None:
    assert every(seconds=1, minutes=2, hours=3, days=4) == IntervalSchedule(
        1 + 120 + 10800 + 345600
    )
    assert every(5).seconds == 5.0
    assert every(minutes=1.5).seconds == 90.0
    assert isinstance(every(1), Schedule)


def test_every_next_after_is_elapsed_time_even_across_dst() -> None:
    before = datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK)  # first 01:30 (EDT)
    found = every(hours=1).next_after(before)
    assert found is not None
    assert found.astimezone(UTC) - before.astimezone(UTC) == timedelta(hours=1)
    assert found.tzinfo is NEW_YORK
    assert found.fold == 1
    assert every(1).next_after(datetime(2024, 1, 1)) == datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_cron_and_solar_defaults() -> None:
    schedule = cron("*/5 * * * *")
    assert schedule == CronSchedule("*/5 * * * *", UTC, True)
    assert cron("0 7 * * *", tz="Europe/London").tz == LONDON
    fixed = timezone(timedelta(hours=2))
    assert cron("0 7 * * *", tz=fixed, day_or=False) == CronSchedule("0 7 * * *", fixed, False)
    sun = solar("sunrise", latitude=51.5, longitude=-0.1, tz="Europe/London")
    assert sun == SolarSchedule("sunrise", 51.5, -0.1, LONDON)
    assert hash(sun) == hash(SolarSchedule("sunrise", 51.5, -0.1, LONDON))
    with pytest.raises(dataclasses.FrozenInstanceError):
        sun.latitude = 0.0  # type: ignore[misc]


def test_every_solar_event_name_is_accepted() -> None:
    expected = {
        "sunrise", "sunset", "solar_noon", "noon",
        "civil_twilight_begin", "civil_dawn", "dawn", "civil_twilight_end", "civil_dusk", "dusk",
        "nautical_twilight_begin", "nautical_dawn", "nautical_twilight_end", "nautical_dusk",
        "astronomical_twilight_begin", "astronomical_dawn",
        "astronomical_twilight_end", "astronomical_dusk",
    }  # fmt: skip
    assert set(SOLAR_EVENTS) == expected
    base = datetime(2024, 6, 1, tzinfo=UTC)
    for event in SOLAR_EVENTS:
        assert solar(event, latitude=48.85, longitude=2.35).next_after(base) is not None


def test_aliases_name_the_same_event() -> None:
    base = datetime(2024, 3, 1, tzinfo=UTC)
    for alias, canonical in [
        ("noon", "solar_noon"),
        ("dawn", "civil_twilight_begin"),
        ("civil_dawn", "civil_twilight_begin"),
        ("dusk", "civil_twilight_end"),
        ("nautical_dusk", "nautical_twilight_end"),
        ("astronomical_dawn", "astronomical_twilight_begin"),
    ]:
        one = solar(alias, latitude=40, longitude=-3).next_after(base)
        other = solar(canonical, latitude=40, longitude=-3).next_after(base)
        assert one == other


def test_as_schedule() -> None:
    assert as_schedule(2) == every(2)
    assert as_schedule(0.5) == every(0.5)
    daily = cron("@daily")
    assert as_schedule(daily) is daily
    with pytest.raises(TypeError, match="number of seconds or a schedule"):
        as_schedule("5")
    with pytest.raises(TypeError):
        as_schedule(True)
    with pytest.raises(ValueError, match="greater than 0"):
        as_schedule(0)


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: every(), ValueError, "greater than 0 seconds"),
        (lambda: every(0), ValueError, "greater than 0 seconds"),
        (lambda: every(seconds=-1, minutes=1), ValueError, "seconds must not be negative"),
        (lambda: every(hours=float("nan")), ValueError, "hours must be a finite number"),
        (lambda: every(days=float("inf")), ValueError, "days must be a finite number"),
        (lambda: every(1e-9), ValueError, "seconds must be between"),
        (lambda: every("5"), TypeError, "seconds must be a number"),  # type: ignore[arg-type]
        (lambda: every(minutes=True), TypeError, "minutes must be a number"),
        (lambda: IntervalSchedule(0), ValueError, "greater than 0 seconds"),
        (lambda: IntervalSchedule(-5), ValueError, "greater than 0 seconds"),
        (lambda: cron("61 * * * *"), ValueError, "expression: invalid cron expression"),
        (lambda: cron("every day"), ValueError, "expression: invalid cron expression"),
        (lambda: cron(""), ValueError, "expression: invalid cron expression"),
        (lambda: cron("0 0 31 2 *"), ValueError, "never matches"),
        (lambda: cron(5), TypeError, "expression must be a str"),  # type: ignore[arg-type]
        (lambda: cron("* * * * *", tz="Mars/Olympus"), ValueError, "tz: unknown time zone"),
        (lambda: cron("* * * * *", tz="../etc/passwd"), ValueError, "tz: unknown time zone"),
        (lambda: cron("* * * * *", tz=3), TypeError, "tz must be"),  # type: ignore[arg-type]
        (lambda: cron("* * * * *", day_or="yes"), TypeError, "day_or must be a bool"),  # type: ignore[arg-type]
        (lambda: solar("moonrise", latitude=0, longitude=0), ValueError, "sunrise, sunset"),
        (lambda: solar("Sunrise", latitude=0, longitude=0), ValueError, "unknown solar event"),
        (lambda: solar("sunrise", latitude=90.5, longitude=0), ValueError, "latitude"),
        (lambda: solar("sunrise", latitude=-91, longitude=0), ValueError, "latitude"),
        (lambda: solar("sunrise", latitude=0, longitude=180.1), ValueError, "longitude"),
        (lambda: solar("sunrise", latitude=0, longitude=float("nan")), ValueError, "longitude"),
        (lambda: solar("sunrise", latitude="51", longitude=0), TypeError, "latitude"),  # type: ignore[arg-type]
        (lambda: solar("sunrise", latitude=0, longitude=0, tz="Nowhere"), ValueError, "tz"),
        (lambda: solar(1, latitude=0, longitude=0), TypeError, "event must be a str"),  # type: ignore[arg-type]
    ],
)
def test_invalid_schedules_fail_when_built(build: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build()  # type: ignore[operator]


def test_next_after_needs_a_datetime() -> None:
    for schedule in (every(1), cron("* * * * *"), solar("noon", latitude=0, longitude=0)):
        with pytest.raises(TypeError, match="t must be a datetime"):
            schedule.next_after("2024-01-01")  # type: ignore[arg-type]


def test_no_occurrence_within_the_horizon_is_none() -> None:
    assert every(days=3650).next_after(datetime.max.replace(tzinfo=UTC)) is None
    only_2030 = cron("0 0 1 1 * 0 2030")  # 7 fields: seconds, year
    assert only_2030.next_after(datetime(2029, 6, 1, tzinfo=UTC)) == datetime(
        2030, 1, 1, tzinfo=UTC
    )
    assert only_2030.next_after(datetime(2030, 6, 1, tzinfo=UTC)) is None


# -- cron and daylight-saving time --------------------------------------------------------------


def test_naive_times_are_wall_times_in_the_schedule_zone() -> None:
    schedule = cron("0 7 * * *", tz="Europe/London")
    assert schedule.next_after(datetime(2024, 7, 1, 6, 59)) == datetime(
        2024, 7, 1, 7, tzinfo=LONDON
    )
    assert schedule.next_after(datetime(2024, 7, 1, 6, 30, tzinfo=UTC)) == datetime(
        2024, 7, 2, 7, tzinfo=LONDON
    )  # 06:30 UTC is 07:30 in London (BST)


def test_spring_forward_shifts_a_missing_wall_time_to_the_end_of_the_gap() -> None:
    # 2024-03-10: New York clocks jump from 02:00 to 03:00; 02:30 does not exist that day.
    schedule = cron("30 2 * * *", tz="America/New_York")
    times = run_times(
        schedule,
        datetime(2024, 3, 9, 12, tzinfo=NEW_YORK),
        datetime(2024, 3, 11, 12, tzinfo=NEW_YORK),
    )
    assert [t.isoformat() for t in times] == [
        "2024-03-10T03:00:00-04:00",  # runs once, at the first instant after the gap
        "2024-03-11T02:30:00-04:00",
    ]


def test_fall_back_runs_a_fixed_time_job_once() -> None:
    # 2024-11-03: New York clocks go back from 02:00 EDT to 01:00 EST; 01:30 happens twice.
    schedule = cron("30 1 * * *", tz="America/New_York")
    times = run_times(
        schedule,
        datetime(2024, 11, 2, 12, tzinfo=NEW_YORK),
        datetime(2024, 11, 4, 12, tzinfo=NEW_YORK),
    )
    assert [t.isoformat() for t in times] == [
        "2024-11-03T01:30:00-04:00",  # the first pass only
        "2024-11-04T01:30:00-05:00",
    ]
    # Asked from inside the repeated hour, it goes to the next day, not to the second 01:30.
    inside = datetime(2024, 11, 3, 1, 45, tzinfo=NEW_YORK)  # fold=0: the first 01:45
    assert schedule.next_after(inside) == datetime(2024, 11, 4, 1, 30, tzinfo=NEW_YORK)


def test_fall_back_in_london_and_with_a_half_hour_shift() -> None:
    london = run_times(
        cron("15 1 * * *", tz="Europe/London"),
        datetime(2024, 10, 26, tzinfo=LONDON),
        datetime(2024, 10, 28, tzinfo=LONDON),
    )
    assert len(london) == 2
    lord_howe = ZoneInfo("Australia/Lord_Howe")  # 2024-04-07: 02:00 becomes 01:30
    times = run_times(
        cron("45 1 * * *", tz=lord_howe),
        datetime(2024, 4, 6, 12, tzinfo=lord_howe),
        datetime(2024, 4, 8, 12, tzinfo=lord_howe),
    )
    assert [t.date() for t in times] == [date(2024, 4, 7), date(2024, 4, 8)]


def test_fall_back_keeps_every_hour_jobs_on_elapsed_time() -> None:
    start = datetime(2024, 11, 3, tzinfo=NEW_YORK)
    end = datetime(2024, 11, 4, tzinfo=NEW_YORK)
    hourly = run_times(cron("0 * * * *", tz="America/New_York"), start, end)
    assert len(hourly) == 25  # the day has 25 hours, each gets its run
    gaps = {b.astimezone(UTC) - a.astimezone(UTC) for a, b in itertools.pairwise(hourly)}
    assert gaps == {timedelta(hours=1)}
    fixed_hour = run_times(cron("*/30 1 * * *", tz="America/New_York"), start, end)
    assert [t.strftime("%H:%M%z") for t in fixed_hour] == ["01:00-0400", "01:30-0400"]


# -- solar and polar day/night ------------------------------------------------------------------


def test_london_sunrise_is_that_morning() -> None:
    schedule = solar("sunrise", latitude=51.5, longitude=-0.1, tz="Europe/London")
    found = schedule.next_after(datetime(2024, 12, 1, tzinfo=LONDON))
    assert found is not None
    assert found.tzinfo is LONDON
    assert found.date() == date(2024, 12, 1)
    assert 7 <= found.hour <= 8
    again = schedule.next_after(found)
    assert again is not None
    assert again.date() == date(2024, 12, 2)
    assert schedule.next_after(datetime(2024, 12, 1, 12, tzinfo=LONDON)) == again


def test_polar_night_skips_to_the_first_real_sunrise() -> None:
    tromso = solar("sunrise", latitude=69.65, longitude=18.96, tz="Europe/Oslo")
    assert tromso.occurrence_on(date(2024, 12, 21)) is None  # the sun stays below the horizon
    found = tromso.next_after(datetime(2024, 12, 1, tzinfo=OSLO))
    assert found is not None
    assert date(2025, 1, 10) <= found.date() <= date(2025, 1, 20)
    # No sunrise in between: every day from Dec 1 to the day before has none.
    day = date(2024, 12, 1)
    while day < found.date():
        assert tromso.occurrence_on(day) is None, day
        day += timedelta(days=1)


def test_midnight_sun_skips_to_the_first_real_sunset() -> None:
    tromso = solar("sunset", latitude=69.65, longitude=18.96, tz="Europe/Oslo")
    found = tromso.next_after(datetime(2024, 6, 1, tzinfo=OSLO))
    assert found is not None
    assert date(2024, 7, 15) <= found.date() <= date(2024, 7, 31)


def test_south_polar_night_and_the_poles_themselves() -> None:
    mcmurdo = solar("sunrise", latitude=-77.85, longitude=166.67, tz="Antarctica/McMurdo")
    found = mcmurdo.next_after(datetime(2024, 6, 1, tzinfo=UTC))
    assert found is not None
    assert found.month == 8
    for latitude in (90.0, -90.0, 89.999):
        for event in SOLAR_EVENTS:  # never raises; None when astral finds nothing in a year
            solar(event, latitude=latitude, longitude=0).next_after(datetime(2024, 3, 1))


# -- counting -----------------------------------------------------------------------------------


def test_occurrences_between() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    assert occurrences_between(every(10), start, start + timedelta(hours=1), limit=5) == 360
    assert occurrences_between(every(10), start, start, limit=5) == 0
    minutely = cron("* * * * *")
    assert occurrences_between(minutely, start, start + timedelta(minutes=30), limit=100) == 30
    assert occurrences_between(minutely, start, start + timedelta(days=1), limit=100) == 100
