"""Property tests of the sans-IO schedule maths: strictly after, monotonic, matches the oracle."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from astral import Observer
from astral.sun import dawn, dusk, noon, sunrise, sunset
from croniter import croniter
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from synapse_p2p.schedules import SOLAR_EVENTS, cron, every, solar

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/Santiago",  # DST changes around midnight
    "Asia/Kolkata",
    "Pacific/Chatham",
    "Antarctica/Troll",  # 2-hour DST shift
    "America/Havana",  # midnight does not exist on spring-forward day
    "Africa/Casablanca",  # DST suspended for Ramadan: two transitions a month apart
    "Europe/Dublin",  # "negative" DST in tzdata
]

# Solar scans call astral hundreds of times: no per-example deadline.
quick = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150)
slow = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100)


def utc(t: datetime) -> datetime:
    """Instants must be compared in UTC: Python compares datetimes sharing a tzinfo by wall time."""
    return t.astimezone(UTC)


naive_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 12, 31))


@st.composite
def aware_times(draw: st.DrawFn) -> datetime:
    naive = draw(naive_times)
    zone = ZoneInfo(draw(st.sampled_from(ZONES)))
    return naive.replace(tzinfo=zone, fold=draw(st.integers(0, 1)))


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    return st.one_of(
        st.just("*"),
        value.map(str),
        st.integers(1, max(1, (high - low) // 2)).map(lambda step: f"*/{step}"),
        st.tuples(value, value).map(lambda ab: f"{min(ab)}-{max(ab)}"),
        st.lists(value, min_size=1, max_size=3, unique=True).map(
            lambda xs: ",".join(map(str, sorted(xs)))
        ),
    )


cron_expressions = st.tuples(
    _field(0, 59), _field(0, 23), _field(1, 28), _field(1, 12), _field(0, 6)
).map(" ".join)
# Expressions that hit the small hours, where daylight-saving transitions happen.
night_expressions = st.tuples(_field(0, 59), _field(0, 3)).map(lambda mh: f"{mh[0]} {mh[1]} * * *")


@functools.cache
def _transitions(zone: str) -> list[datetime]:
    """UTC instants (to the minute) where ``zone`` changes its offset, 2020-2030."""
    tz = ZoneInfo(zone)
    found = []
    day = datetime(2020, 1, 1, tzinfo=UTC)
    while day.year < 2031:
        following = day + timedelta(days=1)
        if day.astimezone(tz).utcoffset() != following.astimezone(tz).utcoffset():
            lo, hi = day, following
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
                    lo = mid
                else:
                    hi = mid
            found.append(hi.replace(second=0, microsecond=0))
        day = following
    return found


@st.composite
def near_transitions(draw: st.DrawFn) -> datetime:
    """An aware time within a few hours of a daylight-saving transition of a DST zone."""
    zone = draw(st.sampled_from([z for z in ZONES if _transitions(z)]))
    instant = draw(st.sampled_from(_transitions(zone)))
    shift = draw(st.integers(-4 * 3600, 4 * 3600))
    return (instant + timedelta(seconds=shift)).astimezone(ZoneInfo(zone))


# -- every() ------------------------------------------------------------------------------------


@quick
@given(
    seconds=st.floats(min_value=1e-3, max_value=1e7, allow_nan=False),
    t=st.one_of(naive_times, aware_times()),
)
def test_every_is_exactly_t_plus_interval(seconds: float, t: datetime) -> None:
    schedule = every(seconds=seconds)
    found = schedule.next_after(t)
    assert found is not None
    base = t.replace(tzinfo=UTC) if t.tzinfo is None else t
    assert utc(found) == utc(base) + timedelta(seconds=seconds)
    assert utc(found) > utc(base)


@quick
@given(seconds=st.floats(0.5, 1e6), t1=aware_times(), t2=aware_times())
def test_every_is_monotonic(seconds: float, t1: datetime, t2: datetime) -> None:
    t1, t2 = sorted((t1, t2), key=utc)
    first, second = every(seconds).next_after(t1), every(seconds).next_after(t2)
    assert first is not None
    assert second is not None
    assert utc(first) <= utc(second)


# -- cron() -------------------------------------------------------------------------------------


def _valid(expression: str) -> bool:
    try:
        cron(expression)
    except ValueError:
        return False
    return True


def instants_of(wall: datetime, tz: ZoneInfo, every_hour: bool) -> set[datetime]:
    """Model of the documented rule: the UTC instants at which a matching wall time runs."""

    def exists(w: datetime, fold: int) -> bool:
        return utc(w.replace(tzinfo=tz, fold=fold)).astimezone(tz).replace(tzinfo=None) == w

    if not exists(wall, 0) and not exists(wall, 1):  # in a spring-forward gap
        probe = wall.replace(second=0, microsecond=0)
        while not exists(probe, 0):
            probe += timedelta(minutes=1)
        return {utc(probe.replace(tzinfo=tz))}  # the first wall time after the gap
    first, second = utc(wall.replace(tzinfo=tz, fold=0)), utc(wall.replace(tzinfo=tz, fold=1))
    return {first, second} if every_hour else {min(first, second)}


def model_next(expression: str, zone: str, t: datetime) -> datetime:
    """Brute force: every croniter wall-time match near t, mapped to instants by the model."""
    tz = ZoneInfo(zone)
    every_hour = croniter(expression).expanded[1] == ["*"]
    margin = timedelta(hours=3)  # more than any offset change of ZONES
    walls = croniter(expression, t.astimezone(tz).replace(tzinfo=None) - margin)
    best: datetime | None = None
    while True:
        wall = walls.get_next(datetime)
        if best is not None and wall > best.astimezone(tz).replace(tzinfo=None) + margin:
            return best
        for instant in instants_of(wall, tz, every_hour):
            if instant > utc(t) and (best is None or instant < best):
                best = instant


def check_against_model(expression: str, zone: str, t: datetime) -> None:
    """next_after is strictly after t and is the model's answer."""
    found = cron(expression, tz=zone).next_after(t)
    assert found is not None
    assert utc(found) > utc(t)
    assert utc(found) == model_next(expression, zone, t)
    assert found.tzinfo == ZoneInfo(zone)


