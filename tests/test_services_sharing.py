"""A stored community's sharing: hand-checked month, the differential lines with the suppliers against the
complement model, idempotent posting and corrections, VAT that stays consistent, bills, KPIs and the CLI."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from communities import HEAD, member
from communities import write_generic as _generic
from kwartier.community.rules import rulebook_from_data
from kwartier.ids import make_ean18
from kwartier.money import NANO_PER_CENT, vat_cents
from kwartier.services.community import load_community
from kwartier.services.imports import import_prices, import_readings
from kwartier.services.settle import settle
from kwartier.services.sharing import (
    SharingServiceError,
    allocation_csv,
    compute_sharing,
    read_dynamic_keys,
)
from kwartier.services.sharing_ledger import post_sharing
from kwartier.settle import ledger
from kwartier.store import open_store
from kwartier.store import schema as s
from kwartier.timegrid import interval_starts, local_period_bounds

PERIOD = "2026-02"
EANS = [make_ean18(f"87100000000000{i:03d}") for i in range(3)]
QUARTERS = 28 * 96
STARTS = interval_starts(*local_period_bounds(date(2026, 2, 1), date(2026, 3, 1)))
# Every quarter: p0 exports 300 Wh; p1 takes 250 Wh, p2 150 Wh. Prorata: 187.5 / 112.5 -> p1 188 (tie to the
# lower id), p2 112.
ENERGY = {0: (0, 300), 1: (250, 0), 2: (150, 0)}
# The two-member month: the market is 140 EUR/MWh in even quarters and 40 in odd ones. In the first 2000
# quarters p1 takes 1000 Wh and p0 feeds in 1200 Wh in the even ones; later p1 takes 500 Wh. So p1 takes
# 1000 Wh from the community in 1000 even quarters (1000 kWh) and p0 has 200 Wh of surplus in each.
Q = np.arange(QUARTERS)
EVEN = (Q % 2 == 0) & (Q < 2000)
DUO = {0: (np.zeros(QUARTERS, np.int64), np.where(EVEN, 1200, 0)),
       1: (np.where(Q < 2000, 1000, 500), np.zeros(QUARTERS, np.int64))}
MARKET = np.where(Q % 2 == 0, "140.00", "40.00")
# nl-dynamic-2026 in an even quarter: S = 0.140 + 0.018 = 0.158, F = 0.140 - 0.015 = 0.125 EUR/kWh; mid-market
# C = (0.158 + 0.125) / 2 = 0.1415. p1: 1000 kWh x (C - S) = -16.50 EUR; p0: 1000 kWh x (F - C) = -16.50 EUR.


def _readings(engine, tmp_path, ean: str, imp, exp, name: str = "") -> None:  # type: ignore[no-untyped-def]
    n = STARTS.len()
    imp = np.broadcast_to(np.asarray(imp, np.int64), (n,))
    exp = np.broadcast_to(np.asarray(exp, np.int64), (n,))
    frame = pl.DataFrame({"interval_start": STARTS, "import_wh": imp, "export_wh": exp})
    import_readings(engine, _generic(frame, tmp_path / f"{ean}{name}.csv"), ean)


def _prices(engine, tmp_path, market=None) -> None:  # type: ignore[no-untyped-def]
    values = ["90.00"] * QUARTERS if market is None else list(market)
    pl.DataFrame({"timestamp": STARTS.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "price_eur_per_mwh": values}).write_csv(tmp_path / "prices.csv")
    import_prices(engine, tmp_path / "prices.csv")


def _community(engine, tmp_path, energy=ENERGY, head=HEAD, market=None, prices=True):  # type: ignore[no-untyped-def]
    (tmp_path / "c.toml").write_text(head + "".join(member(i, EANS[i]) for i in sorted(energy)))
    load_community(engine, tmp_path / "c.toml")
    for i, (imp, exp) in energy.items():
        _readings(engine, tmp_path, EANS[i], imp, exp)
    if prices:
        _prices(engine, tmp_path, market)


def _cents(engine, participant: str, kinds: tuple[str, ...] | None = None) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Signed cents per component@payee of a participant's journal lines (positive: it pays)."""
    j = s.journal
    out: dict[str, int] = {}
    with engine.connect() as conn:
        stmt = select(j.c.component, j.c.debit, j.c.amount_nano).where(j.c.participant == participant,
                                                                        j.c.period == PERIOD)
        for comp, debit, amount in conn.execute(stmt if kinds is None else stmt.where(j.c.kind.in_(kinds))):
            sign = 1 if debit == f"participant:{participant}" else -1
            out[comp] = out.get(comp, 0) + sign * int(amount) // NANO_PER_CENT
    return {k: v for k, v in out.items() if v}


