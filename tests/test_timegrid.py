"""The quarter-hour grid: local days of 92/96/100 quarters, DST-safe conversions (hand-checked + properties)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kwartier.timegrid import (
    QUARTER,
    TimeGridError,
    floor_to_grid,
    format_local,
    interval_starts,
    is_on_grid,
    local_date_of,
    local_day_bounds,
    local_day_quarters,
    localize_naive,
    missing_starts,
    month_bounds,
    quarters_in_local_day,
)

AMS = "Europe/Amsterdam"
days = st.dates(min_value=date(1990, 1, 1), max_value=date(2060, 12, 31))
zones = st.sampled_from(["Europe/Amsterdam", "Europe/Brussels", "Europe/Paris", "Europe/London", "UTC"])


@pytest.mark.parametrize(
    ("day", "n"),
    [(date(2025, 3, 30), 92), (date(2025, 10, 26), 100), (date(2025, 6, 1), 96), (date(2024, 3, 31), 92),
     (date(2023, 10, 29), 100), (date(2026, 12, 31), 96)],
)
def test_quarters_per_local_day(day, n):
    assert quarters_in_local_day(day, AMS) == n
    assert local_day_quarters(day, AMS).len() == n


def test_spring_forward_day_starts_and_ends_in_the_right_utc_hours():
    start, end = local_day_bounds(date(2025, 3, 30), AMS)
    assert start == datetime(2025, 3, 29, 23, tzinfo=UTC)
    assert end == datetime(2025, 3, 30, 22, tzinfo=UTC)


def test_month_of_october_2025_has_the_extra_hour():
    start, end = month_bounds(2025, 10, AMS)
    assert (end - start) // QUARTER == 31 * 96 + 4
    start, end = month_bounds(2025, 12, AMS)
    assert (start, end) == (datetime(2025, 11, 30, 23, tzinfo=UTC), datetime(2025, 12, 31, 23, tzinfo=UTC))


def test_naive_timestamps_are_refused():
    with pytest.raises(TimeGridError, match="no time zone"):
        floor_to_grid(datetime(2025, 1, 1, 12, 7))


def test_floor_and_grid():
    t = datetime(2025, 1, 1, 12, 7, 59, tzinfo=UTC)
    assert floor_to_grid(t) == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert is_on_grid(datetime(2025, 1, 1, 12, 45, tzinfo=UTC))
    assert not is_on_grid(datetime(2025, 1, 1, 12, 46, tzinfo=UTC))
    with pytest.raises(TimeGridError, match="not on the"):
        interval_starts(t, t + timedelta(hours=1))


def test_localize_reads_the_repeated_autumn_hour_by_row_order():
    naive = pl.Series(["2025-10-26 01:45", "2025-10-26 02:00", "2025-10-26 02:45", "2025-10-26 02:00",
                       "2025-10-26 02:00", "2025-10-26 03:00", "2025-03-30 02:30"]).str.to_datetime()
    loc = localize_naive(naive, AMS)
    utc = loc.utc.to_list()
    assert utc[0] == datetime(2025, 10, 25, 23, 45, tzinfo=UTC)
    assert utc[1] == datetime(2025, 10, 26, 0, 0, tzinfo=UTC)  # first 02:00 is CEST
    assert utc[3] == datetime(2025, 10, 26, 1, 0, tzinfo=UTC)  # second 02:00 is CET
    assert loc.second_of_repeat.to_list() == [False, False, False, True, False, False, False]
    assert loc.extra_repeat.to_list() == [False, False, False, False, True, False, False]
    assert utc[6] is None and loc.phantom.to_list()[6]


def test_missing_starts_and_labels():
    start = datetime(2025, 10, 26, 0, tzinfo=UTC)
    present = interval_starts(start, start + timedelta(hours=1)).gather([0, 1, 3])
    missing = missing_starts(present, start, start + timedelta(hours=1))
    assert missing.to_list() == [start + 2 * QUARTER]
    assert format_local(datetime(2025, 10, 26, 1, tzinfo=UTC)) == "2025-10-26 02:00 (+01:00)"


@settings(max_examples=300, deadline=None)
@given(day=days, tz=zones)
def test_every_local_day_is_covered_once_by_its_quarters(day, tz):
    quarters = local_day_quarters(day, tz)
    start, end = local_day_bounds(day, tz)
    assert quarters.len() in (92, 96, 100)
    assert quarters[0] == start and quarters[-1] + QUARTER == end
    assert quarters.diff().drop_nulls().unique().to_list() in ([], [QUARTER])
    assert {local_date_of(t, tz) for t in quarters.to_list()} == {day}
    # The next day starts exactly where this one ends: days tile the line with no gap or overlap.
    assert local_day_bounds(day + timedelta(days=1), tz)[0] == end


@settings(max_examples=300, deadline=None)
@given(
    instant=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)),
    tz=zones,
)
def test_utc_local_round_trip_over_dst(instant, tz):
    q = floor_to_grid(instant)
    local = q.astimezone(ZoneInfo(tz))
    naive = pl.Series([local.replace(tzinfo=None)])
    loc = localize_naive(naive, tz)
    back = loc.utc[0]
    if local.fold == 1:  # the second occurrence of a repeated wall-clock time needs its row order
        assert back == q - timedelta(hours=1)
        loc2 = localize_naive(pl.Series([local.replace(tzinfo=None)] * 2), tz)
        assert loc2.utc[1] == q
    else:
        assert back == q
    assert floor_to_grid(q) == q and is_on_grid(q)
