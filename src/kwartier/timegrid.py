"""The quarter-hour grid: UTC interval starts, local days and months, DST-safe conversions.

Every interval is named by its start in UTC and covers ``[start, start + 15 min)``. The local
calendar (days, months, billing periods) is a time zone, ``Europe/Amsterdam`` unless said
otherwise. A local day has 92 (spring forward), 96 or 100 (fall back) quarters.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

DEFAULT_TZ = "Europe/Amsterdam"
QUARTER = timedelta(minutes=15)
HOUR = timedelta(hours=1)

#: ISO 8601 durations used as resolution labels.
PT15M = "PT15M"
PT60M = "PT60M"
RESOLUTIONS: dict[str, timedelta] = {PT15M: QUARTER, PT60M: HOUR}


class TimeGridError(ValueError):
    """A timestamp that is not where the grid needs it (naive, off the quarter grid, ...)."""


def resolution_of(label: str) -> timedelta:
    """The length of an interval of resolution ``label`` (``PT15M`` or ``PT60M``)."""
    try:
        return RESOLUTIONS[label]
    except KeyError:
        raise TimeGridError(f"unknown resolution {label!r}; expected one of {sorted(RESOLUTIONS)}") from None


def require_aware(ts: datetime, what: str = "timestamp") -> datetime:
    """Return ``ts`` in UTC; a naive timestamp is an error, never silently taken as local or UTC."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise TimeGridError(f"{what} {ts.isoformat()} has no time zone; give an offset or 'Z'")
    return ts.astimezone(UTC)


def is_on_grid(ts: datetime, step: timedelta = QUARTER) -> bool:
    """True when the aware timestamp ``ts`` starts an interval of length ``step`` (in UTC)."""
    utc = require_aware(ts)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return (utc - epoch) % step == timedelta(0)


def floor_to_grid(ts: datetime, step: timedelta = QUARTER) -> datetime:
    """The start of the interval of length ``step`` that contains the aware timestamp ``ts``."""
    utc = require_aware(ts)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return utc - (utc - epoch) % step


def local_day_bounds(day: date, tz: str = DEFAULT_TZ) -> tuple[datetime, datetime]:
    """UTC start (inclusive) and end (exclusive) of the local calendar day ``day``."""
    zone = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).astimezone(UTC)
    return start, end


def local_period_bounds(first: date, end_exclusive: date, tz: str = DEFAULT_TZ) -> tuple[datetime, datetime]:
    """UTC bounds of the local days ``[first, end_exclusive)``."""
    if end_exclusive <= first:
        raise TimeGridError(f"empty period: {first} .. {end_exclusive} (the end is exclusive)")
    return local_day_bounds(first, tz)[0], local_day_bounds(end_exclusive, tz)[0]


def month_bounds(year: int, month: int, tz: str = DEFAULT_TZ) -> tuple[datetime, datetime]:
    """UTC bounds of the local calendar month ``year-month``."""
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return local_period_bounds(date(year, month, 1), nxt, tz)


def quarters_in_local_day(day: date, tz: str = DEFAULT_TZ) -> int:
    """How many quarters the local day has: 92, 96 or 100 in zones with a one-hour DST shift."""
    start, end = local_day_bounds(day, tz)
    return (end - start) // QUARTER


def iter_interval_starts(start: datetime, end: datetime, step: timedelta = QUARTER) -> Iterator[datetime]:
    """UTC interval starts in ``[start, end)``; both bounds must lie on the grid."""
    s, e = require_aware(start, "start"), require_aware(end, "end")
    for label, ts in (("start", s), ("end", e)):
        if not is_on_grid(ts, step):
            raise TimeGridError(f"{label} {ts.isoformat()} is not on the {step} grid")
    t = s
    while t < e:
        yield t
        t += step


