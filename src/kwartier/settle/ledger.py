"""The ledger: an append-only, double-entry, hash-chained journal.

Each entry moves ``amount_nano`` (> 0) from its ``debit`` account to its ``credit`` account, so
total debits equal total credits by construction, for every period. Accounts are
``participant:<id>`` and ``party:<id>``. Each entry's ``hash`` is the SHA-256 of its canonical form
(sorted-key JSON of every field but the hash itself, including ``seq`` and ``prev_hash``), so:

- editing a row changes its canonical form: its hash no longer matches;
- deleting a row breaks the next row's ``prev_hash`` (or, for the last rows, the head recorded by
  every settle run: ``settle_runs.summary`` holds the journal's ``entries`` and ``head`` after the run);
- reordering rows breaks ``seq`` and ``prev_hash``.

Appending takes a lock (PostgreSQL: an exclusive table lock; SQLite serialises writers) so two
runs cannot fork the chain.

Records: facts that move no money but must be as tamper-evident as the money (a rulebook version, a
vote, a member joining) are entries of kind ``record`` with amount 0, debit = credit = ``record`` and
period ``0000-00`` (so no month's postings, totals or bills include them). They are chained and
checked like every other entry, and each batch gets its own run whose summary records the head.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, func, select, text

from kwartier.store import schema

GENESIS = "0" * 64
RECORD_KIND = "record"
RECORD_ACCOUNT = "record"
RECORD_PERIOD = "0000-00"
FIELDS = ("seq", "posted_at", "period", "kind", "debit", "credit", "amount_nano", "participant", "payee",
          "connection", "component", "run_id", "inputs", "prev_hash")


def canonical(entry: dict[str, object]) -> str:
    """The entry's canonical serialisation: sorted-key compact JSON, times as ISO UTC."""
    doc = {}
    for k in FIELDS:
        v = entry[k]
        if isinstance(v, datetime):
            v = v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        doc[k] = v
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(entry: dict[str, object]) -> str:
    return hashlib.sha256(canonical(entry).encode()).hexdigest()


@dataclass(frozen=True)
class Posting:
    """An amount one participant owes a payee (negative: the payee owes the participant)."""

    period: str
    kind: str
    participant: str
    payee: str
    amount_nano: int
    connection: str | None
    component: str | None
    inputs: dict[str, object]


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE journal IN EXCLUSIVE MODE"))


def head(conn: Connection) -> tuple[int, str]:
    """The last entry's ``seq`` and ``hash`` (0 and the genesis hash for an empty journal)."""
    row = conn.execute(select(schema.journal.c.seq, schema.journal.c.hash)
                       .order_by(schema.journal.c.seq.desc()).limit(1)).first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def append(conn: Connection, postings: list[Posting], run_id: int) -> int:
    """Append ``postings`` (zero amounts skipped) in order, chained to the current head; return the count."""
    _lock(conn)
    seq, prev = head(conn)
    now = datetime.now(UTC).replace(microsecond=0)
    rows = []
    for p in postings:
        if p.amount_nano == 0:
            continue
        participant_acc, payee_acc = f"participant:{p.participant}", f"party:{p.payee}"
        debit, credit = (participant_acc, payee_acc) if p.amount_nano > 0 else (payee_acc, participant_acc)
        seq += 1
        entry = {"seq": seq, "posted_at": now, "period": p.period, "kind": p.kind, "debit": debit,
                 "credit": credit, "amount_nano": abs(p.amount_nano), "participant": p.participant,
                 "payee": p.payee, "connection": p.connection, "component": p.component, "run_id": run_id,
                 "inputs": p.inputs, "prev_hash": prev}
        entry["hash"] = prev = entry_hash(entry)
        rows.append(entry)
    if rows:
        conn.execute(schema.journal.insert(), rows)
    return len(rows)


@dataclass(frozen=True)
class Record:
    """A non-monetary fact for the chain: who (an id, never personal data), about what, and its content."""

    participant: str
    subject: str  # e.g. "governance", "membership": stored in the payee column
    what: str  # e.g. "rulebook:v2", "vote:3": stored in the component column
    inputs: dict[str, object]


