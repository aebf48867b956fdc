"""The tariff commands as a user runs them: plans, cost (stateless), prices show and explain (from the store)."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from conftest import data_file

A44 = "entsoe_xml/A44_NL_20260930_20261001_PT15M_A03_splashcode01.xml"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kwartier.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_plans_list_and_show(tmp_path):
    r = run("plans", "list", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ids = {p["id"] for p in json.loads(r.stdout)}
    assert {"nl-fixed-2026", "nl-daynight-2026", "nl-dynamic-2026", "nl-dynamic-2027", "jem-2.0"} <= ids
    shown = json.loads(run("plans", "show", "nl-dynamic-2026", "--json", cwd=tmp_path).stdout)
    assert shown["netting"] == "annual" and shown["vat_rate"] == "0.21"
    bad = run("plans", "show", "no-such-plan", cwd=tmp_path)
    assert bad.returncode == 2 and "no plan 'no-such-plan'" in bad.stderr


def test_cost_json_shape_and_arithmetic(tmp_path):
    r = run("cost", "--readings", str(data_file("household_nl/dsmrreader_export_2024_hourly.csv")),
            "--prices", str(data_file("prices_nl/mark_vis_epex_json/prices_2024.json")),
            "--plan", "nl-dynamic-2026", "--plan", "nl-dynamic-2027", "--from", "2024-06-01", "--to", "2024-07-01",
            "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    assert [x["plan"] for x in results] == ["nl-dynamic-2026", "nl-dynamic-2027"]
    for x in results:
        assert set(x) >= {"plan", "from", "to", "import_kwh", "export_kwh", "lines", "net_total", "vat", "total"}
        assert sum(Decimal(ln["amount"]) for ln in x["lines"]) == Decimal(x["net_total"])
        assert Decimal(x["total"]) == Decimal(x["net_total"]) + Decimal(x["vat"])
        for ln in x["lines"]:
            assert set(ln) == {"component", "label", "payee", "quantity", "unit", "amount"}
            assert ln["unit"] in {"kWh", "day", "month", "year", "%"}


def test_cost_names_missing_intervals_and_exits_2(tmp_path):
    r = run("cost", "--readings", str(data_file("household_nl/dsmrreader_export_2024_hourly.csv")),
            "--prices", str(data_file("prices_nl/mark_vis_epex_json/prices_2024.json")),
            "--plan", "nl-dynamic-2026", "--from", "2024-03-16", "--to", "2024-03-18", cwd=tmp_path)
    assert r.returncode == 2
    assert "no readings for" in r.stderr and "2024-03-16 13:00 (+01:00)" in r.stderr and "--allow-gaps" in r.stderr


def test_prices_show_and_explain_from_the_store(tmp_path):
    db = f"sqlite:///{tmp_path}/k.db"
    assert run("--db", db, "import", "prices", str(data_file(A44)), cwd=tmp_path).returncode == 0
    before = json.loads(run("--db", db, "prices", "show", "--plan", "nl-dynamic-2026", "--day", "2026-10-01",
                            "--known-at", "2026-09-30T08:00:00Z", "--json", cwd=tmp_path).stdout)
    after = json.loads(run("--db", db, "prices", "show", "--plan", "nl-dynamic-2026", "--day", "2026-10-01",
                           "--known-at", "2026-09-30T11:00:00Z", "--json", cwd=tmp_path).stdout)
    assert len(after["quarters"]) == 96
    assert {q["components"]["supply"]["status"] for q in before["quarters"]} == {"forecast"}
    assert {q["components"]["supply"]["status"] for q in after["quarters"]} == {"fixed"}
    assert after["quarters"][0]["components"]["supply"]["known_at"] == "2026-09-30T10:45:00Z"
    r = run("--db", db, "prices", "explain", "--plan", "nl-dynamic-2026", "--at", "2026-10-01T18:00:00+02:00",
            "--known-at", "2026-09-30T11:00:00Z", "--locale", "fr", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    parts = json.loads(r.stdout)["components"]
    assert {p["component"] for p in parts} >= {"supply", "feed_in"}
    assert all(p["status"] == "fixed" for p in parts) and "fournisseur" in parts[0]["sentence"]
