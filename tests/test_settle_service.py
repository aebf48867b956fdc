"""Settling a real household: equal to `cost` to the cent, idempotent, corrections as exact deltas."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import select

from communities import write_generic as _generic
from conftest import data_file
from kwartier.ingest import read_prices, read_readings
from kwartier.money import nano_to_cents
from kwartier.services.community import load_community
from kwartier.services.imports import import_prices, import_readings
from kwartier.services.settle import settle
from kwartier.settle import ledger
from kwartier.store import schema as s
from kwartier.tariffs.cost import cost
from kwartier.tariffs.plan import load_plan

MAIN = "871687120058657526"
HEAT = "871000000000000013"
SMP = "household_nl/slimmemeterportal_2023_15min.csv"
PRICES = "prices_nl/mark_vis_epex_json/prices_2023.json"  # complete, the repeated autumn hour included

COMMUNITY = """
[community]
id = "test"
name = "Test"

[[parties]]
id = "sup"
roles = ["supplier", "aggregator"]
name = "Supplier"

[[parties]]
id = "heat"
roles = ["supplier"]
name = "Heat pump supplier"

[[parties]]
id = "net"
roles = ["grid"]
name = "Grid"

[[parties]]
id = "fisc"
roles = ["tax"]
name = "Tax"

[[parties]]
id = "coop"
roles = ["community"]
name = "Cooperative"

[[participants]]
id = "anna"
name = "Anna"
email = "anna@example.org"

[[connections]]
ean = "{main}"
participant = "anna"
grid_area = "breda"
capacity_kw = "17.25"
grid = "net"

[[contracts]]
id = "c-main"
target = "{main}"
supplier = "sup"
plan = "{plan}"
valid_from = 2023-01-01
{extra}
"""

HEAT_POINT = f"""
[[metering_points]]
ean = "{HEAT}"
connection = "{MAIN}"
supplier = "heat"

