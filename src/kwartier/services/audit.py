"""Re-run a settled month from the inputs as they were stored at its last settle run, and compare the result.

``reproduce(engine, period)`` finds the period's last settle run and rebuilds, as of that run's
start: the community definition (entity versions loaded before it, with their stored plan texts),
every meter's readings (the version current then, estimates the run stored included), and the
fixed prices (the versions current then). It settles them again with the same engine functions the
settle run uses and compares the outcome with what the journal holds for the period up to and
including that run (settlement and correction postings of settle runs; records and other runs'
postings are not part of it).

The community sharing of the month (``services/sharing.py``), when it was posted, is reproduced
the same way as of its last sharing run: the definition, the readings, the rulebook versions and
the memberships recorded in the journal before that run are copied into a scratch store, and the
sharing service computes the month there. Its lines, and the digest of the sharing result that the
run recorded, must come out the same.

The *settlement result* is the list of lines (participant, meter, component@payee, payee,
amount in nano-euros), sorted; its hash is the SHA-256 of its canonical JSON. Identical hashes mean
every cent posted can be recomputed from stored inputs. Otherwise the diff lists each line that
differs, with the inputs (plan, readings and prices fingerprints) recorded and reproduced, which
names what changed since. The rulebook versions in force over the period are reported with it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import Connection, Engine, create_engine, exists, func, insert, select

from kwartier.community.definition import Definition, DefinitionError, build_definition
from kwartier.services import settle as st
from kwartier.store import schema
from kwartier.tariffs.compose import MissingData
from kwartier.tariffs.plan import PlanError
from kwartier.timegrid import interval_starts, local_period_bounds

Key = tuple[str, str, str]  # participant, meter ("" for VAT), component@payee
SETTLE_RUN_MARK = "estimated_intervals"  # a key only settle runs' summaries have


class AuditError(ValueError):
    """A period that cannot be reproduced (never settled, or its stored inputs are incomplete)."""


@dataclass
class Reproduction:
    """The outcome of :func:`reproduce`: both hashes, the differing lines, and the rules in force."""

    period: str
    run_id: int
    run_at: datetime
    lines: int
    recorded_hash: str
    reproduced_hash: str
    diff: list[dict[str, Any]] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    parts: list[dict[str, Any]] = field(default_factory=list)  # per part: name, run, lines, hashes
    problems: list[str] = field(default_factory=list)  # governance tables that differ from their journal records

    @property
    def identical(self) -> bool:
        return self.recorded_hash == self.reproduced_hash and all(p["identical"] for p in self.parts) \
            and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"period": self.period, "identical": self.identical, "run": self.run_id,
                "run_at": self.run_at.isoformat(), "lines": self.lines, "recorded_hash": self.recorded_hash,
                "reproduced_hash": self.reproduced_hash, "parts": self.parts, "rules": self.rules, "diff": self.diff,
                "problems": self.problems}


def result_hash(lines: dict[Key, tuple[str, int]]) -> str:
    """SHA-256 of the sorted lines ``[participant, meter, component, payee, amount_nano]`` as compact JSON."""
    doc = [[*k, payee, amount] for k, (payee, amount) in sorted(lines.items()) if amount != 0]
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()


# --- the recorded side ------------------------------------------------------------------------------


def _runs(conn: Connection, period: str, sharing: bool = False) -> list[tuple[int, datetime, dict[str, Any]]]:
    """The period's settle runs (or sharing runs), oldest first: id, start and summary."""
    r = schema.settle_runs
    rows = conn.execute(select(r.c.id, r.c.started_at, r.c.summary).where(r.c.period == period).order_by(r.c.id))
    return [(int(i), at, summary or {}) for i, at, summary in rows
            if ((summary or {}).get("kind") == "sharing" if sharing else SETTLE_RUN_MARK in (summary or {}))]


def recorded_lines(conn: Connection, period: str, run_ids: list[int]
                   ) -> tuple[dict[Key, tuple[str, int]], dict[Key, dict[str, Any]]]:
    """Signed nano-euros per line that the given settle runs posted for ``period``, and each line's last inputs."""
    j = schema.journal
    amounts: dict[Key, tuple[str, int]] = {}
    inputs: dict[Key, dict[str, Any]] = {}
    for row in conn.execute(select(j.c.participant, j.c.connection, j.c.component, j.c.payee, j.c.debit,
                                   j.c.amount_nano, j.c.inputs)
                            .where(j.c.period == period, j.c.run_id.in_(run_ids)).order_by(j.c.seq)):
        key = (row.participant, row.connection or "", row.component or "")
        sign = 1 if row.debit == f"participant:{row.participant}" else -1
        amounts[key] = (row.payee, amounts.get(key, (row.payee, 0))[1] + sign * int(row.amount_nano))
        inputs[key] = {k: v for k, v in row.inputs.items() if k not in ("corrects", "changed")}
    return {k: v for k, v in amounts.items() if v[1] != 0}, inputs


