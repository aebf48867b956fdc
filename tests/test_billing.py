"""The bill run: invoices equal `cost` and the ledger, gapless numbering under SIGKILL, credit notes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date

import numpy as np
import polars as pl
from sqlalchemy import func, select

from communities import HEAD, member
from communities import write_generic as _generic
from conftest import data_file
from kwartier import synth
from kwartier.ids import make_ean18
from kwartier.ingest import read_prices, read_readings
from kwartier.money import nano_to_cents
from kwartier.services.billing import bill, find
from kwartier.services.community import load_community
from kwartier.services.imports import import_prices, import_readings
from kwartier.services.settle import settle
from kwartier.settle import ledger
from kwartier.store import open_store
from kwartier.store import schema as s
from kwartier.tariffs.cost import cost
from kwartier.tariffs.plan import load_plan
from kwartier.timegrid import interval_starts, local_period_bounds

MAIN = "871687120058657526"
SMP = "household_nl/slimmemeterportal_2023_15min.csv"
PRICES = "prices_nl/mark_vis_epex_json/prices_2023.json"

def test_a_real_household_invoice_equals_cost_and_the_ledger(engine, tmp_path):
    (tmp_path / "c.toml").write_text(HEAD + member(0, MAIN))
    load_community(engine, tmp_path / "c.toml")
    import_prices(engine, data_file(PRICES))
    import_readings(engine, data_file(SMP), MAIN)
    settle(engine, "2023-03")
    summary = bill(engine, "2023-03", None, today=date(2023, 4, 2))
    assert [i["number"] for i in summary.invoices] == ["SUP-2023-000001"]
    invoice, info = find(engine, "SUP-2023-000001")
    expected = cost(load_plan("nl-dynamic-2026"), read_readings(data_file(SMP)).frame,
                    read_prices(data_file(PRICES)).frame, date(2023, 3, 1), date(2023, 4, 1))
    assert invoice.total_cents == expected.total_cents and invoice.vat_total_cents == expected.vat_cents
    assert {ln.component: ln.amount_cents for ln in invoice.lines} == {
        ln.component: ln.cents for ln in expected.lines if ln.cents}  # a zero line is not posted nor billed
    with engine.connect() as conn:
        assert invoice.total_cents == nano_to_cents(ledger.balances(conn)["participant:p0"])
    assert [ln.section for ln in invoice.lines] == sorted(
        (ln.section for ln in invoice.lines), key=("supplier", "grid", "tax").index)
    assert invoice.due_date == date(2023, 4, 16) and invoice.connections == (MAIN,)
    assert info is not None and info.import_kwh > 0 and info.reference_total_cents is not None
    assert bill(engine, "2023-03", None).credit_notes == []  # nothing changed: nothing issued


def test_a_correction_gives_a_credit_note_and_a_corrected_invoice(engine, tmp_path):
    (tmp_path / "c.toml").write_text(HEAD + member(0, MAIN))
    load_community(engine, tmp_path / "c.toml")
    import_prices(engine, data_file(PRICES))
    import_readings(engine, data_file(SMP), MAIN)
    settle(engine, "2023-03")
    bill(engine, "2023-03", None, today=date(2023, 4, 2))
    readings = read_readings(data_file(SMP)).frame
    changed = readings.with_columns(import_wh=pl.when(pl.col("interval_start") == pl.datetime(
        2023, 3, 20, 18, 0, time_zone="UTC")).then(pl.col("import_wh") + 4000).otherwise(pl.col("import_wh")))
    import_readings(engine, _generic(changed, tmp_path / "revised.csv"), MAIN)
    settle(engine, "2023-03")
    second = bill(engine, "2023-03", None, today=date(2023, 5, 2))
    assert [c["corrects"] for c in second.credit_notes] == ["SUP-2023-000001"]
    note, _ = find(engine, second.credit_notes[0]["number"])
    original, _ = find(engine, "SUP-2023-000001")
    corrected, _ = find(engine, "SUP-2023-000003")
    assert note.kind == "credit_note" and note.references == "SUP-2023-000001"
    assert note.total_cents == -original.total_cents
    expected = cost(load_plan("nl-dynamic-2026"), changed, read_prices(data_file(PRICES)).frame,
                    date(2023, 3, 1), date(2023, 4, 1))
    assert corrected.total_cents == expected.total_cents
    with engine.connect() as conn:  # the documents sum to what the ledger says is owed
        issued = conn.execute(select(func.sum(s.invoices.c.total_cents))).scalar_one()
        assert issued == nano_to_cents(ledger.balances(conn)["participant:p0"])


def test_numbering_is_gapless_when_a_bill_run_is_killed(tmp_path):
    db = f"sqlite:///{tmp_path / 'k.db'}"
    engine = open_store(db)
    n = 24
    eans = [make_ean18(f"871000{i:011d}") for i in range(n)]
    (tmp_path / "c.toml").write_text(HEAD + "".join(member(i, e) for i, e in enumerate(eans)))
    load_community(engine, tmp_path / "c.toml")
    start, stop = local_period_bounds(date(2026, 2, 1), date(2026, 3, 1))
    starts = interval_starts(start, stop)
    hour = (starts.dt.convert_time_zone("Europe/Amsterdam").dt.hour()).to_numpy().astype(float)
    rng = np.random.default_rng(4)
    pl.DataFrame({"timestamp": starts.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "price_eur_per_mwh": [f"{p:.2f}" for p in 80 + 40 * np.sin(hour / 24 * 6.28)]}
                 ).write_csv(tmp_path / "prices.csv")
    import_prices(engine, tmp_path / "prices.csv")
    for ean in eans:
        wh = synth.household_load_wh(hour, 3000, rng)
        _generic(pl.DataFrame({"interval_start": starts, "import_wh": wh, "export_wh": np.zeros_like(wh)}),
                 tmp_path / f"{ean}.csv")
        import_readings(engine, tmp_path / f"{ean}.csv", ean)
    settle(engine, "2026-02")
    engine.dispose()
    cmd = [sys.executable, "-m", "kwartier.cli", "--db", db, "bill", "--period", "2026-02", "--out",
           str(tmp_path / "out"), "--json"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "out"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*.pdf"))) < 3:  # kill once it is under way
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    engine = open_store(db)
    with engine.connect() as conn:
        killed_at = conn.execute(select(func.count()).select_from(s.invoices)).scalar_one()
    assert 0 < killed_at < n, f"the kill came at {killed_at} of {n} invoices; it should be midway"
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    with engine.connect() as conn:
        numbers = conn.execute(select(s.invoices.c.number).order_by(s.invoices.c.number)).scalars().all()
        per_participant = conn.execute(select(s.invoices.c.participant, func.count())
                                       .group_by(s.invoices.c.participant)).all()
    year = date.today().year
    assert numbers == [f"SUP-{year}-{k:06d}" for k in range(1, n + 1)]  # no gap, no duplicate
    assert sorted(c for _p, c in per_participant) == [1] * n  # one invoice each
    assert sorted(p.stem for p in out.glob("*.pdf")) == numbers  # the files of every invoice, too
    assert not list(out.glob("*.part"))


def test_a_participant_with_two_suppliers_gets_two_invoices(engine, tmp_path):
    heat_ean = make_ean18("87100000000000001")
    extra = (f'\n[[parties]]\nid = "heat"\nroles = ["supplier"]\nname = "Heat B.V."\nvat_id = "NL007654321B01"\n'
             f'\n[[metering_points]]\nean = "{heat_ean}"\nconnection = "{MAIN}"\nsupplier = "heat"\n'
             f'\n[[contracts]]\nid = "c-heat"\ntarget = "{heat_ean}"\nsupplier = "heat"\nplan = "nl-fixed-2026"\n'
             'valid_from = 2023-01-01\n')
    (tmp_path / "c.toml").write_text(HEAD + member(0, MAIN) + extra)
    load_community(engine, tmp_path / "c.toml")
    import_prices(engine, data_file(PRICES))
    readings = read_readings(data_file(SMP)).frame
    import_readings(engine, data_file(SMP), MAIN)
    heat = readings.with_columns(import_wh=pl.col("import_wh") // 4, export_wh=pl.lit(0, pl.Int64))
    import_readings(engine, _generic(heat, tmp_path / "heat.csv"), heat_ean)
    settle(engine, "2023-03")
    summary = bill(engine, "2023-03", None, today=date(2023, 4, 2))
    by_supplier = {i["supplier"]: i for i in summary.invoices}
    assert set(by_supplier) == {"sup", "heat"} and {i["participant"] for i in summary.invoices} == {"p0"}
    heat_invoice, _ = find(engine, str(by_supplier["heat"]["number"]))
    assert heat_invoice.connections == (heat_ean,) and heat_invoice.seller.name == "Heat B.V."
    with engine.connect() as conn:
        owed = nano_to_cents(ledger.balances(conn)["participant:p0"])
    assert sum(find(engine, str(i["number"]))[0].total_cents for i in summary.invoices) == owed