[[contracts]]
id = "c-heat"
target = "{HEAT}"
supplier = "heat"
plan = "nl-fixed-2026"
valid_from = 2023-01-01
"""


def _community(tmp_path: Path, plan: str = "nl-dynamic-2026", extra: str = "") -> Path:
    path = tmp_path / "community.toml"
    path.write_text(COMMUNITY.format(main=MAIN, plan=plan, extra=extra))
    return path


def _cost_cents(plan_id: str, readings: pl.DataFrame, first: date, end: date) -> int:
    result = cost(load_plan(plan_id), readings, read_prices(data_file(PRICES)).frame, first, end)
    return result.total_cents


def _owed(summary, participant: str = "anna") -> int:
    return nano_to_cents(summary.by_participant[participant])


@pytest.fixture
def household(engine, tmp_path):
    load_community(engine, _community(tmp_path))
    import_prices(engine, data_file(PRICES))
    import_readings(engine, data_file(SMP), MAIN)
    return engine


@pytest.mark.parametrize("month", ["2023-03", "2023-10"])  # October has the 100-quarter DST day
def test_a_month_equals_cost_to_the_cent_and_settles_once(household, month):
    first = date(int(month[:4]), int(month[5:]), 1)
    end = date(first.year, first.month + 1, 1)
    summary = settle(household, month)
    readings = read_readings(data_file(SMP)).frame
    assert _owed(summary) == _cost_cents("nl-dynamic-2026", readings, first, end)
    assert summary.debit_total_nano == summary.credit_total_nano
    assert summary.estimated_intervals == 0 and summary.new_postings > 0
    assert sum(summary.by_payee.values()) == summary.by_participant["anna"]  # every cent reaches one payee
    again = settle(household, month)
    assert again.new_postings == 0 and again.by_participant == summary.by_participant
    with household.connect() as conn:
        assert ledger.verify(conn).ok


def test_a_revised_reading_posts_exactly_the_delta_and_changes_nothing_posted(household, tmp_path):
    first, end = date(2023, 3, 1), date(2023, 4, 1)
    before = settle(household, "2023-03")
    with household.connect() as conn:
        posted = [tuple(r) for r in conn.execute(select(s.journal.c.seq, s.journal.c.hash).order_by(s.journal.c.seq))]
    readings = read_readings(data_file(SMP)).frame
    changed = readings.with_columns(import_wh=pl.when(pl.col("interval_start") == pl.datetime(
        2023, 3, 14, 17, 0, time_zone="UTC")).then(pl.col("import_wh") + 2500).otherwise(pl.col("import_wh")))
    summary = import_readings(household, _generic(changed, tmp_path / "revised.csv"), MAIN)
    assert summary.counts.revised == 1
    after = settle(household, "2023-03")
    delta = _cost_cents("nl-dynamic-2026", changed, first, end) - _cost_cents("nl-dynamic-2026", readings, first, end)
    assert delta > 0 and _owed(after) - _owed(before) == delta
    with household.connect() as conn:
        rows = conn.execute(select(s.journal.c.seq, s.journal.c.hash, s.journal.c.kind, s.journal.c.inputs)
                            .order_by(s.journal.c.seq)).all()
        assert ledger.verify(conn).ok
    assert [(r.seq, r.hash) for r in rows[: len(posted)]] == posted  # the past is untouched
    corrections = rows[len(posted):]
    assert corrections and {r.kind for r in corrections} == {"correction"}
    assert any("readings" in r.inputs["changed"] for r in corrections)


def test_missing_readings_are_estimated_then_corrected_by_actuals(engine, tmp_path):
    load_community(engine, _community(tmp_path))
    import_prices(engine, data_file(PRICES))
    readings = read_readings(data_file(SMP)).frame
    day = (pl.col("interval_start") >= pl.datetime(2023, 3, 14, 23, time_zone="UTC")) & (
        pl.col("interval_start") < pl.datetime(2023, 3, 15, 23, time_zone="UTC"))
    import_readings(engine, _generic(readings.filter(~day), tmp_path / "gap.csv"), MAIN)
    first = settle(engine, "2023-03")
    assert first.estimated_intervals == 96
    week_before = readings.filter((pl.col("interval_start") >= pl.datetime(2023, 3, 7, 23, time_zone="UTC"))
                                  & (pl.col("interval_start") < pl.datetime(2023, 3, 8, 23, time_zone="UTC")))
    with engine.connect() as conn:
        est = conn.execute(select(s.readings.c.import_wh).where(s.readings.c.status == "estimated",
                                                                s.readings.c.is_current)
                           .order_by(s.readings.c.interval_start)).scalars().all()
    assert est == week_before["import_wh"].to_list()  # the previous same weekday
    revised = import_readings(engine, data_file(SMP), MAIN)
    assert revised.counts.revised == 96  # actuals replace the estimates as new versions
    second = settle(engine, "2023-03")
    assert second.estimated_intervals == 0
    assert _owed(second) == _cost_cents("nl-dynamic-2026", readings, date(2023, 3, 1), date(2023, 4, 1))


def test_a_metering_point_is_billed_by_its_own_supplier_and_taken_off_the_main_meter(engine, tmp_path):
    load_community(engine, _community(tmp_path, extra=HEAT_POINT))
    import_prices(engine, data_file(PRICES))
    readings = read_readings(data_file(SMP)).frame
    heat = readings.select("interval_start", (pl.col("import_wh") // 3).alias("import_wh"),
                           pl.lit(0, pl.Int64).alias("export_wh"), "resolution", "status")
    import_readings(engine, data_file(SMP), MAIN)
    import_readings(engine, _generic(heat, tmp_path / "heat.csv"), HEAT)
    summary = settle(engine, "2023-03")
    first, end = date(2023, 3, 1), date(2023, 4, 1)
    main_net = readings.with_columns(import_wh=pl.col("import_wh") - heat["import_wh"])
    expected = _cost_cents("nl-dynamic-2026", main_net, first, end) + _cost_cents("nl-fixed-2026", heat, first, end)
    assert _owed(summary) == expected
    assert "heat" in summary.by_payee and summary.by_payee["heat"] > 0
