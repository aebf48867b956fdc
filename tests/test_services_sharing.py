"""A stored community's sharing: hand-checked month, ledger postings (idempotent, corrections), bills, CLI."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import polars as pl
import pytest
import typer
from sqlalchemy import select
from typer.testing import CliRunner

from communities import HEAD, member
from communities import write_generic as _generic
from kwartier.community.rules import rulebook_from_data
from kwartier.ids import make_ean18
from kwartier.services.community import load_community
from kwartier.services.imports import import_prices, import_readings
from kwartier.services.sharing import (
    SharingServiceError,
    allocation_csv,
    compute_sharing,
    post_sharing,
    read_dynamic_keys,
)
from kwartier.settle import ledger
from kwartier.store import schema as s
from kwartier.timegrid import interval_starts, local_period_bounds

PERIOD = "2026-02"
EANS = [make_ean18(f"87100000000000{i:03d}") for i in range(3)]
QUARTERS = 28 * 96
# Every quarter: p0 exports 300 Wh; p1 takes 250 Wh, p2 150 Wh. Prorata: 187.5 / 112.5 -> p1 188 (tie to the
# lower id), p2 112.
ENERGY = {0: (0, 300), 1: (250, 0), 2: (150, 0)}


def _community(engine, tmp_path, energy=ENERGY, head=HEAD):  # type: ignore[no-untyped-def]
    (tmp_path / "c.toml").write_text(head + "".join(member(i, e) for i, e in enumerate(EANS)))
    load_community(engine, tmp_path / "c.toml")
    start, stop = local_period_bounds(date(2026, 2, 1), date(2026, 3, 1))
    starts = interval_starts(start, stop)
    for i, ean in enumerate(EANS):
        imp, exp = energy[i]
        frame = pl.DataFrame({"interval_start": starts, "import_wh": [imp] * starts.len(),
                              "export_wh": [exp] * starts.len()})
        import_readings(engine, _generic(frame, tmp_path / f"{ean}.csv"), ean)
    return starts


def test_a_month_of_sharing_by_hand(engine, tmp_path):
    _community(engine, tmp_path)
    result = compute_sharing(engine, PERIOD)
    assert result.to_json() == {
        "period": PERIOD, "production_kwh": "806.400", "consumption_kwh": "1075.200", "shared_kwh": "806.400",
        "self_consumption": "1.0000", "self_sufficiency": "0.7500",
        "members": [
            {"participant": "p0", "production_kwh": "806.400", "surplus_kwh": "0.000", "consumption_kwh": "0.000",
             "community_kwh": "0.000", "complement_kwh": "0.000"},
            {"participant": "p1", "production_kwh": "0.000", "surplus_kwh": "0.000", "consumption_kwh": "672.000",
             "community_kwh": "505.344", "complement_kwh": "166.656"},
            {"participant": "p2", "production_kwh": "0.000", "surplus_kwh": "0.000", "consumption_kwh": "403.200",
             "community_kwh": "301.056", "complement_kwh": "102.144"}]}
    assert result.notes == [] and compute_sharing(engine, PERIOD).digest() == result.digest()
    rows = list(csv.reader(io.StringIO(allocation_csv(result, "p1")), delimiter=";"))
    assert rows[0] == ["horodate", "participant", "consommation", "autoconsommation", "complement", "production",
                       "surplus"]
    assert rows[1] == ["2026-02-01T00:00:00+01:00", "p1", "250", "188", "62", "0", "0"] and len(rows) == QUARTERS + 1


def test_posting_is_exact_idempotent_and_corrected_by_deltas(engine, tmp_path):
    starts = _community(engine, tmp_path)
    first = post_sharing(engine, PERIOD)
    # p1 pays 505.344 kWh x 0.15 = 75.8016 EUR, p2 45.1584, p0 receives 120.96: rounded down 7580, 4515, -12096
    # cents; the missing cent goes to the largest fraction (p2's .84), so the community account nets exactly 0.
    assert first.by_participant == {"p0": -12096, "p1": 7580, "p2": 4516} and first.new_postings == 3
    assert post_sharing(engine, PERIOD).new_postings == 0  # the same inputs: nothing new
    with engine.connect() as conn:
        assert ledger.verify(conn).ok
        assert ledger.balances(conn).get("party:coop", 0) == 0
    more = pl.DataFrame({"interval_start": starts, "import_wh": [350] * starts.len(), "export_wh": [0] * starts.len()})
    import_readings(engine, _generic(more, tmp_path / "more.csv"), EANS[2])  # p2 takes more: it gets more
    again = post_sharing(engine, PERIOD)
    assert again.new_postings == 2  # p1's and p2's shares change; p0 still sells all its 806.4 kWh
    with engine.connect() as conn:
        kinds = conn.execute(select(s.journal.c.kind, s.journal.c.participant).where(
            s.journal.c.kind == "share_correction").order_by(s.journal.c.seq)).all()
        assert [tuple(k) for k in kinds] == [("share_correction", "p1"), ("share_correction", "p2")]
        assert ledger.verify(conn).ok


def test_a_rulebook_changes_the_split_and_the_solidarity_fund_is_visible(engine, tmp_path):
    _community(engine, tmp_path)
    rb = rulebook_from_data({"sharing": {"rule": "priority", "groups": [["p2"]]},
                             "price": {"rule": "solidarity", "reduced_eur_per_kwh": "0.05", "funded_by": "sellers"},
                             "solidarity": {"members": ["p2"]}})
    result = compute_sharing(engine, PERIOD, rulebook=rb)
    p2 = result.to_json()["members"][2]  # type: ignore[index]
    assert p2["community_kwh"] == "403.200" and p2["complement_kwh"] == "0.000"  # served first, in full
    # p2's reduction: 403.2 kWh x (0.15 - 0.05) = 40.32 EUR, levied on the only seller, p0.
    assert result.money.reduction_nano.tolist() == [0, 0, 40_320_000_000]
    assert result.money.levy_nano.tolist() == [40_320_000_000, 0, 0] and result.money.conserved()


def test_a_dynamic_rule_without_keys_and_a_missing_community_party_are_explained(engine, tmp_path):
    _community(engine, tmp_path, head=HEAD.split("[[parties]]\nid = \"coop\"")[0])
    with pytest.raises(SharingServiceError, match="needs keys per quarter"):
        compute_sharing(engine, PERIOD, rulebook=rulebook_from_data({"sharing": {"rule": "dynamic"}}))
    with pytest.raises(SharingServiceError, match="exactly one party with role community"):
        post_sharing(engine, PERIOD)
    with pytest.raises(SharingServiceError, match="not YYYY-MM"):
        compute_sharing(engine, "2026/02")


def test_dynamic_keys_from_a_csv_file(engine, tmp_path):
    starts = _community(engine, tmp_path)
    first, second = starts[0].strftime("%Y-%m-%dT%H:%M:%SZ"), starts[1].strftime("%Y-%m-%dT%H:%M:%SZ")
    (tmp_path / "keys.csv").write_text(f"timestamp,participant,key\n{first},p2,1\n{second},p1,3\n{second},p2,1\n")
    keys = read_dynamic_keys(str(tmp_path / "keys.csv"))
    result = compute_sharing(engine, PERIOD, rulebook=rulebook_from_data({"sharing": {"rule": "dynamic"}}),
                             dynamic_keys=keys)
    a = result.allocation
    # Quarter 0: all 300 Wh offered to p2, who takes 150. Quarter 1: 225 / 75. Later quarters: no keys, nothing.
    assert a.community_wh[:, :3].tolist() == [[0, 0, 0], [0, 225, 0], [150, 75, 0]]
    assert a.surplus_wh[0, :3].tolist() == [150, 0, 300]
    with pytest.raises(SharingServiceError, match="cannot read dynamic keys"):
        read_dynamic_keys(str(tmp_path / "absent.csv"))


def test_shared_energy_appears_on_the_bills(engine, tmp_path):
    from kwartier.services.billing import bill, find

    # An invoice needs the seller's VAT id: the cooperative that sells the shared energy has one here.
    coop_vat = HEAD.replace('name = "Cooperative"', 'name = "Cooperative"\nvat_id = "NL009876543B01"')
    _community(engine, tmp_path, head=coop_vat)
    start, stop = local_period_bounds(date(2026, 2, 1), date(2026, 3, 1))
    starts = interval_starts(start, stop)
    pl.DataFrame({"timestamp": starts.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "price_eur_per_mwh": ["90.00"] * starts.len()}).write_csv(tmp_path / "prices.csv")
    import_prices(engine, tmp_path / "prices.csv")
    post_sharing(engine, PERIOD)
    summary = bill(engine, PERIOD, None, today=date(2026, 3, 2))
    coop = {i["participant"]: i for i in summary.invoices if i["supplier"] == "coop"}
    assert {p: i["total"] for p, i in coop.items()} == {"p0": "-120.96", "p1": "75.80", "p2": "45.16"}
    invoice, _ = find(engine, str(coop["p1"]["number"]))
    assert [(ln.component, ln.amount_cents, str(ln.quantity)) for ln in invoice.lines] == [
        ("community_share", 7580, "505.344")]


def test_the_governed_rules_in_force_are_used(engine, tmp_path):
    governance = pytest.importorskip("kwartier.services.governance")
    _community(engine, tmp_path)
    governance.found(engine, rulebook_from_data({"sharing": {"rule": "static", "keys": {"p2": "1"}}}))
    result = compute_sharing(engine, PERIOD)
    assert [m["community_kwh"] for m in result.to_json()["members"]] == ["0.000", "0.000", "403.200"]  # type: ignore[index]
    assert [r.version for r in result.rules] == [1]


def test_a_rule_change_and_a_member_leaving_mid_month_split_the_month(engine, tmp_path):
    governance = pytest.importorskip("kwartier.services.governance")
    from datetime import UTC, datetime

    _community(engine, tmp_path)
    governance.found(engine, now=datetime(2026, 1, 1, tzinfo=UTC))  # prorata, from the contracts' start
    change = datetime(2026, 2, 14, 23, 0, tzinfo=UTC)  # local midnight starting 15 February
    pid = governance.propose(engine, "p0", "p2 first", {"sharing": {"rule": "priority", "groups": [["p2"]]}},
                             change, now=datetime(2026, 1, 10, tzinfo=UTC))
    for who in ("p0", "p1"):  # two of three: accepted
        status = governance.vote(engine, pid, who, "yes", now=datetime(2026, 1, 11, tzinfo=UTC))
    assert status == "accepted"
    governance.leave(engine, "p1", datetime(2026, 2, 21, 23, 0, tzinfo=UTC), now=datetime(2026, 1, 12, tzinfo=UTC))
    result = compute_sharing(engine, PERIOD)
    assert [r.version for r in result.rules] == [1, 2]
    p1, p2 = result.allocation.community_wh[1], result.allocation.community_wh[2]
    # 14 days prorata (188 / 112), 7 days p2 first (150 / 150), 7 days without p1 (p2 takes its 150).
    assert int(p1.sum()) == 14 * 96 * 188 + 7 * 96 * 150 and int(p2.sum()) == 14 * 96 * 112 + 14 * 96 * 150
    assert result.to_json()["members"][1]["consumption_kwh"] == "672.000"  # type: ignore[index]


def _cli() -> typer.Typer:
    from kwartier.cli_community import register

    app = typer.Typer()
    sub = typer.Typer()
    app.add_typer(sub, name="community")
    register(sub)
    return app


def test_the_cli_prints_the_json_and_writes_the_csv(tmp_path, monkeypatch):
    from kwartier.store import open_store

    url = f"sqlite:///{tmp_path / 'k.db'}"
    engine = open_store(url)
    _community(engine, tmp_path)
    monkeypatch.setenv("KWARTIER_DATABASE_URL", url)
    runner = CliRunner()
    done = runner.invoke(_cli(), ["community", "share", "--period", PERIOD, "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["shared_kwh"] == "806.400" and [m["participant"] for m in data["members"]] == ["p0", "p1", "p2"]
    done = runner.invoke(_cli(), ["community", "export-allocation", "--period", PERIOD, "--out",
                                  str(tmp_path / "a.csv")])
    assert done.exit_code == 0, done.output
    assert len((tmp_path / "a.csv").read_text().splitlines()) == 3 * QUARTERS + 1
    done = runner.invoke(_cli(), ["community", "share", "--period", "2026-13"])
    assert done.exit_code == 2
    (tmp_path / "rules.toml").write_text('[sharing]\nrule = "priority"\ngroups = [["p2"]]\n')
    done = runner.invoke(_cli(), ["community", "share", "--period", PERIOD, "--json", "--rules",
                                  str(tmp_path / "rules.toml")])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["members"][2]["complement_kwh"] == "0.000"
    done = runner.invoke(_cli(), ["community", "share", "--period", PERIOD, "--post"])
    assert done.exit_code == 0, done.output
    with engine.connect() as conn:
        assert conn.execute(select(s.journal.c.kind).where(s.journal.c.kind == "share")).all()


def test_a_settle_run_after_the_sharing_leaves_the_sharing_lines_alone(engine, tmp_path):
    """Settlement reconciles only its own kinds of entries (``settlement``, ``correction``) with the journal."""
    from kwartier.services.settle import settle

    _community(engine, tmp_path)
    start, stop = local_period_bounds(date(2026, 2, 1), date(2026, 3, 1))
    starts = interval_starts(start, stop)
    pl.DataFrame({"timestamp": starts.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "price_eur_per_mwh": ["90.00"] * starts.len()}).write_csv(tmp_path / "prices.csv")
    import_prices(engine, tmp_path / "prices.csv")
    settle(engine, PERIOD)
    post_sharing(engine, PERIOD)
    assert settle(engine, PERIOD).new_postings == 0
    assert post_sharing(engine, PERIOD).new_postings == 0
    with engine.connect() as conn:
        assert ledger.balances(conn).get("party:coop", 0) == 0 and ledger.verify(conn).ok