# --- the inputs as of an instant --------------------------------------------------------------------------


def definition_as_of(conn: Connection, at: datetime) -> Definition:
    """The community definition as loaded before ``at``, with the plan texts it was settled with."""
    from kwartier.services.community import PLAN_SHA, SECTION_OF

    e, loads, t = schema.entities, schema.community_loads, schema.plan_texts
    rows = conn.execute(select(e.c.kind, e.c.key, e.c.version, e.c.data).join(loads, loads.c.id == e.c.load_id)
                        .where(loads.c.loaded_at <= at).order_by(e.c.kind, e.c.key, e.c.version)).all()
    latest: dict[tuple[str, str], Any] = {}
    for r in rows:
        latest[(r.kind, r.key)] = r.data
    live = {k: v for k, v in latest.items() if v is not None}
    communities = [v for (kind, _), v in live.items() if kind == "community"]
    if len(communities) != 1:
        raise AuditError(f"no community definition was loaded before {at.isoformat()}")
    data: dict[str, Any] = {"community": communities[0], **{s: [] for s in SECTION_OF.values()}}
    plan_of: dict[str, str] = {}
    for (kind, _), value in sorted(live.items()):
        if kind in SECTION_OF:
            item = dict(value)
            if kind == "contract":
                plan_of[item["id"]] = item.pop(PLAN_SHA)
            data[SECTION_OF[kind]].append(item)
    texts = dict(conn.execute(select(t.c.sha256, t.c.text).where(t.c.sha256.in_(list(plan_of.values())))).all())

    def stored_plan(contract: Any) -> tuple[str, str]:
        sha = plan_of[contract.id]
        if sha not in texts:
            raise PlanError(f"plan text {sha} is missing from the store")
        return texts[sha], f"{contract.plan} (stored, sha256 {sha[:12]})"

    try:
        return build_definition(data, f"community definition as of {at.isoformat()}", stored_plan)
    except (DefinitionError, PlanError) as exc:
        raise AuditError(str(exc)) from None


