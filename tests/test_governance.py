"""Governance: quarter boundaries, merge patches, tallies, and a rule change proposed, voted, applied and recorded."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from communities import HEAD, member, write_generic
from kwartier.community import governance as g
from kwartier.community.rules import GovernanceSettings, default_rulebook
from kwartier.ids import make_ean18
from kwartier.services import governance as gov
from kwartier.services.community import load_community
from kwartier.services.imports import import_readings
from kwartier.settle import ledger
from kwartier.store import schema as s
from kwartier.store import schema_governance as sg

EANS = [make_ean18(f"8710000000000{i:04d}") for i in range(1, 7)]
T = datetime(2026, 3, 1, 12, tzinfo=UTC)  # "now" in the service tests
SETTINGS = GovernanceSettings(quorum=Decimal("0.5"), majority=Decimal("0.5"), notice_quarters=96)


# --- pure ---------------------------------------------------------------------------------------------


def test_quarter_boundaries():
    assert g.is_quarter_boundary(datetime(2026, 3, 29, 1, 45, tzinfo=UTC))
    assert not g.is_quarter_boundary(datetime(2026, 3, 29, 1, 46, tzinfo=UTC))
    assert not g.is_quarter_boundary(datetime(2026, 3, 29, 1, 45, 0, 1, tzinfo=UTC))
    assert g.next_quarter_boundary(datetime(2026, 3, 29, 1, 46, tzinfo=UTC)) == datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    assert g.next_quarter_boundary(datetime(2026, 3, 29, 2, 0, tzinfo=UTC)) == datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    with pytest.raises(g.GovernanceError, match=r"not a quarter boundary.*02:00"):
        g.require_boundary(datetime(2026, 3, 29, 1, 50, tzinfo=UTC), "effective_from")


def test_merge_patch_follows_rfc_7396():
    doc = {"a": "b", "c": {"d": "e", "f": "g"}}
    assert g.merge_patch(doc, {"a": "z", "c": {"f": None}}) == {"a": "z", "c": {"d": "e"}}
    assert g.merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert doc == {"a": "b", "c": {"d": "e", "f": "g"}}  # unchanged


def test_apply_change_validates_the_result():
    rb = g.apply_change(default_rulebook(), {"price": {"rule": "uniform", "uniform_eur_per_kwh": "0.12"}})
    assert rb.price.rule == "uniform" and rb.price.uniform_eur_per_kwh == Decimal("0.12")
    assert rb.digest() != default_rulebook().digest()
    with pytest.raises(g.GovernanceError, match=r"price.*uniform_eur_per_kwh"):
        g.apply_change(default_rulebook(), {"price": {"rule": "uniform"}})
    with pytest.raises(g.GovernanceError, match="unknown field"):
        g.apply_change(default_rulebook(), {"sharng": {"rule": "static"}})


@pytest.mark.parametrize(("votes", "eligible", "closed", "expected"), [
    ({"a": "yes", "b": "yes", "c": "no"}, 5, True, "accepted"),  # 3/5 voted >= 50 %, 2/3 yes > 50 %
    ({"a": "yes", "b": "no"}, 5, True, "rejected"),  # 2/5 < quorum
    ({"a": "yes", "b": "no", "c": "abstain"}, 5, True, "rejected"),  # quorum met, 1/2 is not > 50 %
    ({"a": "yes", "b": "yes", "c": "abstain"}, 5, True, "accepted"),  # abstain counts for the quorum only
    ({"a": "yes", "b": "yes", "c": "yes"}, 5, False, "accepted"),  # 3 yes of 5: 2 more no cannot beat it
    ({"a": "yes", "b": "yes"}, 5, False, "open"),
    ({"a": "no", "b": "no", "c": "no"}, 5, False, "rejected"),  # 2 more yes cannot win
])
def test_outcome(votes, eligible, closed, expected):
    t = g.tally(votes, [chr(ord("a") + i) for i in range(eligible)])
    assert g.outcome(t, SETTINGS, closed) == expected


@given(yes=st.integers(0, 8), no=st.integers(0, 8), abstain=st.integers(0, 8), extra=st.integers(0, 8))
def test_an_early_decision_is_never_overturned_by_the_remaining_votes(yes, no, abstain, extra):
    eligible = yes + no + abstain + extra
    early = g.outcome(g.Tally(eligible, yes, no, abstain), SETTINGS, closed=False)
    if early == "open":
        return
    for more_yes in range(extra + 1):  # every way the rest could vote (or not)
        for more_no in range(extra - more_yes + 1):
            final = g.outcome(g.Tally(eligible, yes + more_yes, no + more_no, abstain), SETTINGS, closed=True)
            assert final == early


def _v(n: int, at: datetime) -> g.Version:
    rb = default_rulebook()
    return g.Version(n, at, rb, f"d{n}")


def test_version_at_and_spans():
    vs = [_v(1, datetime(2026, 1, 1, tzinfo=UTC)), _v(2, datetime(2026, 3, 15, 11, tzinfo=UTC))]
    assert g.version_at(vs, datetime(2025, 12, 31, tzinfo=UTC)) is None
    assert g.version_at(vs, datetime(2026, 3, 15, 10, 45, tzinfo=UTC)).version == 1
    assert g.version_at(vs, datetime(2026, 3, 15, 11, tzinfo=UTC)).version == 2
    parts = g.spans(vs, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    assert [(p.start.day, p.stop.day, p.version.version) for p in parts] == [(1, 15, 1), (15, 1, 2)]
    assert len(g.spans(vs, datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))) == 1


def test_membership_mask_by_quarter():
    joined, left = datetime(2026, 3, 1, 10, 15, tzinfo=UTC), datetime(2026, 3, 1, 11, tzinfo=UTC)
    ms = [g.Membership("a", joined, left), g.Membership("b", datetime(2026, 1, 1, tzinfo=UTC))]
    starts = pl.datetime_range(datetime(2026, 3, 1, 10, tzinfo=UTC), datetime(2026, 3, 1, 11, 15, tzinfo=UTC),
                               "15m", eager=True, time_zone="UTC")
    mask = g.membership_mask(ms, ["a", "b", "c"], starts.dt.replace_time_zone(None).to_numpy())
    assert mask.tolist() == [[False, True, True, True, False, False], [True] * 6, [False] * 6]
    assert g.members_at(ms, joined) == ["a", "b"] and g.members_at(ms, left) == ["b"]


# --- in the store ---------------------------------------------------------------------------------------


def _community(engine, tmp_path, n: int = 5):
    text = HEAD + "".join(member(i, EANS[i - 1]) for i in range(1, n + 1))
    path = tmp_path / "community.toml"
    path.write_text(text)
    load_community(engine, path)
    return engine


@pytest.fixture
def founded(engine, tmp_path):
    _community(engine, tmp_path)
    gov.found(engine, effective_from=datetime(2026, 1, 1, tzinfo=UTC), now=T)
    return engine


UNIFORM = {"price": {"rule": "uniform", "uniform_eur_per_kwh": "0.15"}}
CHANGE_AT = datetime(2026, 3, 15, 11, tzinfo=UTC)  # 12:00 in Amsterdam, mid-month


def test_a_rule_change_is_proposed_voted_applied_and_recorded(founded):
    pid = gov.propose(founded, "p1", "A uniform community price", UNIFORM, CHANGE_AT, T + timedelta(days=7), now=T)
    assert gov.vote(founded, pid, "p1", "yes", now=T + timedelta(hours=1)) == "open"
    assert gov.vote(founded, pid, "p2", "no", now=T + timedelta(hours=2)) == "open"
    assert gov.vote(founded, pid, "p3", "yes", now=T + timedelta(hours=3)) == "open"  # 2 no to come could tie
    assert gov.vote(founded, pid, "p4", "yes", now=T + timedelta(hours=4)) == "accepted"  # 3 yes of 5 is sure
    before, after = CHANGE_AT - timedelta(minutes=15), CHANGE_AT
    assert gov.rules_in_force(founded, before, now=T).price.rule == "mid_market"
    assert gov.rules_in_force(founded, after, now=T).price.uniform_eur_per_kwh == Decimal("0.15")
    spans = gov.rule_spans(founded, datetime(2026, 2, 28, 23, tzinfo=UTC), datetime(2026, 3, 31, 22, tzinfo=UTC))
    assert [(sp.start, sp.version.version) for sp in spans] == [(datetime(2026, 2, 28, 23, tzinfo=UTC), 1),
                                                              (CHANGE_AT, 2)]
    shown = gov.show(founded, now=T + timedelta(days=30))
    assert shown["in_force"]["version"] == 2 and shown["proposals"][0]["tally"] == {
        "eligible": 5, "yes": 3, "no": 1, "abstain": 0, "version": 2}
    with founded.connect() as conn:
        assert ledger.verify(conn).ok
        records = conn.execute(select(s.journal.c.participant, s.journal.c.component, s.journal.c.inputs)
                               .where(s.journal.c.kind == "record").order_by(s.journal.c.seq)).all()
        assert ledger.balances(conn) == {}  # records move no money
    what = [r.component for r in records]
    assert what[:6] == ["rulebook:v1", "join", "join", "join", "join", "join"]
    assert what[6:] == ["proposal:1", "vote:1", "vote:1", "vote:1", "vote:1", "rulebook:v2"]
    assert records[-1].inputs["digest"] == gov.rules_in_force(founded, after, now=T).digest()
    assert [r.inputs["choice"] for r in records[7:11]] == ["yes", "no", "yes", "yes"]


def test_a_proposal_without_quorum_is_rejected_at_closing(founded):
    pid = gov.propose(founded, "p1", "Static keys", {"sharing": {"rule": "static", "keys": {"p1": "1"}}},
                      CHANGE_AT, T + timedelta(days=2), now=T)
    gov.vote(founded, pid, "p1", "yes", now=T)
    gov.vote(founded, pid, "p2", "yes", now=T)
    assert gov.decide_due(founded, now=T + timedelta(days=1)) == []  # still open
    assert gov.decide_due(founded, now=T + timedelta(days=3)) == [(pid, "rejected")]
    assert gov.rules_in_force(founded, CHANGE_AT, now=T).sharing.rule == "prorata"
    with pytest.raises(g.GovernanceError, match="rejected"):
        gov.vote(founded, pid, "p3", "yes", now=T + timedelta(days=1))


def test_refusals_name_what_is_wrong(founded):
    with pytest.raises(g.GovernanceError, match="96 quarters' notice"):
        gov.propose(founded, "p1", "Too soon", UNIFORM, T + timedelta(hours=2), now=T)
    with pytest.raises(g.GovernanceError, match="not a quarter boundary"):
        gov.propose(founded, "p1", "Odd time", UNIFORM, CHANGE_AT + timedelta(minutes=5), now=T)
    with pytest.raises(g.GovernanceError, match="not a member"):
        gov.propose(founded, "p9", "Outsider", UNIFORM, CHANGE_AT, now=T)
    with pytest.raises(g.GovernanceError, match="uniform_eur_per_kwh"):
        gov.propose(founded, "p1", "Broken", {"price": {"rule": "uniform"}}, CHANGE_AT, now=T)
    pid = gov.propose(founded, "p1", "Fine", UNIFORM, CHANGE_AT, now=T)
    gov.vote(founded, pid, "p2", "yes", now=T)
    with pytest.raises(g.GovernanceError, match="final"):
        gov.vote(founded, pid, "p2", "no", now=T)
    with pytest.raises(g.GovernanceError, match="not one of"):
        gov.vote(founded, pid, "p3", "maybe", now=T)
    with pytest.raises(g.GovernanceError, match="founded already"):
        gov.found(founded, now=T)


def test_joining_and_leaving_at_quarter_boundaries_set_voting_rights(founded, tmp_path):
    join_at = datetime(2026, 3, 2, 8, 15, tzinfo=UTC)
    with pytest.raises(g.GovernanceError, match="not a participant"):
        gov.join(founded, "p6", join_at, now=T)
    _community(founded, tmp_path, n=6)  # p6 is added to the definition
    with pytest.raises(g.GovernanceError, match="not a quarter boundary"):
        gov.join(founded, "p6", join_at + timedelta(minutes=1), now=T)
    with pytest.raises(g.GovernanceError, match="in the past"):
        gov.join(founded, "p6", T - timedelta(hours=1), now=T)
    gov.join(founded, "p6", join_at, now=T)
    gov.leave(founded, "p5", join_at, now=T)
    assert gov.members_at(founded, join_at - timedelta(minutes=15)) == ["p1", "p2", "p3", "p4", "p5"]
    assert gov.members_at(founded, join_at) == ["p1", "p2", "p3", "p4", "p6"]
    starts = pl.datetime_range(join_at - timedelta(minutes=15), join_at + timedelta(minutes=15), "15m", eager=True,
                               time_zone="UTC")
    mask = gov.membership_mask(founded, ["p5", "p6"], starts)
    assert mask.tolist() == [[True, False, False], [False, True, True]]
    pid = gov.propose(founded, "p6", "Newcomer's idea", UNIFORM, CHANGE_AT, now=join_at)
    with pytest.raises(g.GovernanceError, match="p5 was not a member"):
        gov.vote(founded, pid, "p5", "yes", now=join_at)
    with founded.connect() as conn:
        assert ledger.verify(conn).ok
        rows = conn.execute(select(sg.memberships.c.participant, sg.memberships.c.left_at)
                            .order_by(sg.memberships.c.id)).all()
    assert rows[-1] == ("p6", None) and rows[4] == ("p5", join_at)
    assert isinstance(mask, np.ndarray)


def test_changing_a_recorded_vote_breaks_the_chain(founded):
    pid = gov.propose(founded, "p1", "Uniform", UNIFORM, CHANGE_AT, now=T)
    gov.vote(founded, pid, "p2", "no", now=T)
    with founded.begin() as conn:
        seq = conn.execute(select(sg.votes.c.ledger_seq)).scalar_one()
        conn.execute(s.journal.update().where(s.journal.c.seq == seq).values(
            inputs={"proposal": pid, "choice": "yes"}))
    with founded.connect() as conn:
        verdict = ledger.verify(conn)
    assert not verdict.ok and verdict.first_bad == seq


# --- settlement under the rules in force ------------------------------------------------------------------


@pytest.mark.slow
def test_a_month_across_a_rule_change_and_a_leaving_member_is_shared_per_quarter(founded, tmp_path):
    from kwartier.services.sharing import compute_sharing
    from kwartier.services.sharing_ledger import post_sharing

    start, stop = datetime(2026, 2, 28, 23, tzinfo=UTC), datetime(2026, 3, 31, 22, tzinfo=UTC)  # local March
    starts = pl.datetime_range(start, stop - timedelta(minutes=15), "15m", eager=True, time_zone="UTC")
    n = starts.len()
    assert n == 31 * 96 - 4  # the spring DST day
    for i, (imp, exp) in enumerate([(0, 1000), (1000, 0), (1000, 0), (0, 0), (0, 0)], start=1):  # p1 feeds in 1 kWh
        frame = pl.DataFrame({"interval_start": starts, "import_wh": [imp] * n, "export_wh": [exp] * n})
        import_readings(founded, write_generic(frame, tmp_path / f"p{i}.csv"), EANS[i - 1])
    leave_at = datetime(2026, 3, 10, 8, 15, tzinfo=UTC)
    gov.leave(founded, "p3", leave_at, now=T)
    change = {"price": {"rule": "uniform", "uniform_eur_per_kwh": "0.10"}}
    pid = gov.propose(founded, "p2", "Cheaper shared kWh", change, CHANGE_AT, T + timedelta(days=7), now=T)
    for voter in ("p1", "p2", "p3"):
        gov.vote(founded, pid, voter, "yes", now=T)
    result = compute_sharing(founded, "2026-03")
    assert [(r.start, r.version) for r in result.rules] == [(start, 1), (CHANGE_AT, 2)]
    q = timedelta(minutes=15)
    left, changed = (leave_at - start) // q, (CHANGE_AT - start) // q
    assert changed == 14 * 96 + 48  # 1 March 00:00 to 15 March 12:00 local, all in winter time
    who = list(result.allocation.participants)
    p2, p3 = who.index("p2"), who.index("p3")
    # p2 and p3 share p1's kWh half and half until p3 leaves, then p2 takes it all
    assert int(result.allocation.community_wh[p3].sum()) == left * 500
    assert int(result.allocation.community_wh[p2].sum()) == left * 500 + (n - left) * 1000
    # version 1: mid-market (0.05 + 0.25) / 2 = 0.15 EUR/kWh; version 2: uniform 0.10 EUR/kWh
    assert int(result.money.bought_nano[p3]) == left * 75_000_000
    assert int(result.money.bought_nano[p2]) == (left * 75_000_000 + (changed - left) * 150_000_000
                                                + (n - changed) * 100_000_000)
    from kwartier.services.imports import import_prices
    from kwartier.services.settle import settle

    pl.DataFrame({"timestamp": starts.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),  # the plans price the posted kWh
                  "price_eur_per_mwh": ["90.00"] * n}).write_csv(tmp_path / "prices.csv")
    import_prices(founded, tmp_path / "prices.csv")
    settle(founded, "2026-03")  # the sharing lines correct the settlement: it comes first
    post_sharing(founded, "2026-03")
    with founded.connect() as conn:
        assert ledger.verify(conn).ok
    from kwartier.services.audit import reproduce

    audit = reproduce(founded, "2026-03")
    assert audit.identical and [p["part"] for p in audit.parts] == ["settlement", "sharing"]
    assert audit.parts[1]["lines"] == 6  # 1 sale, 2 buys, each with its supplier's VAT line
    assert [r["version"] for r in audit.rules] == [1, 2]
    with founded.begin() as conn:  # someone edits the accepted rulebook in its table, not through a vote
        data = conn.execute(select(sg.rulebook_versions.c.rulebook).where(sg.rulebook_versions.c.version == 2)
                            ).scalar_one()
        data["price"]["uniform_eur_per_kwh"] = "0.02"
        conn.execute(sg.rulebook_versions.update().where(sg.rulebook_versions.c.version == 2).values(rulebook=data))
    tampered = reproduce(founded, "2026-03")
    assert not tampered.identical and tampered.problems[0].startswith("rulebook version 2")
    assert {d["component"] for d in tampered.diff} >= {"shared_supply@sup", "shared_feed_in@sup"}
    assert gov.verify_records(founded) == tampered.problems


@pytest.mark.slow
def test_a_member_joining_and_leaving_mid_month_is_settled_only_while_in(engine, tmp_path):
    from conftest import data_file
    from kwartier.ingest import read_prices, read_readings
    from kwartier.money import nano_to_cents
    from kwartier.services.imports import import_prices
    from kwartier.services.settle import settle
    from kwartier.tariffs.cost import cost
    from kwartier.tariffs.plan import load_plan

    smp, prices = "household_nl/slimmemeterportal_2023_15min.csv", "prices_nl/mark_vis_epex_json/prices_2023.json"
    main = "871687120058657526"
    text = HEAD + member(1, main) + member(2, EANS[1], valid_from="2023-03-15") + 'valid_to = 2023-03-20\n'
    (tmp_path / "c.toml").write_text(text)
    load_community(engine, tmp_path / "c.toml")
    import_prices(engine, data_file(prices))
    for ean in (main, EANS[1]):
        import_readings(engine, data_file(smp), ean)
    summary = settle(engine, "2023-03")
    readings, market = read_readings(data_file(smp)).frame, read_prices(data_file(prices)).frame
    plan = load_plan("nl-dynamic-2026")
    whole = cost(plan, readings, market, date(2023, 3, 1), date(2023, 4, 1)).total_cents
    part = cost(plan, readings, market, date(2023, 3, 15), date(2023, 3, 20)).total_cents
    assert nano_to_cents(summary.by_participant["p1"]) == whole
    assert nano_to_cents(summary.by_participant["p2"]) == part and 0 < part < whole
    gov.found(engine, effective_from=datetime(2023, 1, 1, tzinfo=UTC))
    joined = datetime(2023, 3, 14, 23, tzinfo=UTC)  # local midnight of 15 March: a quarter boundary
    assert gov.members_at(engine, joined - timedelta(minutes=15)) == ["p1"]
    assert gov.members_at(engine, joined) == ["p1", "p2"]
    from kwartier.services.audit import reproduce

    assert reproduce(engine, "2023-03").identical


def test_migration_0005_creates_exactly_the_governance_tables(engine):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    mine = {t.name for t in sg.TABLES}
    assert mine <= set(s.metadata.tables)

    def only_mine(obj, name, type_, reflected, compare_to):  # other helpers' migrations add their own tables
        table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
        return table in mine

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": only_mine})
        assert compare_metadata(context, s.metadata) == []


def test_the_voting_rules_themselves_are_governed(founded):
    stricter = {"governance": {"quorum": "1"}}  # from CHANGE_AT on, every member must vote
    pid = gov.propose(founded, "p1", "Everyone votes", stricter, CHANGE_AT, now=T)
    for voter in ("p1", "p2", "p3"):
        gov.vote(founded, pid, voter, "yes", now=T)
    later = CHANGE_AT + timedelta(days=1)
    second = gov.propose(founded, "p1", "Uniform", UNIFORM, later + timedelta(days=2), later + timedelta(days=1),
                         now=later)
    for voter in ("p1", "p2", "p3", "p4"):
        assert gov.vote(founded, second, voter, "yes", now=later) == "open"  # 4 of 5 is no quorum any more
    assert gov.decide_due(founded, now=later + timedelta(days=1)) == [(second, "rejected")]


def test_cli_found_propose_vote_show(tmp_path, monkeypatch):
    import json

    import typer
    from typer.testing import CliRunner

    from kwartier.cli_governance import register
    from kwartier.store import open_store

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    _community(open_store(url), tmp_path)
    monkeypatch.setenv("KWARTIER_DATABASE_URL", url)
    app = typer.Typer()
    register(app)
    run = CliRunner().invoke
    assert run(app, ["governance", "found"]).exit_code == 0
    change = json.dumps(UNIFORM)
    bad = run(app, ["governance", "propose", "--by", "p1", "--title", "t", "--change", change, "--from",
                    "2030-01-01T00:05Z"])
    assert bad.exit_code == 2 and "not a quarter boundary" in bad.output
    ok = run(app, ["governance", "propose", "--by", "p1", "--title", "Uniform", "--change", change, "--from",
                   "2030-01-01T00:00+01:00", "--json"])
    assert ok.exit_code == 0, ok.output
    pid = json.loads(ok.output)["proposal"]
    for voter in ("p1", "p2", "p3"):
        assert run(app, ["governance", "vote", str(pid), "--by", voter, "--choice", "yes"]).exit_code == 0
    shown = json.loads(run(app, ["governance", "show", "--json"]).output)
    assert [v["version"] for v in shown["versions"]] == [1, 2] and shown["in_force"]["version"] == 1
    assert shown["versions"][1]["effective_from"] == "2029-12-31T23:00:00+00:00"
    assert run(app, ["privacy", "consent", "p2", "steering"]).exit_code == 0
    assert run(app, ["privacy", "export", "p2", "--out", str(tmp_path / "p2.json")]).exit_code == 0
    assert json.loads((tmp_path / "p2.json").read_text())["consents"][0]["purpose"] == "steering"
    assert run(app, ["privacy", "erase", "p2"]).exit_code == 2  # needs --yes
    assert run(app, ["privacy", "erase", "p2", "--yes"]).exit_code == 0