def check_monotonic(expression: str, zone: str, t1: datetime, delta: timedelta) -> None:
    schedule = cron(expression, tz=zone)
    t2 = (utc(t1) + delta).astimezone(t1.tzinfo)
    first, second = schedule.next_after(t1), schedule.next_after(t2)
    assert first is not None
    assert second is not None
    assert utc(first) <= utc(second)
    # Iterating next_after never goes backwards and never returns the same instant twice.
    assert utc(schedule.next_after(first) or first) > utc(first)


@quick
@given(expression=cron_expressions, zone=st.sampled_from(ZONES), t=aware_times())
def test_cron_is_strictly_after_and_matches_the_model(
    expression: str, zone: str, t: datetime
) -> None:
    assume(_valid(expression))
    check_against_model(expression, zone, t)


@quick
@given(
    expression=cron_expressions,
    zone=st.sampled_from(ZONES),
    t1=aware_times(),
    delta=st.one_of(
        st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=3)),
        st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
    ),
)
def test_cron_is_monotonic(expression: str, zone: str, t1: datetime, delta: timedelta) -> None:
    assume(_valid(expression))
    check_monotonic(expression, zone, t1, delta)


@quick
@given(
    expression=st.one_of(night_expressions, cron_expressions),
    t=near_transitions(),
    delta=st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=3)),
)
def test_cron_around_dst_transitions(expression: str, t: datetime, delta: timedelta) -> None:
    assume(_valid(expression))
    check_against_model(expression, str(t.tzinfo), t)
    check_monotonic(expression, str(t.tzinfo), t, delta)


@quick
@given(expression=cron_expressions, t=naive_times, offset=st.integers(-14 * 60, 14 * 60))
def test_cron_equals_croniter_without_dst(expression: str, t: datetime, offset: int) -> None:
    assume(_valid(expression))
    zone = timezone(timedelta(minutes=offset))
    found = cron(expression, tz=zone).next_after(t)  # naive: a wall time in the schedule's zone
    expected = croniter(expression, t.replace(tzinfo=zone)).get_next(datetime)
    assert found == expected
    assert found is not None
    assert found.tzinfo == zone


# -- solar() ------------------------------------------------------------------------------------

_ORACLE = {
    "sunrise": lambda o, d, tz: sunrise(o, date=d, tzinfo=tz),
    "sunset": lambda o, d, tz: sunset(o, date=d, tzinfo=tz),
    "noon": lambda o, d, tz: noon(o, date=d, tzinfo=tz),
    "dawn": lambda o, d, tz: dawn(o, date=d, depression=6, tzinfo=tz),
    "dusk": lambda o, d, tz: dusk(o, date=d, depression=6, tzinfo=tz),
    "nautical_dawn": lambda o, d, tz: dawn(o, date=d, depression=12, tzinfo=tz),
    "astronomical_dusk": lambda o, d, tz: dusk(o, date=d, depression=18, tzinfo=tz),
}

latitudes = st.one_of(st.floats(-60, 60), st.floats(-89, 89), st.sampled_from([69.65, -77.8, 78.2]))
longitudes = st.floats(-180, 180)


def _astral_next(event: str, lat: float, lon: float, zone: str, t: datetime) -> datetime | None:
    """Straight from astral: the earliest event strictly after t over the next 372 days."""
    tz = ZoneInfo(zone)
    observer = Observer(lat, lon)
    day = t.astimezone(tz).date() - timedelta(days=1)
    found = []
    for offset in range(372):
        try:
            when = _ORACLE[event](observer, day + timedelta(days=offset), tz)
        except ValueError:
            continue
        if utc(when) > utc(t):
            found.append(utc(when))
            if len(found) >= 3:
                break
    return min(found) if found else None


@given(
    event=st.sampled_from(sorted(_ORACLE)),
    lat=latitudes,
    lon=longitudes,
    zone=st.sampled_from(ZONES),
    t=aware_times(),
)
@slow
def test_solar_is_strictly_after_and_matches_astral(
    event: str, lat: float, lon: float, zone: str, t: datetime
) -> None:
    found = solar(event, latitude=lat, longitude=lon, tz=zone).next_after(t)
    expected = _astral_next(event, lat, lon, zone, t)
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert utc(found) > utc(t)
    assert utc(found) == expected
    assert found.tzinfo == ZoneInfo(zone)


@given(
    event=st.sampled_from(SOLAR_EVENTS),
    lat=latitudes,
    lon=longitudes,
    zone=st.sampled_from(ZONES),
    t1=aware_times(),
    delta=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
)
@slow
def test_solar_is_monotonic(
    event: str, lat: float, lon: float, zone: str, t1: datetime, delta: timedelta
) -> None:
    schedule = solar(event, latitude=lat, longitude=lon, tz=zone)
    first = schedule.next_after(t1)
    second = schedule.next_after(utc(t1) + delta)
    if first is None or second is None:
        return  # near a pole astral may find no event within the horizon at all
    assert utc(first) <= utc(second)