def _as_of(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Per key, the highest version among the rows given (those stored before the instant)."""
    return frame.sort("version").group_by(keys, maintain_order=True).last()


def readings_as_of(conn: Connection, eans: list[str], start: datetime, stop: datetime, at: datetime) -> pl.DataFrame:
    """Readings of ``eans`` in ``[start, stop)`` in the version that was current at ``at`` (as settle reads them)."""
    r = schema.readings
    rows = conn.execute(select(r.c.connection, r.c.interval_start, r.c.resolution, r.c.import_wh, r.c.export_wh,
                               r.c.status, r.c.version)
                        .where(r.c.connection.in_(eans), r.c.imported_at <= at, r.c.interval_start >= start,
                               r.c.interval_start < stop)).all()
    frame = pl.DataFrame([tuple(x) for x in rows], orient="row", schema={
        "connection": pl.String, "interval_start": pl.Datetime("us", "UTC"), "resolution": pl.String,
        "import_wh": pl.Int64, "export_wh": pl.Int64, "status": pl.String, "version": pl.Int64})
    return _as_of(frame, ["connection", "interval_start", "resolution"])


def prices_as_of(conn: Connection, zone: str, start: datetime, stop: datetime, at: datetime) -> pl.DataFrame:
    """Prices of ``zone`` in ``[start - 1 h, stop)`` in the version current at ``at``, fixed ones only."""
    p = schema.prices
    rows = conn.execute(select(p.c.interval_start, p.c.resolution, p.c.price_ueur_per_kwh, p.c.status, p.c.version)
                        .where(p.c.zone == zone, p.c.imported_at <= at,
                               p.c.interval_start >= start - timedelta(hours=1), p.c.interval_start < stop)).all()
    frame = pl.DataFrame([tuple(x) for x in rows], orient="row", schema={
        "interval_start": pl.Datetime("us", "UTC"), "resolution": pl.String, "price_ueur_per_kwh": pl.Int64,
        "status": pl.String, "version": pl.Int64})
    frame = _as_of(frame, ["interval_start", "resolution"])
    if (frame["status"] != "fixed").any():
        raise AuditError(f"zone {zone}: a price used by the run was not fixed at {at.isoformat()}")
    return frame.select("interval_start", "resolution", "price_ueur_per_kwh")


# --- the reproduced side ----------------------------------------------------------------------------------


def _year_before(conn: Connection, meters: list[str], year_start: datetime, start: datetime, at: datetime
                 ) -> dict[str, tuple[int, int]]:
    """Wh imported and exported per meter from ``year_start`` to ``start``, in the versions current at ``at``."""
    r, newer = schema.readings, schema.readings.alias("newer")
    superseded = exists().where(newer.c.connection == r.c.connection, newer.c.interval_start == r.c.interval_start,
                                newer.c.resolution == r.c.resolution, newer.c.version > r.c.version,
                                newer.c.imported_at <= at)
    rows = conn.execute(
        select(r.c.connection, func.coalesce(func.sum(r.c.import_wh), 0), func.coalesce(func.sum(r.c.export_wh), 0))
        .where(r.c.connection.in_(meters), r.c.imported_at <= at, r.c.interval_start >= year_start,
               r.c.interval_start < start, ~superseded)
        .group_by(r.c.connection)).all()
    return {str(c): (int(i), int(e)) for c, i, e in rows}


def _empty_journal() -> Engine:
    """An in-memory store with an empty journal: the settle postings against it are the whole result."""
    scratch = create_engine("sqlite://")
    schema.metadata.create_all(scratch, tables=[schema.settle_runs, schema.journal])
    return scratch


def reproduced_lines(conn: Connection, period: str, at: datetime
                     ) -> tuple[dict[Key, tuple[str, int]], dict[Key, dict[str, Any]], Definition]:
    """Settle ``period`` again from the inputs stored before ``at``: lines and their inputs."""
    first, end = st.parse_period(period)
    defn = definition_as_of(conn, at)
    tz, zone = defn.community.timezone, defn.community.zone
    start, stop = local_period_bounds(first, end, tz)
    starts = interval_starts(start, stop)
    meters = [c.ean for c in defn.spec.connections] + [mp.ean for mp in defn.spec.metering_points]
    year_start = local_period_bounds(date(first.year, 1, 1), end, tz)[0]
    prev_first = (first - timedelta(days=1)).replace(day=1)
    history_start = min(local_period_bounds(prev_first, first, tz)[0], start - timedelta(weeks=st.ESTIMATE_WEEKS))
    frame = st._quarterly(readings_as_of(conn, meters, history_start, stop, at))
    if st._incomplete(frame.filter(pl.col("interval_start") >= start), len(meters), starts.len()):
        estimates = st._estimate(frame, meters, starts, tz)  # the run stored its estimates; this is a fallback
        extra = estimates.with_columns(resolution=pl.lit("PT15M"), status=pl.lit("estimated"), version=pl.lit(0))
        frame = pl.concat([frame, extra.select(frame.columns)])
    period_rows = frame.filter(pl.col("interval_start") >= start)
    imp, exp = st._matrices(period_rows, meters, starts)
    index = {ean: i for i, ean in enumerate(meters)}
    for mp in defn.spec.metering_points:  # as the settle run does: a sub-meter is billed by its own supplier
        parent, child = index[mp.connection], index[mp.ean]
        imp[parent] = np.maximum(imp[parent] - imp[child], 0)
    before = _year_before(conn, meters, year_start, start, at)
    try:
        market = prices_as_of(conn, zone, start, stop, at)
        fingerprints = {ean: st._fingerprint(part.select("interval_start", "version", "import_wh", "export_wh",
                                                         "status"))
                        for (ean,), part in period_rows.sort("interval_start").group_by(["connection"])}
        price_fp = st._fingerprint(market.sort("interval_start").select("interval_start", "price_ueur_per_kwh"))
        lines = st._settle_contracts(defn, first, end, starts, imp, exp, before, index, market, frame, tz)
        scratch = _empty_journal()
        with scratch.connect() as empty:
            postings = st._postings(empty, defn, period, lines, fingerprints, price_fp)
        scratch.dispose()
    except (MissingData, st.SettleError) as exc:
        raise AuditError(f"{period}: the stored inputs no longer settle: {exc}") from None
    amounts = {(p.participant, p.connection or "", p.component or ""): (p.payee, p.amount_nano) for p in postings}
    inputs = {(p.participant, p.connection or "", p.component or ""): p.inputs for p in postings}
    return amounts, inputs, defn


def _diff(rec: dict[Key, tuple[str, int]], rep: dict[Key, tuple[str, int]], rec_in: dict[Key, dict[str, Any]],
          rep_in: dict[Key, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for key in sorted(set(rec) | set(rep)):
        a, b = rec.get(key, ("", 0)), rep.get(key, ("", 0))
        if a == b or (a[1] == 0 and b[1] == 0):
            continue
        ri, pi = rec_in.get(key, {}), rep_in.get(key, {})
        out.append({"participant": key[0], "meter": key[1] or None, "component": key[2],
                    "recorded_nano": a[1], "reproduced_nano": b[1],
                    "changed_inputs": sorted(k for k in set(ri) | set(pi) if ri.get(k) != pi.get(k)),
                    "recorded_inputs": ri, "reproduced_inputs": pi})
    return out


# --- the community sharing ------------------------------------------------------------------------------


def _copy_inputs(conn: Connection, scratch: Connection, period: str, at: datetime, entries: int) -> None:
    """Copy into an empty store what a sharing run at ``at`` read: the definition, the month's readings, and the
    rulebook versions and memberships recorded in the first ``entries`` journal entries."""
    from kwartier.services.community import PLAN_SHA
    from kwartier.store import schema_governance as sg

    e, loads, t = schema.entities, schema.community_loads, schema.plan_texts
    rows = conn.execute(select(e.c.kind, e.c.key, e.c.version, e.c.data, e.c.sha256)
                        .join(loads, loads.c.id == e.c.load_id).where(loads.c.loaded_at <= at)
                        .order_by(e.c.kind, e.c.key, e.c.version)).all()
    latest = {(r.kind, r.key): r for r in rows}
    live = [r for r in latest.values() if r.data is not None]
    scratch.execute(insert(loads).values(id=1, file_name="(audit)", sha256="0" * 64, loaded_at=at, summary={}))
    scratch.execute(insert(e), [{"kind": r.kind, "key": r.key, "version": r.version, "is_current": True,
                                 "data": r.data, "sha256": r.sha256, "load_id": 1} for r in live])
    shas = [r.data[PLAN_SHA] for r in live if r.kind == "contract"]
    texts = conn.execute(select(t).where(t.c.sha256.in_(shas))).mappings().all()
    if texts:
        scratch.execute(insert(t), [dict(x) for x in texts])
    defn = definition_as_of(conn, at)
    first, end = st.parse_period(period)
    start, stop = local_period_bounds(first, end, defn.community.timezone)
    eans = [c.ean for c in defn.spec.connections]
    frame = readings_as_of(conn, eans, start, stop, at)
    if eans:
        scratch.execute(insert(schema.connections), [{"ean": x, "created_at": at} for x in eans])
    scratch.execute(insert(schema.imports).values(id=1, kind="readings", file_name="(audit)", sha256="0" * 64,
                                                  format="audit", target="*", imported_at=at, new=frame.height,
                                                  unchanged=0, revised=0, anomalies=[]))
    if frame.height:
        scratch.execute(insert(schema.readings), [
            {**r, "is_current": True, "import_id": 1, "imported_at": at, "source": "audit"}
            for r in frame.to_dicts()])
    market = prices_as_of(conn, defn.community.zone, start, stop, at)  # the sharing prices shared kWh by the plans
    if market.height:
        scratch.execute(insert(schema.imports).values(id=2, kind="prices", file_name="(audit)", sha256="0" * 64,
                                                      format="audit", target=defn.community.zone, imported_at=at,
                                                      new=market.height, unchanged=0, revised=0, anomalies=[]))
        scratch.execute(insert(schema.prices), [
            {**r, "zone": defn.community.zone, "status": "fixed", "known_at": r["interval_start"], "source": "audit",
             "version": 1, "is_current": True, "import_id": 2, "imported_at": at} for r in market.to_dicts()])
    versions = conn.execute(select(sg.rulebook_versions).where(sg.rulebook_versions.c.ledger_seq <= entries)
                            ).mappings().all()
    if versions:
        scratch.execute(insert(sg.rulebook_versions), [dict(v) for v in versions])
    members = conn.execute(select(sg.memberships).where(sg.memberships.c.recorded_at <= at)).mappings().all()
    if members:  # a leave recorded after the run did not count for it
        scratch.execute(insert(sg.memberships), [
            {**dict(m), "left_at": m["left_at"] if m["ledger_seq"] <= entries else None} for m in members])


def reproduce_sharing(engine: Engine, period: str, runs: list[tuple[int, datetime, dict[str, Any]]]
                      ) -> tuple[dict[Key, tuple[str, int]], dict[Key, tuple[str, int]], list[dict[str, Any]],
                                 dict[str, Any]]:
    """The sharing lines recorded by ``runs`` and reproduced as of the last of them, their diff, and a part summary."""
    import tempfile

    from kwartier.services.sharing import SharingServiceError, compute_sharing
    from kwartier.services.sharing_ledger import ledger_lines
    from kwartier.store import open_store

    last, at, summary = runs[-1]
    entries = int(summary.get("journal", {}).get("entries", 0)) - int(summary.get("new_postings", 0))
    with engine.connect() as conn:
        rec, rec_in = recorded_lines(conn, period, [r[0] for r in runs])
        with tempfile.TemporaryDirectory(prefix="kwartier-audit-") as tmp:
            scratch = open_store(f"sqlite:///{tmp}/scratch.db")
            try:
                with scratch.begin() as sconn:
                    _copy_inputs(conn, sconn, period, at, entries)
                result = compute_sharing(scratch, period)
                # the VAT lines depend on the settlement the run saw: the journal up to the run
                lines = ledger_lines(conn, period, result, definition_as_of(conn, at), upto_seq=entries)
            except SharingServiceError as exc:
                raise AuditError(f"{period}: the sharing cannot be reproduced: {exc}") from None
            finally:
                scratch.dispose()
    rep = {(p, c or "", comp): (payee, nano) for (p, c, comp), (payee, nano, _) in lines.items() if nano}
    rep_in = {(p, c or "", comp): {x: inputs.get(x) for x in ("rules", "allocation")}
              for (p, c, comp), (_, _, inputs) in lines.items()}
    diff = [{**d, "part": "sharing"} for d in _diff(rec, rep, {k: {x: v.get(x) for x in ("rules", "allocation")}
                                                                  for k, v in rec_in.items()}, rep_in)]
    digest_ok = summary.get("digest") in (None, result.digest())
    if not digest_ok:
        diff.append({"part": "sharing", "participant": None, "meter": None, "component": "(sharing result digest)",
                     "recorded": summary.get("digest"), "reproduced": result.digest()})
    part = {"part": "sharing", "run": last, "run_at": at.isoformat(), "lines": len(rec),
            "identical": result_hash(rec) == result_hash(rep) and digest_ok, "digest": result.digest()}
    return rec, rep, diff, part


def reproduce(engine: Engine, period: str, run_id: int | None = None) -> Reproduction:
    """Re-run ``period`` (YYYY-MM) as of its last settle run and its last sharing run and compare with the journal.

    ``run_id``: as of that run (runs after it are left out). Raises AuditError when neither kind of run
    exists for the period.
    """
    from kwartier.services.governance import rule_spans, verify_records

    first, end = st.parse_period(period)
    rec: dict[Key, tuple[str, int]] = {}
    rep: dict[Key, tuple[str, int]] = {}
    diff: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    with engine.connect() as conn:
        runs = [r for r in _runs(conn, period) if run_id is None or r[0] <= run_id]
        sharing = [r for r in _runs(conn, period, sharing=True) if run_id is None or r[0] <= run_id]
        if not runs and not sharing:
            raise AuditError(f"{period} was never settled{f' by run {run_id} or before' if run_id else ''}: "
                             f"run kwartier settle --period {period} first")
        last, at, _ = (runs or sharing)[-1]
        if runs:
            rec, rec_in = recorded_lines(conn, period, [r[0] for r in runs])
            rep, rep_in, _defn = reproduced_lines(conn, period, at)
            parts.append({"part": "settlement", "run": last, "run_at": at.isoformat(), "lines": len(rec),
                          "identical": result_hash(rec) == result_hash(rep)})
            diff = [{**d, "part": "settlement"} for d in _diff(rec, rep, rec_in, rep_in)]
        tz = definition_as_of(conn, at).community.timezone
    if sharing:
        share_rec, share_rep, share_diff, part = reproduce_sharing(engine, period, sharing)
        rec, rep, diff = {**rec, **share_rec}, {**rep, **share_rep}, diff + share_diff
        parts.append(part)
    start, stop = local_period_bounds(first, end, tz)
    rules = [{"from": s.start.isoformat(), "to": s.stop.isoformat(), "version": s.version.version,
              "digest": s.version.digest} for s in rule_spans(engine, start, stop)]
    return Reproduction(period, last, at, len(rec), result_hash(rec), result_hash(rep), diff, rules, parts,
                        verify_records(engine))
