"""Members' data: consent refusals, the k-household rule, access log, export, and erasure keeping the ledger green."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from sqlalchemy import insert, select

from communities import HEAD, member, write_generic
from kwartier.ids import make_ean18
from kwartier.services import governance as gov
from kwartier.services import privacy
from kwartier.services.community import current_definition, load_community
from kwartier.services.imports import import_readings
from kwartier.settle import ledger
from kwartier.store import schema as s
from kwartier.store import schema_governance as sg

EANS = [make_ean18(f"8710000000000{i:04d}") for i in range(1, 7)]
DAY = datetime(2026, 3, 2, 23, tzinfo=UTC)  # 3 March 2026, local midnight
N = 8  # quarters of readings per household


def _quarters(n: int = N) -> pl.Series:
    return pl.datetime_range(DAY, DAY + timedelta(minutes=15 * (n - 1)), "15m", eager=True, time_zone="UTC")


@pytest.fixture
def community(engine, tmp_path):
    path = tmp_path / "community.toml"
    path.write_text(HEAD + "".join(member(i, EANS[i - 1]) for i in range(1, 7)))
    load_community(engine, path)
    for i in range(1, 7):  # household i uses 100*i Wh per quarter, feeds in 10*i; household 6 only the first 4
        n = 4 if i == 6 else N
        frame = pl.DataFrame({"interval_start": _quarters(n), "import_wh": [100 * i] * n, "export_wh": [10 * i] * n})
        import_readings(engine, write_generic(frame, tmp_path / f"h{i}.csv"), EANS[i - 1])
    return engine


def test_consent_defaults_grants_and_refusals(community):
    assert privacy.consents(community, "p1") == {"billing": True, "steering": False, "research": False,
                                                 "grid": False}
    with pytest.raises(privacy.ConsentRequired, match=r"p1 has not consented .* steering"):
        privacy.require_consent(community, "p1", "steering")
    with pytest.raises(privacy.ConsentRequired):
        privacy.readings_for_purpose(community, "p1", "research", DAY, DAY + timedelta(days=1), actor="uni",
                                     role="operator")
    privacy.set_consent(community, "p1", "research", True, by="p1")
    got = privacy.readings_for_purpose(community, "p1", "research", DAY, DAY + timedelta(days=1), actor="uni",
                                       role="operator")
    assert got["import_wh"].to_list() == [100] * N and set(got["connection"]) == {EANS[0]}
    privacy.set_consent(community, "p1", "research", False, by="p1")  # withdrawn again
    with pytest.raises(privacy.ConsentRequired):
        privacy.require_consent(community, "p1", "research")
    with pytest.raises(privacy.PrivacyError, match="billing is the basis"):
        privacy.set_consent(community, "p1", "billing", False, by="p1")
    with pytest.raises(privacy.PrivacyError, match="unknown purpose"):
        privacy.set_consent(community, "p1", "marketing", True, by="p1")
    log = privacy.access_log(community, "p1")
    assert [(r["actor"], r["role"], r["participant"], r["purpose"]) for r in log] == [
        ("uni", "operator", "p1", "research")]  # only the read that was allowed
    assert log[0]["what"].startswith("readings 2026-03-02")


def test_k_anonymous_keeps_only_groups_of_k_households():
    frame = pl.DataFrame({"q": [1, 1, 1, 2, 2, 2, 2], "h": ["a", "b", "b", "a", "b", "c", "d"],
                          "import_wh": [1, 2, 3, 4, 5, 6, 7], "export_wh": [0, 0, 1, 0, 0, 0, 2]})
    out = privacy.k_anonymous(frame, ["q"], "h", k=3)
    assert out.to_dicts() == [{"q": 2, "import_wh": 22, "export_wh": 2, "households": 4}]
    assert privacy.k_anonymous(frame, ["q"], "h", k=2)["households"].to_list() == [2, 4]
    with pytest.raises(privacy.PrivacyError):
        privacy.k_anonymous(frame, ["q"], "h", k=0)


def test_aggregate_for_grid_needs_consent_and_k_households(community):
    stop = DAY + timedelta(days=1)
    with pytest.raises(privacy.TooFewHouseholds, match=r"at least 5 households .* has 0"):
        privacy.aggregate_for_grid(community, DAY, stop, actor="dso")
    for i in (2, 3, 4, 5, 6):
        privacy.set_consent(community, f"p{i}", "grid", True, by=f"p{i}")
    agg = privacy.aggregate_for_grid(community, DAY, stop, actor="dso")
    # quarters 0-3: households 2..6 (5 of them): 100*(2+3+4+5+6) Wh; quarters 4-7 have only 4: withheld
    assert agg["interval_start"].to_list() == _quarters(4).to_list()
    assert agg["import_wh"].to_list() == [2000] * 4 and agg["export_wh"].to_list() == [200] * 4
    assert agg["households"].to_list() == [5] * 4
    assert privacy.aggregate_for_grid(community, DAY, stop, actor="dso", k=4).height == N  # k is configurable
    privacy.set_consent(community, "p6", "grid", False, by="p6")
    with pytest.raises(privacy.TooFewHouseholds, match="has 4"):
        privacy.aggregate_for_grid(community, DAY, stop, actor="dso")
    log = privacy.access_log(community)
    assert len(log) == 2 and all(r["participant"] is None and r["purpose"] == "grid" for r in log)


def _user(engine, name: str, participant: str) -> None:
    with engine.begin() as conn:
        conn.execute(insert(s.users).values(username=name, password_hash="x", role="participant",
                                            participant=participant, created_at=datetime.now(UTC)))


def test_export_holds_everything_about_the_member_and_is_logged(community):
    _user(community, "anna.p3@example.org", "p3")
    privacy.set_consent(community, "p3", "steering", True, by="p3")
    data = privacy.export_member(community, "p3", actor="anna.p3@example.org", role="participant")
    kinds = {(e["kind"], e["key"]) for e in data["entities"]}
    assert kinds == {("participant", "p3"), ("connection", EANS[2]), ("contract", "c3")}
    person = next(e["data"] for e in data["entities"] if e["kind"] == "participant")
    assert (person["name"], person["email"]) == ("Household 3", "p3@example.org")
    assert len(data["readings"]) == N and {r["import_wh"] for r in data["readings"]} == {300}
    assert data["consents"][0]["purpose"] == "steering" and data["accounts"][0]["username"] == "anna.p3@example.org"
    assert "password_hash" not in json.dumps(data)
    assert privacy.access_log(community, "p3")[-1]["what"] == "export of all data"
    json.dumps(data)  # JSON-ready as it is


def test_erasure_pseudonymises_every_version_and_keeps_the_ledger_green(community, tmp_path):
    renamed = HEAD + "".join(member(i, EANS[i - 1]) for i in range(1, 7))
    (tmp_path / "v2.toml").write_text(renamed.replace('name = "Household 3"', 'name = "Anna de Vries"'))
    load_community(community, tmp_path / "v2.toml")  # a second version of p3, with a real-looking name
    gov.found(community, effective_from=datetime(2026, 1, 1, tzinfo=UTC))
    with community.begin() as conn:  # a settled amount for p3, as a settle run posts it
        run = conn.execute(insert(s.settle_runs).values(period="2026-03", started_at=datetime.now(UTC),
                                                        summary={})).inserted_primary_key[0]
        ledger.append(conn, [ledger.Posting("2026-03", "settlement", "p3", "sup", 1_234_000_000, EANS[2],
                                            "supply@sup", {"plan": "x"})], run)
    _user(community, "anna@devries.nl", "p3")
    privacy.set_consent(community, "p3", "research", True, by="anna@devries.nl")
    privacy.export_member(community, "p3", actor="anna@devries.nl", role="participant")
    with community.connect() as conn:
        before = ledger.verify(conn)
        hashes = conn.execute(select(s.journal.c.hash).order_by(s.journal.c.seq)).scalars().all()
    assert before.ok
    assert current_definition(community).participant("p3").name == "Anna de Vries"
    summary = privacy.erase_member(community, "p3", requested_by="operator")
    pseudonym = summary["pseudonym"]
    assert summary["entity_versions_pseudonymised"] == 2 and summary["accounts_removed"] == 1
    assert summary["retained"]["journal_entries"] == 2  # the posting and the membership record
    with community.connect() as conn:
        after = ledger.verify(conn)
        assert after.ok and after.entries == before.entries + 1  # the erasure itself is recorded
        assert conn.execute(select(s.journal.c.hash).order_by(s.journal.c.seq)).scalars().all()[:-1] == hashes
        versions = conn.execute(select(s.entities.c.data).where(s.entities.c.kind == "participant",
                                                                s.entities.c.key == "p3")).scalars().all()
        assert conn.execute(select(s.users).where(s.users.c.participant == "p3")).first() is None
        erasure = conn.execute(select(sg.erasures)).one()
    assert len(versions) == 2 and all(v["name"] == pseudonym and v["email"] == f"{pseudonym}@erased.invalid"
                                      for v in versions)
    assert current_definition(community).participant("p3").name == pseudonym  # the cache was refreshed
    assert erasure.requested_by == "operator" and erasure.pseudonym == pseudonym
    export = json.dumps(privacy.export_member(community, "p3", actor="operator", role="operator"))
    assert "Anna de Vries" not in export and "Household 3" not in export and "p3@example.org" not in export
    assert "devries" not in export  # the user name that read and consented is pseudonymised in the logs too
    assert privacy.consents(community, "p3") == {"billing": True, "steering": False, "research": False, "grid": False}
    with pytest.raises(privacy.PrivacyError, match="no participant"):
        privacy.erase_member(community, "p99", requested_by="operator")