def _vat_is_the_rate_times_the_base(engine) -> None:  # type: ignore[no-untyped-def]
    """Per participant and supplier: the journal's VAT is 21 % of all its VAT-able lines, settled and shared."""
    j = s.journal
    base: dict[tuple[str, str], int] = {}
    vat: dict[tuple[str, str], int] = {}
    with engine.connect() as conn:
        for p, comp, debit, amount, inputs in conn.execute(select(
                j.c.participant, j.c.component, j.c.debit, j.c.amount_nano, j.c.inputs).where(j.c.period == PERIOD)):
            cents = (1 if debit == f"participant:{p}" else -1) * int(amount) // NANO_PER_CENT
            if comp.startswith("vat:"):
                key = (p, comp.split(":")[1])
                vat[key] = vat.get(key, 0) + cents
            elif inputs.get("vat", (inputs.get("corrects") or {}).get("vat")):
                key = (p, inputs.get("supplier") or inputs["corrects"]["supplier"])
                base[key] = base.get(key, 0) + cents
    assert base and {k: vat.get(k, 0) for k in base} == {k: vat_cents({Decimal("0.21"): [b]})[Decimal("0.21")]
                                                         for k, b in base.items()}


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
    # Flat 90 EUR/MWh: S = 0.108, F = 0.075, C = 0.0915 EUR/kWh in every quarter, from the plan, not the rulebook.
    assert set(result.base_ueur_per_kwh.tolist()) == {91_500}
    # p1: 505.344 kWh x (0.0915 - 0.108) = -8.338176 EUR; p2: 301.056 x -0.0165; p0: 806.4 kWh x (0.075 - 0.0915).
    assert result.differential.net_nano.tolist() == [-13_305_600_000, -8_338_176_000, -4_967_424_000]
    assert result.kpis.savings_nano == (13_305_600_000, 8_338_176_000, 4_967_424_000)
    rows = list(csv.reader(io.StringIO(allocation_csv(result, "p1")), delimiter=";"))
    assert rows[0] == ["horodate", "participant", "consommation", "autoconsommation", "complement", "production",
                       "surplus"]
    assert rows[1] == ["2026-02-01T00:00:00+01:00", "p1", "250", "188", "62", "0", "0"] and len(rows) == QUARTERS + 1


def test_without_prices_the_rulebook_stands_in_but_nothing_is_posted(engine, tmp_path):
    _community(engine, tmp_path, prices=False)
    result = compute_sharing(engine, PERIOD)
    assert "rulebook's reference prices" in result.notes[0] and "day-ahead prices" in result.notes[0]
    assert set(result.base_ueur_per_kwh.tolist()) == {150_000}  # (0.05 + 0.25) / 2, the documented fallback
    assert result.kpis.savings_nano[1] == 505_344 * (250_000 - 150_000)  # kWh x (supply - C), as before
    with pytest.raises(SharingServiceError, match="not settled"):
        post_sharing(engine, PERIOD)


def test_the_supplier_bills_the_complement_and_the_shared_kwh_cost_the_community_price(engine, tmp_path):
    _community(engine, tmp_path, energy=DUO, market=MARKET)
    with pytest.raises(SharingServiceError, match="run kwartier settle --period 2026-02 first"):
        post_sharing(engine, PERIOD)
    settle(engine, PERIOD)
    first = post_sharing(engine, PERIOD)
    shared = {p: _cents(engine, p, ("share",)) for p in ("p0", "p1")}
    assert shared["p1"]["shared_supply@sup"] == -1650 and shared["p0"]["shared_feed_in@sup"] == -1650
    assert set(shared["p1"]) == {"shared_supply@sup", "vat:sup:0.21"} and first.new_postings == 4
    assert post_sharing(engine, PERIOD).new_postings == 0  # the same inputs: nothing new
    # What the complement model bills: the supplier's components settled on the complement (p1 imports
    # minus its community share, p0 exports minus what it gave) in a second store, the grid and tax
    # components on the full energy, and the community price on the shared kWh: 1000 kWh x 0.1415.
    other = open_store(f"sqlite:///{tmp_path / 'complement.db'}")
    load_community(other, tmp_path / "c.toml")
    _readings(other, tmp_path, EANS[0], 0, np.where(EVEN, 200, 0), "-c")
    _readings(other, tmp_path, EANS[1], np.where(EVEN, 0, DUO[1][0]), 0, "-c")
    _prices(other, tmp_path, MARKET)
    settle(other, PERIOD)
    for p, community_cents in (("p0", -14150), ("p1", 14150)):
        full, complement = _cents(engine, p, ("settlement",)), _cents(other, p)
        model = {c: (complement if c.endswith("@sup") else full).get(c, 0) for c in full if not c.startswith("vat")}
        base = sum(model.values()) + community_cents  # every line of this plan is VAT-able
        expected = base + vat_cents({Decimal("0.21"): [base]})[Decimal("0.21")]
        assert sum(_cents(engine, p).values()) == expected, p  # settlement + sharing lines, VAT included
        assert model[f"{'feed_in' if p == 'p0' else 'supply'}@sup"] != full[f"{'feed_in' if p == 'p0' else 'supply'}"
                                                                          f"@sup"]
    other.dispose()
    with engine.connect() as conn:
        assert ledger.verify(conn).ok
        j = s.journal
        debits = dict(conn.execute(select(j.c.debit, func.sum(j.c.amount_nano)).group_by(j.c.debit)).all())
        credits = dict(conn.execute(select(j.c.credit, func.sum(j.c.amount_nano)).group_by(j.c.credit)).all())
        assert sum(map(int, debits.values())) == sum(map(int, credits.values()))
        assert sum(ledger.balances(conn).values()) == 0
    _vat_is_the_rate_times_the_base(engine)


