"""Schedule specifications (sans-IO): the Schedule protocol, shared helpers, interval schedules.

Everything here is sans-IO: no clock is read, nothing sleeps. A schedule is a small frozen value
that answers one question, :meth:`next_after`: the first occurrence *strictly after* a given
instant. The runner (:mod:`synapse_p2p.schedules._runner`) supplies "now" from the wall clock.

All validation happens when a schedule is built: a bad value raises :class:`ValueError`, a value of
the wrong type :class:`TypeError`, and the message names the parameter. ``next_after`` itself never
raises for a valid schedule and an aware or naive :class:`~datetime.datetime`; it returns ``None``
when there is no occurrence within the schedule's horizon (documented on each class).

Time zones: ``tz`` is an IANA name (``"Europe/London"``), a :class:`~datetime.tzinfo` or ``None``
(UTC). A naive ``t`` given to ``next_after`` is read as a wall time in the schedule's zone (UTC for
intervals); the result is always aware, in the schedule's zone (in ``t``'s zone for intervals).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from numbers import Real
from typing import Final, Protocol, cast, runtime_checkable
from zoneinfo import ZoneInfo

from .._validate import check_finite

__all__ = [
    "IntervalSchedule",
    "Schedule",
    "as_schedule",
    "every",
    "occurrences_between",
]

_MIN_INTERVAL: Final = 1e-6  # datetime resolution: a shorter interval would not move time on
_MAX_INTERVAL: Final = timedelta.max.total_seconds()


@runtime_checkable
class Schedule(Protocol):
    """Anything with ``next_after``; :func:`every`, :func:`cron` and :func:`solar` build one."""

    def next_after(self, t: datetime, /) -> datetime | None:
        """The first occurrence strictly after ``t`` (aware), or ``None`` if there is none."""
        ...


# -- validation helpers -------------------------------------------------------------------------


def _zone(tz: object, name: str = "tz") -> tzinfo:
    if tz is None:
        return UTC
    if isinstance(tz, str):
        try:
            return ZoneInfo(tz)
        except (ValueError, KeyError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"{name}: unknown time zone {tz!r}") from exc
    if isinstance(tz, tzinfo):
        try:
            usable = datetime(2000, 1, 1, tzinfo=tz).utcoffset() is not None
        except Exception as exc:
            raise ValueError(f"{name}: {tz!r} is not a usable time zone") from exc
        if not usable:
            raise ValueError(f"{name}: {tz!r} gives no UTC offset")
        return tz
    raise TypeError(f"{name} must be a time zone name, a tzinfo or None, not {type(tz).__name__}")


def _utc(t: datetime) -> datetime:
    """``t`` in UTC (a naive ``t`` is UTC). Instants are compared and shifted in UTC because
    Python compares and adds datetimes that share a tzinfo by their wall time."""
    return t.replace(tzinfo=UTC) if t.utcoffset() is None else t.astimezone(UTC)


def _aware(t: object, tz: tzinfo) -> datetime:
    """``t`` as an aware datetime in ``tz``; a naive ``t`` is a wall time in ``tz``."""
    if not isinstance(t, datetime):
        raise TypeError(f"t must be a datetime, not {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        t = t.replace(tzinfo=tz)
    return t.astimezone(tz)


# -- interval -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntervalSchedule:
    """Every ``seconds`` seconds of elapsed time: ``next_after(t)`` is exactly ``t + seconds``.

    ``seconds`` must be finite, at least one microsecond and at most ``timedelta.max``.
    ``next_after`` returns ``None`` only when the result would pass ``datetime.max``.
    """

    seconds: float

    def __post_init__(self) -> None:
        seconds = check_finite("seconds", self.seconds)
        if seconds <= 0:
            raise ValueError(f"interval schedule must be greater than 0 seconds, got {seconds!r}")
        if not _MIN_INTERVAL <= seconds <= _MAX_INTERVAL:
            raise ValueError(f"seconds must be between 1e-06 and {_MAX_INTERVAL:g}, got {seconds}")
        object.__setattr__(self, "seconds", seconds)

    def next_after(self, t: datetime, /) -> datetime | None:
        if not isinstance(t, datetime):
            raise TypeError(f"t must be a datetime, not {type(t).__name__}")
        zone = t.tzinfo if t.utcoffset() is not None else UTC
        try:  # elapsed time: add in UTC (aware arithmetic in a zone would use wall time)
            return (_utc(t) + timedelta(seconds=self.seconds)).astimezone(zone)
        except OverflowError:
            return None


def every(
    seconds: float = 0, minutes: float = 0, hours: float = 0, days: float = 0
) -> IntervalSchedule:
    """An :class:`IntervalSchedule` of ``seconds + 60*minutes + 3600*hours + 86400*days``.

    Each part must be a finite number >= 0 and the total must be > 0 (``ValueError``).
    """
    total = 0.0
    for name, value, unit in (
        ("seconds", seconds, 1),
        ("minutes", minutes, 60),
        ("hours", hours, 3600),
        ("days", days, 86400),
    ):
        number = check_finite(name, value)
        if number < 0:
            raise ValueError(f"{name} must not be negative, got {value!r}")
        total += number * unit
    if total <= 0:
        raise ValueError("interval schedule must be greater than 0 seconds")
    return IntervalSchedule(total)


# -- helpers for runners ------------------------------------------------------------------------


def as_schedule(value: object) -> Schedule:
    """A schedule from what ``@node.periodic`` accepts: a number of seconds or a schedule."""
    if isinstance(value, bool):
        raise TypeError("schedule must be a number of seconds or a schedule, not bool")
    if isinstance(value, Real):
        return every(seconds=float(value))
    if callable(getattr(value, "next_after", None)):
        return cast(Schedule, value)
    raise TypeError(
        "schedule must be a number of seconds or a schedule such as every(), cron() or "
        f"solar(), not {type(value).__name__}"
    )


def occurrences_between(schedule: Schedule, after: datetime, until: datetime, limit: int) -> int:
    """How many occurrences fall in ``(after, until]``: exact for an interval schedule, else
    counting at most ``limit`` (each step is a ``next_after`` call)."""
    after, until = _utc(after), _utc(until)
    if until <= after:
        return 0
    if isinstance(schedule, IntervalSchedule):  # exact, whatever ``limit``
        return int((until - after).total_seconds() // schedule.seconds)
    count = 0
    when = after
    while count < limit:
        found = schedule.next_after(when)
        if found is None or _utc(found) > until or _utc(found) <= _utc(when):
            break
        count, when = count + 1, found
    return count