def append_records(conn: Connection, records: list[Record]) -> list[int]:
    """Append ``records`` as one run of ``record`` entries chained to the head; return their ``seq`` numbers."""
    _lock(conn)
    now = datetime.now(UTC)
    run_id = int(conn.execute(schema.settle_runs.insert().values(
        period=RECORD_PERIOD, started_at=now, summary={}).returning(schema.settle_runs.c.id)).scalar_one())
    seq, prev = head(conn)
    rows, seqs = [], []
    for r in records:
        seq += 1
        seqs.append(seq)
        entry = {"seq": seq, "posted_at": now.replace(microsecond=0), "period": RECORD_PERIOD, "kind": RECORD_KIND,
                 "debit": RECORD_ACCOUNT, "credit": RECORD_ACCOUNT, "amount_nano": 0, "participant": r.participant,
                 "payee": r.subject, "connection": None, "component": r.what, "run_id": run_id,
                 "inputs": r.inputs, "prev_hash": prev}
        entry["hash"] = prev = entry_hash(entry)
        rows.append(entry)
    if rows:
        conn.execute(schema.journal.insert(), rows)
    conn.execute(schema.settle_runs.update().where(schema.settle_runs.c.id == run_id).values(
        summary={"kind": RECORD_KIND, "records": len(rows), "journal": {"entries": seq, "head": prev}}))
    return seqs


def _valid_entry(row: dict[str, object]) -> bool:
    """A posting moves a positive amount between two accounts; a record moves nothing, on the record account."""
    if row["kind"] == RECORD_KIND:
        return _int(row["amount_nano"]) == 0 and row["debit"] == row["credit"] == RECORD_ACCOUNT
    return _int(row["amount_nano"]) > 0 and row["debit"] != row["credit"]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    first_bad: int | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"ok": self.ok, "entries": self.entries}
        if not self.ok:
            out["first_bad"] = {"seq": self.first_bad, "reason": self.reason}
        return out


def _rows(conn: Connection) -> Iterator[dict[str, object]]:
    j = schema.journal
    result = conn.execution_options(stream_results=True).execute(select(j).order_by(j.c.seq))
    for row in result.mappings():
        yield dict(row)


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an integer column, got {value!r}")
    return value


def verify(conn: Connection) -> Verdict:
    """Walk the chain from the first entry; report the first entry that is not what was written."""
    expected_prev, n = GENESIS, 0
    for row in _rows(conn):
        n += 1
        seq = _int(row["seq"])
        if seq != n:
            return Verdict(False, n - 1, seq, f"entry {seq} stands where entry {n} should: a row was deleted or moved")
        if row["prev_hash"] != expected_prev:
            return Verdict(False, n - 1, seq, "its prev_hash does not match the entry before it")
        if not _valid_entry(row):
            return Verdict(False, n - 1, seq, "not a valid posting (amount <= 0 or debit = credit)")
        if entry_hash(row) != row["hash"]:
            return Verdict(False, n - 1, seq, "its content does not match its hash: the row was changed")
        expected_prev = str(row["hash"])
    last_run = conn.execute(select(schema.settle_runs.c.summary).order_by(schema.settle_runs.c.id.desc())
                            .limit(1)).first()
    if last_run is not None:
        recorded = last_run[0].get("journal", {})
        if recorded.get("entries", 0) > n:
            return Verdict(False, n, n + 1, f"the last settle run left {recorded['entries']} entries; "
                                            f"only {n} remain: entries were deleted from the end")
        if recorded.get("entries") == n and recorded.get("head") not in (None, expected_prev):
            return Verdict(False, n, n, "the last entry differs from the head the last settle run recorded")
    return Verdict(True, n)


def balances(conn: Connection) -> dict[str, int]:
    """Net nano-euros per account: positive = owes (debits exceed credits), negative = is owed."""
    j = schema.journal
    out: dict[str, int] = {}
    for col, sign in ((j.c.debit, 1), (j.c.credit, -1)):
        for account, total in conn.execute(select(col, func.sum(j.c.amount_nano))
                                           .where(j.c.kind != RECORD_KIND).group_by(col)):
            out[account] = out.get(account, 0) + sign * int(total)
    return dict(sorted(out.items()))