def test_kpi_savings_are_the_money_the_lines_move(engine, tmp_path):
    _community(engine, tmp_path, energy=DUO, market=MARKET)
    settle(engine, PERIOD)
    post_sharing(engine, PERIOD)
    result = compute_sharing(engine, PERIOD)
    assert result.kpis.savings_nano == (16_500_000_000, 16_500_000_000)
    for i, p in enumerate(result.allocation.participants):  # minus the posted lines without VAT, to the cent
        lines = {c: v for c, v in _cents(engine, p, ("share",)).items() if not c.startswith("vat")}
        assert -sum(lines.values()) * NANO_PER_CENT == result.kpis.savings_nano[i]
    # A uniform price below the feed-in price: the seller loses against its supplier's feed-in, the buyer gains.
    uniform = compute_sharing(engine, PERIOD, rulebook=rulebook_from_data(
        {"price": {"rule": "uniform", "uniform_eur_per_kwh": "0.10"}}))
    assert uniform.differential.net_nano.tolist() == [25_000_000_000, -58_000_000_000]  # (0.125-0.10), (0.10-0.158)
    assert uniform.kpis.savings_nano == (-25_000_000_000, 58_000_000_000)


def test_corrections_keep_the_vat_in_step_and_the_journal_green(engine, tmp_path):
    _community(engine, tmp_path)
    settle(engine, PERIOD)
    first = post_sharing(engine, PERIOD)
    # 3 differential lines and 3 VAT lines; all in cents: p1 -8.338176 -> -834, p2 -4.967424 -> -497, p0 -1331
    assert first.new_postings == 6 and first.by_payee["sup"] == -834 - 497 - 1331
    _vat_is_the_rate_times_the_base(engine)
    _readings(engine, tmp_path, EANS[2], 350, 0, "-more")  # p2 takes more: it gets more of p0's kWh
    settle(engine, PERIOD)
    again = post_sharing(engine, PERIOD)
    assert again.new_postings == 4  # p1's and p2's differential and VAT lines; p0 still gives all its 806.4 kWh
    with engine.connect() as conn:
        kinds = conn.execute(select(s.journal.c.participant, s.journal.c.component).where(
            s.journal.c.kind == "share_correction").order_by(s.journal.c.seq)).all()
        assert [tuple(k) for k in kinds] == [("p1", "vat:sup:0.21"), ("p1", "shared_supply@sup"),
                                             ("p2", "vat:sup:0.21"), ("p2", "shared_supply@sup")]
        assert ledger.verify(conn).ok
    _vat_is_the_rate_times_the_base(engine)
    assert settle(engine, PERIOD).new_postings == 0 and post_sharing(engine, PERIOD).new_postings == 0


def test_the_solidarity_fund_goes_through_the_community_account(engine, tmp_path):
    _community(engine, tmp_path, energy=DUO, market=MARKET)
    rb = rulebook_from_data({"price": {"rule": "solidarity", "uniform_eur_per_kwh": "0.12",
                                       "reduced_eur_per_kwh": "0.05", "funded_by": "sellers"},
                             "solidarity": {"members": ["p1"]}})
    settle(engine, PERIOD)
    post_sharing(engine, PERIOD, rulebook=rb)
    # p1 buys at 0.12 through its supplier (1000 kWh x (0.12 - 0.158)) and is reduced 1000 x 0.07 by the fund,
    # which p0, the only seller, pays; p0's supplier pays it 1000 x (0.12 - 0.125).
    assert _cents(engine, "p1", ("share",)) == {"shared_supply@sup": -3800, "solidarity_reduction@coop": -7000,
                                                "vat:sup:0.21": -798}
    assert {k: v for k, v in _cents(engine, "p0", ("share",)).items() if not k.startswith("vat")} == {
        "shared_feed_in@sup": 500, "solidarity_levy@coop": 7000}
    with engine.connect() as conn:
        assert ledger.balances(conn).get("party:coop", 0) == 0 and ledger.verify(conn).ok
    no_coop = HEAD.split("[[parties]]\nid = \"coop\"")[0]
    (tmp_path / "c.toml").write_text(no_coop + "".join(member(i, EANS[i]) for i in (0, 1)))
    load_community(engine, tmp_path / "c.toml")
    with pytest.raises(SharingServiceError, match="exactly one party with role community"):
        post_sharing(engine, PERIOD, rulebook=rb)
    post_sharing(engine, PERIOD)  # without solidarity no community account is needed


