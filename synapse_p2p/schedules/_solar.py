"""Solar schedules: sunrise, sunset, noon and the twilights, computed with astral (sans-IO)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Final

from astral import Observer
from astral import sun as _sun

from .._validate import check_finite
from ._specs import _aware, _utc, _zone

__all__ = ["SOLAR_EVENTS", "SOLAR_HORIZON_DAYS", "SolarSchedule", "solar"]

#: A solar schedule looks this many days ahead for its next event (polar nights last < 190 days).
SOLAR_HORIZON_DAYS: Final = 370

_Finder = Callable[[Observer, date, tzinfo], datetime]


def _depressed(fn: Callable[..., datetime], depression: float) -> _Finder:
    return lambda obs, day, tz: fn(obs, date=day, depression=depression, tzinfo=tz)


def _plain(fn: Callable[..., datetime]) -> _Finder:
    return lambda obs, day, tz: fn(obs, date=day, tzinfo=tz)


_CANONICAL: Final[dict[str, _Finder]] = {
    "sunrise": _plain(_sun.sunrise),
    "sunset": _plain(_sun.sunset),
    "solar_noon": _plain(_sun.noon),
    "civil_twilight_begin": _depressed(_sun.dawn, 6.0),
    "civil_twilight_end": _depressed(_sun.dusk, 6.0),
    "nautical_twilight_begin": _depressed(_sun.dawn, 12.0),
    "nautical_twilight_end": _depressed(_sun.dusk, 12.0),
    "astronomical_twilight_begin": _depressed(_sun.dawn, 18.0),
    "astronomical_twilight_end": _depressed(_sun.dusk, 18.0),
}
_ALIASES: Final[dict[str, str]] = {
    "noon": "solar_noon",
    "civil_dawn": "civil_twilight_begin",
    "dawn": "civil_twilight_begin",
    "civil_dusk": "civil_twilight_end",
    "dusk": "civil_twilight_end",
    "nautical_dawn": "nautical_twilight_begin",
    "nautical_dusk": "nautical_twilight_end",
    "astronomical_dawn": "astronomical_twilight_begin",
    "astronomical_dusk": "astronomical_twilight_end",
}
#: Every event name :func:`solar` accepts (canonical names first, then aliases).
SOLAR_EVENTS: Final[tuple[str, ...]] = (*_CANONICAL, *_ALIASES)


@dataclass(frozen=True, slots=True)
class SolarSchedule:
    """The sun's ``event`` (see :data:`SOLAR_EVENTS`) seen from ``latitude``/``longitude``.

    The calendar day of an event is the day in ``tz`` (UTC by default), which is also the zone
    of the returned datetimes. Times come from astral (sea level, no refraction tweaks).

    Polar day and night: on days when the sun never crosses the event's angle (no sunrise in
    Tromsø in December), there is no event; ``next_after`` skips those days and returns the
    next real occurrence, scanning up to :data:`SOLAR_HORIZON_DAYS` days ahead, and returns
    ``None`` only if there is none in that span. It never raises for a polar location.
    """

    event: str
    latitude: float
    longitude: float
    tz: tzinfo = UTC

    def __post_init__(self) -> None:
        if not isinstance(self.event, str):
            raise TypeError(f"event must be a str, not {type(self.event).__name__}")
        if self.event not in _CANONICAL and self.event not in _ALIASES:
            raise ValueError(
                f"event: unknown solar event {self.event!r}; expected one of "
                + ", ".join(SOLAR_EVENTS)
            )
        latitude = check_finite("latitude", self.latitude)
        longitude = check_finite("longitude", self.longitude)
        if not -90 <= latitude <= 90:
            raise ValueError(f"latitude must be between -90 and 90, got {self.latitude!r}")
        if not -180 <= longitude <= 180:
            raise ValueError(f"longitude must be between -180 and 180, got {self.longitude!r}")
        object.__setattr__(self, "latitude", latitude)
        object.__setattr__(self, "longitude", longitude)
        object.__setattr__(self, "tz", _zone(self.tz))

    def occurrence_on(self, day: date) -> datetime | None:
        """The event on ``day`` (a calendar day in ``tz``), or ``None`` if the sun does not
        reach the event's angle that day (polar day or night)."""
        finder = _CANONICAL[_ALIASES.get(self.event, self.event)]
        try:
            return finder(Observer(self.latitude, self.longitude), day, self.tz)
        except (ValueError, ArithmeticError):
            return None

    def next_after(self, t: datetime, /) -> datetime | None:
        base = _aware(t, self.tz)
        instant = _utc(base)
        best: datetime | None = None
        start = base.date() - timedelta(days=1)  # astral may hand back a neighbouring day's event
        for offset in range(SOLAR_HORIZON_DAYS + 2):
            try:
                day = start + timedelta(days=offset)
            except OverflowError:
                break
            found = self.occurrence_on(day)
            if found is not None:
                found = _utc(found)
            if found is not None and found > instant and (best is None or found < best):
                best = found
            elif best is not None:
                break  # one more day was looked at after the first hit: the earliest is known
        return None if best is None else best.astimezone(self.tz)


def solar(
    event: str, *, latitude: float, longitude: float, tz: tzinfo | str | None = None
) -> SolarSchedule:
    """A :class:`SolarSchedule`; ``ValueError`` for an unknown event (the message lists the
    valid names), a latitude outside [-90, 90], a longitude outside [-180, 180] or a bad zone."""
    return SolarSchedule(event, latitude, longitude, _zone(tz))