def interval_starts(start: datetime, end: datetime, step: timedelta = QUARTER) -> pl.Series:
    """UTC interval starts in ``[start, end)`` as a polars ``Datetime(us, UTC)`` series."""
    s, e = require_aware(start, "start"), require_aware(end, "end")
    for label, ts in (("start", s), ("end", e)):
        if not is_on_grid(ts, step):
            raise TimeGridError(f"{label} {ts.isoformat()} is not on the {step} grid")
    if e <= s:
        return pl.Series("interval_start", [], dtype=pl.Datetime("us", "UTC"))
    return pl.datetime_range(s, e - step, step, eager=True, time_unit="us", time_zone="UTC").alias(
        "interval_start"
    )


def local_day_quarters(day: date, tz: str = DEFAULT_TZ) -> pl.Series:
    """The UTC starts of every quarter of the local day ``day``, in order."""
    return interval_starts(*local_day_bounds(day, tz))


def local_date_of(ts: datetime, tz: str = DEFAULT_TZ) -> date:
    """The local calendar date on which the interval starting at ``ts`` lies."""
    return require_aware(ts).astimezone(ZoneInfo(tz)).date()


@dataclass(frozen=True)
class Localized:
    """The result of placing naive local wall-clock times on the UTC line.

    ``utc`` has a null where the wall-clock time does not exist (the spring-forward hour).
    ``phantom`` marks those rows; ``second_of_repeat`` marks rows read as the second occurrence
    of a repeated autumn wall-clock time; ``extra_repeat`` marks a third (or later) occurrence,
    which no clock can produce and is a duplicate.
    """

    utc: pl.Series
    phantom: pl.Series
    second_of_repeat: pl.Series
    extra_repeat: pl.Series


def localize_naive(naive: pl.Series, tz: str = DEFAULT_TZ) -> Localized:
    """Place naive local timestamps on UTC, resolving DST by the order of the rows.

    Rule: a wall-clock time that occurs twice on the fall-back night is read as the first
    occurrence (summer time) the first time it appears in the file and as the second
    (winter time) the second time. Files that list the repeated hour once thus yield the
    summer-time hour, and the winter-time hour shows up as missing. A wall-clock time that
    does not exist (spring forward) maps to null and is flagged as phantom.
    """
    if naive.dtype != pl.Datetime or getattr(naive.dtype, "time_zone", None) is not None:
        raise TimeGridError(f"localize_naive needs naive datetimes, got {naive.dtype}")
    frame = pl.DataFrame({"naive": naive})
    frame = frame.with_columns(
        early=pl.col("naive").dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null"),
        late=pl.col("naive").dt.replace_time_zone(tz, ambiguous="latest", non_existent="null"),
        occurrence=pl.int_range(pl.len()).over("naive"),
    )
    ambiguous = pl.col("early") != pl.col("late")
    frame = frame.with_columns(
        utc=pl.when(ambiguous & (pl.col("occurrence") >= 1))
        .then(pl.col("late"))
        .otherwise(pl.col("early"))
        .dt.convert_time_zone("UTC"),
        phantom=pl.col("early").is_null() & pl.col("naive").is_not_null(),
        second=(ambiguous & (pl.col("occurrence") == 1)).fill_null(False),
        extra=(ambiguous & (pl.col("occurrence") >= 2)).fill_null(False),
    )
    return Localized(
        utc=frame["utc"].alias(naive.name),
        phantom=frame["phantom"],
        second_of_repeat=frame["second"],
        extra_repeat=frame["extra"],
    )


def missing_starts(present: pl.Series, start: datetime, end: datetime, step: timedelta = QUARTER) -> pl.Series:
    """Interval starts in ``[start, end)`` on the ``step`` grid that are not in ``present``."""
    expected = interval_starts(start, end, step)
    return expected.filter(~expected.is_in(present.cast(pl.Datetime("us", "UTC")).implode()))


def format_local(ts: datetime, tz: str = DEFAULT_TZ) -> str:
    """A human label such as ``2025-10-26 02:00 (+01:00)`` for messages."""
    local = require_aware(ts).astimezone(ZoneInfo(tz))
    off = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} ({off[:3]}:{off[3:]})"


def iso_utc(ts: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``: ``2025-01-01T00:00:00Z``."""
    if ts is None:
        return None
    return require_aware(ts).strftime("%Y-%m-%dT%H:%M:%SZ")