def test_shared_energy_appears_on_the_suppliers_bills(engine, tmp_path):
    from kwartier.services.billing import bill, find

    _community(engine, tmp_path, energy=DUO, market=MARKET)
    settle(engine, PERIOD)
    post_sharing(engine, PERIOD)
    summary = bill(engine, PERIOD, None, today=date(2026, 3, 2))  # every invoice is a valid EN 16931 e-invoice
    assert {i["supplier"] for i in summary.invoices} == {"sup"}
    for inv in summary.invoices:
        owed = sum(_cents(engine, str(inv["participant"])).values())
        assert Decimal(str(inv["total"])) * 100 == owed  # the invoice is what the journal says
    number = next(i["number"] for i in summary.invoices if i["participant"] == "p1")
    invoice, _ = find(engine, str(number))
    line = next(ln for ln in invoice.lines if ln.component == "shared_supply")
    assert (line.section, line.amount_cents, str(line.quantity), line.vat_category) == (
        "community", -1650, "1000.000", "S")
    assert line.label == "Gedeelde energie uit de gemeenschap: gemeenschapsprijs in plaats van de leveringsprijs"


def test_a_rulebook_changes_the_split_and_the_solidarity_fund_is_visible(engine, tmp_path):
    _community(engine, tmp_path, prices=False)
    rb = rulebook_from_data({"sharing": {"rule": "priority", "groups": [["p2"]]},
                             "price": {"rule": "solidarity", "reduced_eur_per_kwh": "0.05", "funded_by": "sellers"},
                             "solidarity": {"members": ["p2"]}})
    result = compute_sharing(engine, PERIOD, rulebook=rb)
    p2 = result.to_json()["members"][2]  # type: ignore[index]
    assert p2["community_kwh"] == "403.200" and p2["complement_kwh"] == "0.000"  # served first, in full
    # p2's reduction: 403.2 kWh x (0.15 - 0.05) = 40.32 EUR, levied on the only seller, p0.
    assert result.money.reduction_nano.tolist() == [0, 0, 40_320_000_000]
    assert result.money.levy_nano.tolist() == [40_320_000_000, 0, 0] and result.money.conserved()


def test_a_dynamic_rule_without_keys_is_explained(engine, tmp_path):
    _community(engine, tmp_path, prices=False)
    with pytest.raises(SharingServiceError, match="needs keys per quarter"):
        compute_sharing(engine, PERIOD, rulebook=rulebook_from_data({"sharing": {"rule": "dynamic"}}))
    with pytest.raises(SharingServiceError, match="not YYYY-MM"):
        compute_sharing(engine, "2026/02")


def test_dynamic_keys_from_a_csv_file(engine, tmp_path):
    _community(engine, tmp_path, prices=False)
    first, second = STARTS[0].strftime("%Y-%m-%dT%H:%M:%SZ"), STARTS[1].strftime("%Y-%m-%dT%H:%M:%SZ")
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


def test_the_governed_rules_in_force_are_used(engine, tmp_path):
    governance = pytest.importorskip("kwartier.services.governance")
    _community(engine, tmp_path, prices=False)
    governance.found(engine, rulebook_from_data({"sharing": {"rule": "static", "keys": {"p2": "1"}}}))
    result = compute_sharing(engine, PERIOD)
    assert [m["community_kwh"] for m in result.to_json()["members"]] == ["0.000", "0.000", "403.200"]  # type: ignore[index]
    assert [r.version for r in result.rules] == [1]


def test_a_rule_change_and_a_member_leaving_mid_month_split_the_month(engine, tmp_path):
    governance = pytest.importorskip("kwartier.services.governance")
    from datetime import UTC, datetime

    _community(engine, tmp_path, prices=False)
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
    assert done.exit_code != 0 and "not settled" in done.output
    settle(engine, PERIOD)
    done = runner.invoke(_cli(), ["community", "share", "--period", PERIOD, "--post"])
    assert done.exit_code == 0, done.output
    with engine.connect() as conn:
        assert conn.execute(select(s.journal.c.kind).where(s.journal.c.kind == "share")).all()
    engine.dispose()
