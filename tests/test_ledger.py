"""The ledger: balanced postings, and any single changed, deleted or reordered journal row is detected."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, insert, select, update

from kwartier.settle import ledger
from kwartier.store import schema as s


def _post(engine, postings: list[ledger.Posting]) -> int:
    """Append like a settle run does: a run row, the postings, the head recorded in the run's summary."""
    with engine.begin() as conn:
        run_id = conn.execute(insert(s.settle_runs).values(period="2026-10", started_at=datetime.now(UTC),
                                                           summary={})).inserted_primary_key[0]
        n = ledger.append(conn, postings, run_id)
        entries, head = ledger.head(conn)
        conn.execute(update(s.settle_runs).where(s.settle_runs.c.id == run_id)
                     .values(summary={"journal": {"entries": entries, "head": head}}))
    return n


def _p(participant: str, payee: str, nano: int, component: str = "supply") -> ledger.Posting:
    return ledger.Posting("2026-10", "settlement", participant, payee, nano, "871000000000000013", component,
                          {"plan": "abc", "readings": "0123456789abcdef"})


@pytest.fixture
def filled(engine):
    _post(engine, [_p("ann", "supplier", 41_230_000_000), _p("ann", "tax", 12_000_000_000, "energy_tax"),
                   _p("ann", "supplier", -5_500_000_000, "feed_in"), _p("bob", "grid", 30_000_000_000, "grid")])
    _post(engine, [_p("bob", "supplier", 7_000_000_000), _p("ann", "supplier", 0)])  # zero: not posted
    return engine


def test_postings_balance_and_the_chain_verifies(filled):
    with filled.connect() as conn:
        verdict = ledger.verify(conn)
        assert verdict.to_json() == {"ok": True, "entries": 5}
        j = s.journal
        debits = conn.execute(select(func.sum(j.c.amount_nano))).scalar_one()
        assert debits == 41_230_000_000 + 12_000_000_000 + 5_500_000_000 + 30_000_000_000 + 7_000_000_000
        balances = ledger.balances(conn)
    assert sum(balances.values()) == 0  # every nano-euro owed is owed to exactly one account
    assert balances["participant:ann"] == 41_230_000_000 + 12_000_000_000 - 5_500_000_000
    assert balances["party:supplier"] == -(41_230_000_000 - 5_500_000_000 + 7_000_000_000)
    assert balances["party:grid"] == -30_000_000_000


def _tamper_and_verify(engine, statement) -> ledger.Verdict:
    with engine.begin() as conn:
        conn.execute(statement)
    with engine.connect() as conn:
        return ledger.verify(conn)


@pytest.mark.parametrize(("column", "value"), [
    ("amount_nano", 41_230_000_001), ("participant", "eve"), ("credit", "party:eve"), ("period", "2026-09"),
    ("inputs", {"plan": "forged"}), ("posted_at", datetime(2020, 1, 1, tzinfo=UTC))])
def test_a_changed_row_is_detected(filled, column, value):
    verdict = _tamper_and_verify(filled, update(s.journal).where(s.journal.c.seq == 1).values({column: value}))
    assert not verdict.ok and verdict.first_bad == 1 and "changed" in verdict.reason


def test_a_changed_row_with_a_recomputed_hash_breaks_the_next_link(filled):
    with filled.connect() as conn:
        row = dict(conn.execute(select(s.journal).where(s.journal.c.seq == 2)).mappings().one())
    row["amount_nano"] = 1
    forged = ledger.entry_hash(row)
    verdict = _tamper_and_verify(filled, update(s.journal).where(s.journal.c.seq == 2).values(
        amount_nano=1, hash=forged))
    assert not verdict.ok and verdict.first_bad == 3 and "prev_hash" in verdict.reason


def test_a_deleted_row_is_detected(filled):
    verdict = _tamper_and_verify(filled, delete(s.journal).where(s.journal.c.seq == 3))
    assert not verdict.ok and verdict.first_bad == 4 and "deleted or moved" in verdict.reason


def test_a_deleted_last_row_is_detected_by_the_recorded_head(filled):
    verdict = _tamper_and_verify(filled, delete(s.journal).where(s.journal.c.seq == 5))
    assert not verdict.ok and "deleted from the end" in verdict.reason


def test_reordered_rows_are_detected(filled):
    with filled.begin() as conn:  # swap rows 2 and 3 by their sequence numbers
        conn.execute(update(s.journal).where(s.journal.c.seq == 2).values(seq=-2))
        conn.execute(update(s.journal).where(s.journal.c.seq == 3).values(seq=2))
        conn.execute(update(s.journal).where(s.journal.c.seq == -2).values(seq=3))
    with filled.connect() as conn:
        verdict = ledger.verify(conn)
    assert not verdict.ok and verdict.first_bad == 2


postings_strategy = st.lists(
    st.tuples(st.sampled_from(["ann", "bob", "cas"]), st.sampled_from(["supplier", "grid", "tax", "coop"]),
              st.integers(-(10**13), 10**13), st.sampled_from(["2026-03", "2026-10"])),
    min_size=1, max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=postings_strategy)
def test_debits_equal_credits_per_period_and_balances_sum_to_zero(engine, batch):
    with engine.begin() as conn:  # a fresh journal for every example
        conn.execute(delete(s.journal))
        conn.execute(delete(s.settle_runs))
    _post(engine, [ledger.Posting(period, "settlement", who, payee, nano, None, "x", {})
                   for who, payee, nano, period in batch])
    with engine.connect() as conn:
        j = s.journal
        for period in ("2026-03", "2026-10"):
            rows = conn.execute(select(j.c.debit, j.c.credit, j.c.amount_nano).where(j.c.period == period)).all()
            owed = sum(a for d, _c, a in rows if d.startswith("participant:")) - sum(
                a for _d, c, a in rows if c.startswith("participant:"))
            expected = sum(n for _w, _p, n, per in batch if per == period)
            assert owed == expected  # what participants owe is exactly what payees are owed
        assert sum(ledger.balances(conn).values()) == 0
        assert ledger.verify(conn).ok
