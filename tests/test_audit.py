"""`audit reproduce`: a settled month re-run from its stored inputs reaches the identical hash; tampering does not."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
import typer
from sqlalchemy import select, update
from typer.testing import CliRunner

from communities import HEAD, member
from communities import write_generic as _generic
from conftest import data_file
from kwartier.ingest import read_readings
from kwartier.services.audit import AuditError, reproduce, result_hash
from kwartier.services.community import load_community
from kwartier.services.imports import import_prices, import_readings
from kwartier.services.settle import settle
from kwartier.store import open_store
from kwartier.store import schema as s

MAIN = "871687120058657526"
SMP = "household_nl/slimmemeterportal_2023_15min.csv"
PRICES = "prices_nl/mark_vis_epex_json/prices_2023.json"


def _household(engine, tmp_path):
    path = tmp_path / "community.toml"
    path.write_text(HEAD + member(1, MAIN))
    load_community(engine, path)
    import_prices(engine, data_file(PRICES))
    import_readings(engine, data_file(SMP), MAIN)
    return engine


@pytest.fixture
def household(engine, tmp_path):
    return _household(engine, tmp_path)


def _revise(engine, tmp_path, extra_wh: dict[datetime, int], name: str) -> int:
    """Import the household file with ``extra_wh`` added at the given quarters; return how many were revised."""
    changed = read_readings(data_file(SMP)).frame
    for at, wh in extra_wh.items():
        changed = changed.with_columns(import_wh=pl.when(pl.col("interval_start") == at)
                                       .then(pl.col("import_wh") + wh).otherwise(pl.col("import_wh")))
    return import_readings(engine, _generic(changed, tmp_path / name), MAIN).counts.revised


def test_result_hash_ignores_order_and_zero_lines_but_not_amounts():
    a = {("p1", "m", "supply@sup"): ("sup", 100), ("p1", "", "vat:sup:21"): ("fisc", 21)}
    b = dict(reversed(list(a.items()))) | {("p2", "m", "x@sup"): ("sup", 0)}
    assert result_hash(a) == result_hash(b)
    assert result_hash(a) != result_hash({**a, ("p1", "m", "supply@sup"): ("sup", 101)})


@pytest.mark.slow
def test_a_settled_month_reproduces_even_after_later_revisions(household, tmp_path):
    with pytest.raises(AuditError, match="never settled"):
        reproduce(household, "2023-03")
    settle(household, "2023-03")
    first = reproduce(household, "2023-03")
    assert first.identical and first.lines >= 5 and first.diff == []
    t1, t2 = datetime(2023, 3, 14, 17, tzinfo=UTC), datetime(2023, 3, 20, 9, tzinfo=UTC)
    assert _revise(household, tmp_path, {t1: 2500}, "r1.csv") == 1
    second_run = settle(household, "2023-03")
    assert second_run.new_postings > 0  # corrections were posted
    again = reproduce(household, "2023-03")
    assert again.identical and again.recorded_hash != first.recorded_hash  # the result changed, and reproduces
    assert _revise(household, tmp_path, {t1: 2500, t2: 4000}, "r2.csv") == 1  # not settled yet
    later = reproduce(household, "2023-03")  # still the inputs as of the last run
    assert later.identical and later.recorded_hash == again.recorded_hash
    old = reproduce(household, "2023-03", run_id=first.run_id)  # the first run, as of then
    assert old.identical and old.recorded_hash == first.recorded_hash
    assert later.rules and later.rules[0]["version"] == 0  # no rulebook founded: the default


def test_a_silently_changed_price_is_found_and_named(household):
    settle(household, "2023-03")
    p = s.prices
    with household.begin() as conn:  # overwrite a fixed price in place, as no kwartier command would
        pid = conn.execute(select(p.c.id).where(p.c.zone == "NL", p.c.interval_start == datetime(
            2023, 3, 10, 12, tzinfo=UTC))).scalar_one()
        conn.execute(update(p).where(p.c.id == pid).values(price_ueur_per_kwh=p.c.price_ueur_per_kwh + 900_000))
    result = reproduce(household, "2023-03")
    assert not result.identical
    energy = [d for d in result.diff if not d["component"].startswith("vat:")]  # VAT lines name no prices
    assert energy and all(d["changed_inputs"] == ["prices"] for d in energy)
    supply = [d for d in result.diff if d["component"].startswith("supply")]
    assert supply and supply[0]["reproduced_nano"] > supply[0]["recorded_nano"]


@pytest.mark.slow
def test_cli_audit_reproduce_exit_codes(tmp_path, monkeypatch):
    from kwartier.cli_governance import register

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    household = _household(open_store(url), tmp_path)
    app = typer.Typer()
    register(app)
    settle(household, "2023-03")
    monkeypatch.setenv("KWARTIER_DATABASE_URL", url)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "reproduce", "--period", "2023-03", "--json"])
    assert ok.exit_code == 0, ok.output
    assert '"identical": true' in ok.output
    with household.begin() as conn:
        conn.execute(update(s.readings).where(s.readings.c.interval_start == datetime(2023, 3, 3, 8, tzinfo=UTC))
                     .values(import_wh=s.readings.c.import_wh + 10_000))
    bad = runner.invoke(app, ["audit", "reproduce", "--period", "2023-03"])
    assert bad.exit_code == 1 and "readings" in bad.output
    never = runner.invoke(app, ["audit", "reproduce", "--period", "2023-07"])
    assert never.exit_code == 2 and "never settled" in never.output


def test_the_years_history_is_taken_as_it_was(engine, tmp_path):
    """Annual netting reads the year before the month: a later revision of February must not change March's audit."""
    ean = "871687120058657526"
    (tmp_path / "c.toml").write_text(HEAD + member(1, ean))
    load_community(engine, tmp_path / "c.toml")
    import_prices(engine, data_file(PRICES))
    starts = pl.datetime_range(datetime(2022, 12, 31, 23, tzinfo=UTC), datetime(2023, 3, 31, 21, 45, tzinfo=UTC),
                               "15m", eager=True, time_zone="UTC")
    march = starts >= datetime(2023, 2, 28, 23, tzinfo=UTC)
    frame = pl.DataFrame({"interval_start": starts, "import_wh": pl.Series(march.cast(pl.Int64) * 1000),
                          "export_wh": pl.Series((~march).cast(pl.Int64) * 500)})  # fed in until March, then taken
    import_readings(engine, _generic(frame, tmp_path / "a.csv"), ean)
    settle(engine, "2023-03")
    before = reproduce(engine, "2023-03")
    assert before.identical
    feb = pl.col("interval_start") == datetime(2023, 2, 10, 12, tzinfo=UTC)
    revised = frame.with_columns(export_wh=pl.when(feb).then(100_000).otherwise(pl.col("export_wh")))
    assert import_readings(engine, _generic(revised, tmp_path / "b.csv"), ean).counts.revised == 1
    still = reproduce(engine, "2023-03")
    assert still.identical and still.recorded_hash == before.recorded_hash
    assert settle(engine, "2023-03").new_postings > 0  # the revision does change March (the netted energy tax)
    after = reproduce(engine, "2023-03")
    assert after.identical and after.recorded_hash != before.recorded_hash
