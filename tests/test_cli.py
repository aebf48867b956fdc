"""The command line as a user runs it: JSON shapes, exit codes, messages on stderr, the demo."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from conftest import data_file

EAN = "871687120058657526"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kwartier.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.shared_data
def test_import_prices_json(tmp_path):
    path = data_file("prices_nl/nl_dayahead_2025_15min_jeroen_nl.csv")
    r = run("--db", f"sqlite:///{tmp_path}/k.db", "import", "prices", str(path), "--zone", "NL", "--json",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"zone", "intervals", "first", "last", "resolution", "min_eur_per_kwh", "max_eur_per_kwh",
                        "new", "unchanged", "revised", "anomalies"}
    assert out["zone"] == "NL" and out["intervals"] == 35036 and out["resolution"] == "PT15M"
    assert out["first"] == "2024-12-31T23:00:00Z" and out["last"] == "2025-12-31T22:45:00Z"
    assert Decimal(out["min_eur_per_kwh"]) == Decimal("-0.35") and Decimal(out["max_eur_per_kwh"]) == Decimal(
        "0.52347")
    assert out["new"] == 35036
    assert any(a["kind"] == "dst_repeated_hour_missing" for a in out["anomalies"])
    again = json.loads(run("--db", f"sqlite:///{tmp_path}/k.db", "import", "prices", str(path), "--json",
                           cwd=tmp_path).stdout)
    assert (again["new"], again["revised"], again["unchanged"]) == (0, 0, 35036)


@pytest.mark.shared_data
def test_import_readings_json(tmp_path):
    path = data_file("household_nl/dsmrreader_export_2024_hourly.csv")
    r = run("import", "readings", str(path), "--connection", EAN, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"connection", "intervals", "first", "last", "resolution", "import_kwh", "export_kwh",
                        "new", "unchanged", "revised", "anomalies"}
    assert out["resolution"] == "PT60M" and out["connection"] == EAN
    assert (tmp_path / "kwartier.db").exists()  # the default database is kwartier.db in the working folder
    for a in out["anomalies"]:
        assert set(a) == {"kind", "at", "row", "detail"}


def test_rejected_input_exits_2_with_the_message_on_stderr(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,import_kwh,export_kwh\n2025-01-01 00:00,0.1,0\n")
    r = run("import", "readings", str(bad), "--connection", EAN, "--json", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "bad.csv" in r.stderr and "row 2" in r.stderr


def test_p1_without_timestamp_needs_at(tmp_path):
    path = data_file("dsmr_p1_telegrams/telegram_v2_2.txt")
    r = run("import", "p1", str(path), "--connection", EAN, "--json", cwd=tmp_path)
    assert r.returncode == 2 and "--at" in r.stderr
    r = run("import", "p1", str(path), "--connection", EAN, "--at", "2024-01-01T12:00:00+01:00", "--json",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["intervals"] == 0


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, dict]:
    """One default `kwartier demo --json` (last full month, 90 households); tests work on copies of its folder."""
    folder = tmp_path_factory.mktemp("demo")
    r = run("demo", "--json", "--no-serve", cwd=folder)
    assert r.returncode == 0, r.stderr
    return folder, json.loads(r.stdout)


def demo_copy(demo_run: tuple[Path, dict], tmp_path: Path) -> tuple[Path, dict]:
    import shutil

    shutil.copytree(demo_run[0], tmp_path / "d")
    return tmp_path / "d", demo_run[1]


def test_demo_imports_and_its_costs_are_exact(demo_run):
    folder, out = demo_run
    assert out["reimport"] == {"new": 0, "revised": 0}
    assert len(out["connections"]) == 90 and out["participants"] == 90
    from datetime import date, timedelta

    today = date.today()
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    assert out["from"] == last_month.isoformat() and out["to"] == today.isoformat()  # last month up to today
    assert out["months"] == [f"{last_month:%Y-%m}"]  # only the whole month is settled and billed
    assert (out["not_billed"] is None) == (today.day == 1)  # this month so far is shown, not billed
    prices = pl.read_csv(folder / "kwartier-demo" / "prices_NL.csv",
                         schema_overrides={"price_eur_per_mwh": pl.String})
    price_of = dict(zip(prices["timestamp"], prices["price_eur_per_mwh"], strict=True))
    window = out["spot_window"]
    for c in out["connections"]:
        rows = pl.read_csv(folder / "kwartier-demo" / f"readings_{c['ean']}.csv",
                           schema_overrides={"import_kwh": pl.String, "export_kwh": pl.String})
        rows = rows.filter((pl.col("timestamp") >= window["from"]) & (pl.col("timestamp") < window["to"]))
        # Independent reference: Decimal kWh x EUR/MWh / 1000, summed, rounded once.
        exact = sum(Decimal(k) * Decimal(price_of[t]) / 1000 for t, k in zip(rows["timestamp"], rows["import_kwh"],
                                                                              strict=True))
        assert Decimal(c["spot_cost_eur"]) == exact.quantize(Decimal("0.01"))
        assert Decimal(c["import_kwh"]) == sum(Decimal(k) for k in rows["import_kwh"])
    settled = out["settlement"]
    assert len(settled["by_participant"]) == 90 and settled["estimated_intervals"] == 0
    assert settled["debit_total"] == settled["credit_total"]
    assert sum(Decimal(v) for v in settled["by_participant"].values()) == sum(
        Decimal(v) for v in settled["by_payee"].values())
    assert out["ledger"]["ok"] and out["ledger"]["entries"] == settled["postings"]
    assert out["invoices"] == len(out["invoice_list"]) == 90


def test_settle_and_ledger_commands(demo_run, tmp_path):
    import sqlite3

    folder, out = demo_copy(demo_run, tmp_path)
    period = out["settlement"]["period"]
    again = run("settle", "--period", period, "--json", cwd=folder)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["new_postings"] == 0
    ok = run("ledger", "verify", "--json", cwd=folder)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    balances = json.loads(run("ledger", "balances", "--json", cwd=folder).stdout)
    assert balances["sum"] == "0.00"
    with sqlite3.connect(folder / "kwartier.db") as db:  # someone edits an amount behind kwartier's back
        db.execute("UPDATE journal SET amount_nano = amount_nano + 10000000 WHERE seq = 3")
    broken = run("ledger", "verify", "--json", cwd=folder)
    assert broken.returncode == 1
    assert json.loads(broken.stdout)["first_bad"]["seq"] == 3
    bad = run("settle", "--period", "2026-13", cwd=folder)
    assert bad.returncode == 2 and "not YYYY-MM" in bad.stderr


def test_bill_and_invoice_commands(demo_run, tmp_path):
    folder, _out = demo_copy(demo_run, tmp_path)
    tmp_path = folder  # the commands below run in the copied demo folder
    listed = json.loads(run("invoice", "list", "--json", cwd=tmp_path).stdout)["invoices"]
    assert len(listed) == 90 and {i["kind"] for i in listed} == {"invoice"}
    number = listed[0]["number"]
    shown = json.loads(run("invoice", "show", number, "--json", cwd=tmp_path).stdout)
    assert shown["invoice"]["number"] == number and shown["invoice"]["lines"]
    pdf = tmp_path / "one.pdf"
    r = run("invoice", "pdf", number, "-o", str(pdf), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import facturx

    assert pdf.read_bytes().startswith(b"%PDF")
    name, xml = facturx.get_xml_from_pdf(pdf.read_bytes(), check_xsd=True)
    assert name == "factur-x.xml" and number.encode() in xml
    again = run("bill", "--period", listed[0]["period"], "--out", str(tmp_path / "inv"), "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert set(data) == {"period", "invoices", "credit_notes"} and data["credit_notes"] == []
    assert set(data["invoices"][0]) == {"number", "participant", "supplier", "net_total", "vat", "total", "pdf", "xml"}
    assert [i["number"] for i in data["invoices"]] == [i["number"] for i in listed]  # nothing new was issued
    assert Path(data["invoices"][0]["pdf"]).is_file()  # files of earlier runs are written where asked
    missing = run("invoice", "show", "NOPE-2026-000001", cwd=tmp_path)
    assert missing.returncode == 2 and "no invoice" in missing.stderr
