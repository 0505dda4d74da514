"""Cron schedules: croniter's calendar maths on wall times, with our own time-zone handling.

croniter matches an expression against *naive wall times*; this module maps those wall times to
instants in the schedule's zone itself, so daylight-saving transitions follow one documented rule
(see :class:`CronSchedule`) and ``next_after`` stays monotonic and strictly after its argument in
every zone, including ones with 30-minute shifts (croniter's own aware mode is not, there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Final

from croniter import CroniterBadDateError, CroniterError, croniter

from ._specs import _aware, _utc, _zone

__all__ = ["CRON_HORIZON_YEARS", "CronSchedule", "cron"]

#: A cron schedule looks this many years ahead for its next match (croniter's own limit).
CRON_HORIZON_YEARS: Final = 50

_SCAN_STEP: Final = timedelta(days=7)  # offset changes are looked for at least this finely
_MAX_CROSSINGS: Final = 4 * CRON_HORIZON_YEARS  # transitions crossed by one next_after, at most
_TICK: Final = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron expression (croniter syntax: 5 fields, or 6/7 with seconds/year, or ``@daily``...)
    matched against the wall time of ``tz`` (UTC by default); ``day_or`` as in croniter.

    Daylight-saving time:

    * **Spring forward** (a wall time that does not exist that day, e.g. 02:30 in New York on
      the second Sunday of March): the occurrence moves to the first instant after the gap
      (03:00 local). It runs once that day, late; it is not skipped.
    * **Fall back** (a wall time that happens twice): an expression with specific hours runs
      once, at the first pass. An expression whose hour field is ``*`` (every hour) keeps
      running on elapsed time through both passes, so hourly jobs keep their cadence.

    ``next_after`` returns ``None`` if there is no match within :data:`CRON_HORIZON_YEARS` years
    (or before year 9999). An expression with no match at all is rejected when built.
    """

    expression: str
    tz: tzinfo = UTC
    day_or: bool = True
    _every_hour: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str):
            raise TypeError(f"expression must be a str, not {type(self.expression).__name__}")
        if not isinstance(self.day_or, bool):
            raise TypeError(f"day_or must be a bool, not {type(self.day_or).__name__}")
        object.__setattr__(self, "tz", _zone(self.tz))
        try:
            parsed = croniter(self.expression, datetime(2000, 1, 1), day_or=self.day_or)
        except (CroniterError, ValueError, TypeError, KeyError, IndexError) as exc:
            message = f"expression: invalid cron expression {self.expression!r}: {exc}"
            raise ValueError(message) from exc
        try:
            parsed.get_next(datetime)
        except (CroniterBadDateError, OverflowError) as exc:
            message = f"expression: cron expression {self.expression!r} never matches"
            raise ValueError(message) from exc
        object.__setattr__(self, "_every_hour", parsed.expanded[1] == ["*"])

    def next_after(self, t: datetime, /) -> datetime | None:
        try:
            return self._next_after(t)
        except (CroniterError, OverflowError):  # beyond the horizon or year 9999
            return None

    def _next_after(self, t: datetime) -> datetime | None:
        tz = self.tz
        low, inclusive = _utc(_aware(t, tz)), False  # the answer is > low (or >= if inclusive)
        if not self._every_hour:
            repeat_end = _second_pass_end(low, tz)
            if repeat_end is not None:  # inside a repeated hour: its wall times already ran
                low, inclusive = repeat_end, True
        for _ in range(_MAX_CROSSINGS):
            local = low.astimezone(tz)
            offset = local.utcoffset() or timedelta(0)
            wall = local.replace(tzinfo=None) - (_TICK if inclusive else timedelta(0))
            found_wall: datetime = croniter(self.expression, wall, day_or=self.day_or).get_next(
                datetime
            )
            found = (found_wall - offset).replace(tzinfo=UTC)  # if the offset holds until then
            change = _first_offset_change(tz, low, found, offset)
            if change is None:
                return found.astimezone(tz)
            new_offset = change.astimezone(tz).utcoffset() or timedelta(0)
            if new_offset > offset and found_wall < (change + new_offset).replace(tzinfo=None):
                return change.astimezone(tz)  # the wall time is in the gap: first instant after
            low, inclusive = change, True
            if new_offset < offset and not self._every_hour:
                low = change + (offset - new_offset)  # skip the repeated wall times
        return None


def _first_offset_change(
    tz: tzinfo, after: datetime, until: datetime, offset: timedelta
) -> datetime | None:
    """The first instant in ``(after, until]`` (UTC, to the second) where ``tz``'s UTC offset
    is no longer ``offset``, or ``None``. Looks every :data:`_SCAN_STEP` at least."""
    if isinstance(tz, timezone):
        return None  # a fixed offset never changes
    low = after
    while low < until:
        high = min(low + _SCAN_STEP, until)
        if high.astimezone(tz).utcoffset() != offset:
            lo, hi = math.floor(low.timestamp()), math.ceil(high.timestamp())
            while hi - lo > 1:  # offset(lo) == offset != offset(hi)
                mid = (lo + hi) // 2
                if datetime.fromtimestamp(mid, UTC).astimezone(tz).utcoffset() == offset:
                    lo = mid
                else:
                    hi = mid
            return datetime.fromtimestamp(hi, UTC)
        low = high
    return None


def _second_pass_end(instant: datetime, tz: tzinfo) -> datetime | None:
    """If ``instant`` (UTC) is in the second pass of a repeated (fall-back) wall time, the end of
    that second pass (UTC); else ``None``."""
    local = instant.astimezone(tz)
    wall = local.replace(tzinfo=None)
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if second <= first or instant != second:
        return None
    overlap = second - first
    later = local.utcoffset()
    # The switch to the later offset is in (instant - overlap, instant]: find it (to the second).
    lo, hi = math.floor(first.timestamp()), math.ceil(instant.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == later:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC) + overlap


def cron(expression: str, *, tz: tzinfo | str | None = None, day_or: bool = True) -> CronSchedule:
    """A :class:`CronSchedule`; ``ValueError`` for a bad expression or time zone."""
    return CronSchedule(expression, _zone(tz), day_or)
