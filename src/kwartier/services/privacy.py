"""Members' control of their data: consent per purpose, k-household aggregates, export, erasure, access log.

- Consent: per member and purpose (``billing``, ``steering``, ``research``, ``grid``); the latest
  row counts. ``billing`` is the contract itself (granted, and not withdrawable while the member is
  in the definition: end the contracts instead); the others are off until granted. Services call
  :func:`require_consent` (or :func:`readings_for_purpose`) and refuse with :class:`ConsentRequired`.
- Aggregates for the grid operator (:func:`aggregate_for_grid`): only households that consented to
  ``grid``, and only groups (quarters) to which at least ``k`` households (default 5) contribute;
  a request that covers fewer than ``k`` households is refused (:class:`TooFewHouseholds`).
- Every read of a member's data through this module writes an access-log row: who (user and role),
  whose (participant, null for aggregates), what and for which purpose, when.
- Export (:func:`export_member`): everything stored about one member, as JSON data.
- Erasure (:func:`erase_member`): names, e-mail addresses and addresses in every stored version of
  the member's entities are replaced by a pseudonym, portal accounts are removed and consents
  withdrawn. The journal is not touched: it holds ids, amounts and digests, never names, so
  ``ledger verify`` stays green. Invoices and readings are kept (a legal duty to keep bills, and
  reproducible settlement) and listed in the erasure summary as retained.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import polars as pl
from sqlalchemy import ColumnElement, Connection, Engine, delete, func, insert, or_, select, update

from kwartier.settle import ledger
from kwartier.store import schema
from kwartier.store import schema_governance as sg

PURPOSES = ("billing", "steering", "research", "grid")
DEFAULT_K = 5
PERSONAL_KEYS = ("name", "email", "address", "street", "postcode", "city", "phone", "iban")
CONTRACTUAL = "billing"


class PrivacyError(PermissionError):
    """A request that members' data rights do not allow; the message says which and why."""


class ConsentRequired(PrivacyError):
    """The member has not consented to this purpose."""


class TooFewHouseholds(PrivacyError):
    """An aggregate over fewer households than the k-household rule allows."""


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def _purpose(purpose: str) -> str:
    if purpose not in PURPOSES:
        raise PrivacyError(f"unknown purpose {purpose!r}; purposes are {', '.join(PURPOSES)}")
    return purpose


# --- access log ------------------------------------------------------------------------------------


def log_access(conn: Connection, actor: str, role: str, participant: str | None, what: str,
               purpose: str | None = None, *, now: datetime | None = None) -> None:
    """Write one access-log row inside the caller's transaction."""
    conn.execute(insert(sg.access_log).values(at=_now(now), actor=actor, role=role, participant=participant,
                                              what=what[:80], purpose=purpose))


def access_log(engine: Engine, participant: str | None = None) -> list[dict[str, Any]]:
    """Access-log rows (oldest first), of one participant's data when given."""
    t = sg.access_log
    stmt = select(t.c.at, t.c.actor, t.c.role, t.c.participant, t.c.what, t.c.purpose).order_by(t.c.id)
    if participant is not None:
        stmt = stmt.where(t.c.participant == participant)
    with engine.connect() as conn:
        return [{**dict(r), "at": r.at.isoformat()} for r in conn.execute(stmt).mappings()]


# --- consent ------------------------------------------------------------------------------------------


def set_consent(engine: Engine, participant: str, purpose: str, granted: bool, *, by: str,
                now: datetime | None = None) -> None:
    """Record ``participant``'s consent (or its withdrawal) for ``purpose``."""
    if _purpose(purpose) == CONTRACTUAL and not granted:
        raise PrivacyError(f"{participant}: billing is the basis of the member's contracts, not a consent; "
                           "end the contracts (valid_to) to stop billing")
    with engine.begin() as conn:
        conn.execute(insert(sg.consents).values(participant=participant, purpose=purpose, granted=granted,
                                                at=_now(now), by=by))


def consents(engine: Engine, participant: str) -> dict[str, bool]:
    """The member's current consent per purpose (billing always; the rest off until granted)."""
    return consented_map(engine, [participant])[participant]


def consented_map(engine: Engine, participants: Iterable[str]) -> dict[str, dict[str, bool]]:
    """Current consent per purpose for each participant (the latest row per purpose counts)."""
    who = list(participants)
    out = {p: {purpose: purpose == CONTRACTUAL for purpose in PURPOSES} for p in who}
    t = sg.consents
    with engine.connect() as conn:
        for row in conn.execute(select(t.c.participant, t.c.purpose, t.c.granted)
                                .where(t.c.participant.in_(who)).order_by(t.c.id)):
            out[row.participant][row.purpose] = bool(row.granted)
    return out


def require_consent(engine: Engine, participant: str, purpose: str) -> None:
    """Raise ConsentRequired unless ``participant`` consents to ``purpose`` now."""
    if not consents(engine, participant)[_purpose(purpose)]:
        raise ConsentRequired(f"participant {participant} has not consented to use of its data for "
                              f"{purpose}; it can grant it in the portal (or kwartier privacy consent)")


# --- reading a member's data ------------------------------------------------------------------------


def _meters_of(engine: Engine, participant: str) -> list[str]:
    from kwartier.services.community import current_definition

    defn = current_definition(engine)
    mains = [c.ean for c in defn.spec.connections if c.participant == participant]
    return mains + [m.ean for m in defn.spec.metering_points if m.connection in mains]


def _readings(conn: Connection, eans: list[str], start: datetime | None, stop: datetime | None,
              current_only: bool = True) -> pl.DataFrame:
    r = schema.readings
    cond: list[ColumnElement[bool]] = [r.c.connection.in_(eans)]
    if current_only:
        cond.append(r.c.is_current.is_(True))
    if start is not None:
        cond.append(r.c.interval_start >= start)
    if stop is not None:
        cond.append(r.c.interval_start < stop)
    rows = conn.execute(select(r.c.connection, r.c.interval_start, r.c.resolution, r.c.import_wh, r.c.export_wh,
                               r.c.status, r.c.version, r.c.is_current)
                        .where(*cond).order_by(r.c.connection, r.c.interval_start, r.c.version)).all()
    return pl.DataFrame([tuple(x) for x in rows], orient="row", schema={
        "connection": pl.String, "interval_start": pl.Datetime("us", "UTC"), "resolution": pl.String,
        "import_wh": pl.Int64, "export_wh": pl.Int64, "status": pl.String, "version": pl.Int64,
        "is_current": pl.Boolean})


def readings_for_purpose(engine: Engine, participant: str, purpose: str, start: datetime, stop: datetime, *,
                         actor: str, role: str) -> pl.DataFrame:
    """A member's current readings in ``[start, stop)`` for ``purpose``: consent checked, the access logged."""
    require_consent(engine, participant, purpose)
    eans = _meters_of(engine, participant)
    with engine.begin() as conn:
        log_access(conn, actor, role, participant, f"readings {start.date()}..{stop.date()}", purpose)
        return _readings(conn, eans, start, stop).drop("version", "is_current")


# --- k-household aggregates -------------------------------------------------------------------------


def k_anonymous(frame: pl.DataFrame, by: list[str], household: str, k: int = DEFAULT_K) -> pl.DataFrame:
    """Sums of ``import_wh`` and ``export_wh`` per group of ``by``, only for groups of at least ``k`` households.

    Returns the columns of ``by``, ``import_wh``, ``export_wh`` (Wh) and ``households`` (how many
    distinct households the group sums), sorted by ``by``.
    """
    if k < 1:
        raise PrivacyError(f"k must be at least 1, not {k}")
    return (frame.group_by(by)
            .agg(pl.col("import_wh").sum(), pl.col("export_wh").sum(), pl.col(household).n_unique().alias("households"))
            .filter(pl.col("households") >= k).sort(by))


def aggregate_for_grid(engine: Engine, start: datetime, stop: datetime, *, actor: str, role: str = "grid",
                       party: str | None = None, k: int = DEFAULT_K, consent_required: bool = True) -> pl.DataFrame:
    """Load per quarter in ``[start, stop)`` summed over households (of grid ``party``, or all) for the grid operator.

    Only households that consented to ``grid`` count (unless ``consent_required`` is false), and a
    quarter appears only when at least ``k`` households add up to it. Raises TooFewHouseholds when
    the selection holds fewer than ``k`` households at all.
    """
    from kwartier.services.community import current_definition

    defn = current_definition(engine)
    owner = {c.ean: c.participant for c in defn.spec.connections if party is None or c.grid == party}
    if consent_required:
        allowed = consented_map(engine, set(owner.values()))
        owner = {ean: p for ean, p in owner.items() if allowed[p]["grid"]}
    households = len(set(owner.values()))
    if households < k:
        raise TooFewHouseholds(f"an aggregate needs at least {k} households that consented to grid use; "
                               f"{'grid area ' + party if party else 'the community'} has {households}")
    with engine.begin() as conn:
        log_access(conn, actor, role, None, f"aggregate load {start.date()}..{stop.date()} ({households} households)",
                   "grid")
        frame = _readings(conn, list(owner), start, stop)
    frame = frame.with_columns(household=pl.col("connection").replace_strict(owner, default=None))
    return k_anonymous(frame, ["interval_start"], "household", k)


# --- export -----------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _rows(conn: Connection, stmt: Any, drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [_plain({k: v for k, v in dict(r).items() if k not in drop}) for r in conn.execute(stmt).mappings()]


def _entity_keys(conn: Connection, participant: str) -> list[tuple[str, str]]:
    """(kind, key) of the member's entities in any stored version: itself, its connections, points, contracts."""
    e = schema.entities
    rows = conn.execute(select(e.c.kind, e.c.key, e.c.data).where(e.c.data.is_not(None))).all()
    keys = {("participant", participant)}
    eans = {r.key for r in rows if r.kind == "connection" and r.data.get("participant") == participant}
    keys |= {("connection", ean) for ean in eans}
    points = {r.key for r in rows if r.kind == "metering_point" and r.data.get("connection") in eans}
    keys |= {("metering_point", ean) for ean in points}
    keys |= {("contract", r.key) for r in rows if r.kind == "contract" and r.data.get("target") in eans | points}
    return sorted(keys)


def export_member(engine: Engine, participant: str, *, actor: str, role: str) -> dict[str, Any]:
    """Everything stored about ``participant`` as JSON data (the access is logged)."""
    e, j, i = schema.entities, schema.journal, schema.invoices
    with engine.begin() as conn:
        keys = _entity_keys(conn, participant)
        entities = _rows(conn, select(e.c.kind, e.c.key, e.c.version, e.c.is_current, e.c.data)
                         .where(or_(*[(e.c.kind == kind) & (e.c.key == key) for kind, key in keys]))
                         .order_by(e.c.kind, e.c.key, e.c.version))
        eans = [key for kind, key in keys if kind in ("connection", "metering_point")]
        readings = _readings(conn, eans, None, None, current_only=False)
        log_access(conn, actor, role, participant, "export of all data")
        out = {
            "participant": participant,
            "exported_at": _now(None).isoformat(),
            "entities": entities,
            "readings": _plain(readings.to_dicts()),
            "journal": _rows(conn, select(j).where(j.c.participant == participant).order_by(j.c.seq)),
            "invoices": _rows(conn, select(i).where(i.c.participant == participant).order_by(i.c.number)),
            "consents": _rows(conn, select(sg.consents).where(sg.consents.c.participant == participant)
                              .order_by(sg.consents.c.id), ("id",)),
            "memberships": _rows(conn, select(sg.memberships).where(sg.memberships.c.participant == participant)
                                 .order_by(sg.memberships.c.id), ("id",)),
            "proposals": _rows(conn, select(sg.proposals).where(sg.proposals.c.proposer == participant)
                               .order_by(sg.proposals.c.id)),
            "votes": _rows(conn, select(sg.votes).where(sg.votes.c.voter == participant)
                           .order_by(sg.votes.c.proposal_id)),
            "accounts": _rows(conn, select(schema.users.c.username, schema.users.c.role, schema.users.c.created_at)
                              .where(schema.users.c.participant == participant)),
            "access_log": _rows(conn, select(sg.access_log).where(sg.access_log.c.participant == participant)
                                .order_by(sg.access_log.c.id), ("id",)),
        }
    return out


# --- erasure ----------------------------------------------------------------------------------------------


def pseudonymise(data: dict[str, Any], pseudonym: str) -> dict[str, Any]:
    """``data`` with every personal field (name, e-mail, address, ...) replaced by the pseudonym."""
    out = dict(data)
    for key in PERSONAL_KEYS:
        if key in out and out[key] is not None:
            out[key] = f"{pseudonym}@erased.invalid" if key == "email" else pseudonym
    return out


def erase_member(engine: Engine, participant: str, *, requested_by: str, now: datetime | None = None
                 ) -> dict[str, Any]:
    """Pseudonymise ``participant``'s personal data everywhere it may be changed; return what was done and kept."""
    from kwartier.services.community import entity_sha256

    at = _now(now)
    pseudonym = "erased-" + hashlib.sha256(secrets.token_bytes(16)).hexdigest()[:12]
    e, u = schema.entities, schema.users
    with engine.begin() as conn:
        keys = _entity_keys(conn, participant)
        if not conn.execute(select(e.c.id).where(e.c.kind == "participant", e.c.key == participant)).first():
            raise PrivacyError(f"no participant {participant} in the store")
        changed = 0
        for kind, key in keys:
            for row in conn.execute(select(e.c.id, e.c.data).where(e.c.kind == kind, e.c.key == key,
                                                                   e.c.data.is_not(None))).all():
                data = pseudonymise(row.data, pseudonym)
                if data != row.data:
                    conn.execute(update(e).where(e.c.id == row.id).values(data=data, sha256=entity_sha256(data)))
                    changed += 1
        names = list(conn.execute(select(u.c.username).where(u.c.participant == participant)).scalars())
        conn.execute(delete(u).where(u.c.participant == participant))
        if names:  # the member's user names may themselves be personal (an e-mail address)
            conn.execute(update(sg.access_log).where(sg.access_log.c.actor.in_(names)).values(actor=pseudonym))
            conn.execute(update(sg.consents).where(sg.consents.c.by.in_(names)).values(by=pseudonym))
        withdrawn = [p for p in PURPOSES if p != CONTRACTUAL]
        conn.execute(insert(sg.consents), [{"participant": participant, "purpose": p, "granted": False, "at": at,
                                            "by": "erasure"} for p in withdrawn])
        in_journal = conn.execute(select(func.count()).select_from(schema.journal)
                                  .where(schema.journal.c.participant == participant)).scalar_one()
        invoices = list(conn.execute(select(schema.invoices.c.number)
                                     .where(schema.invoices.c.participant == participant)).scalars())
        eans = [key for kind, key in keys if kind in ("connection", "metering_point")]
        readings = conn.execute(select(func.count()).select_from(schema.readings)
                                .where(schema.readings.c.connection.in_(eans))).scalar_one() if eans else 0
        summary = {
            "participant": participant, "pseudonym": pseudonym, "entity_versions_pseudonymised": changed,
            "accounts_removed": len(names), "consents_withdrawn": withdrawn,
            "retained": {"invoices": invoices, "readings": int(readings), "journal_entries": int(in_journal)},
            "why_retained": "invoices: the legal duty to keep bills; readings and journal: settlement must stay "
                            "reproducible and verifiable; they hold ids and EANs, not names",
            "note": "remove or pseudonymise the member in the community definition file too, or the next "
                    "`kwartier community load` stores the name again",
        }
        seq = ledger.append_records(conn, [ledger.Record(participant, "privacy", "erasure",
                                                         {"pseudonym": pseudonym, "at": at.isoformat()})])[0]
        conn.execute(insert(sg.erasures).values(participant=participant, pseudonym=pseudonym,
                                                requested_by=requested_by, at=at, summary={**summary, "ledger": seq}))
        # a load-log row, so every cached community definition is rebuilt without the erased names
        conn.execute(insert(schema.community_loads).values(
            file_name=f"(erasure of {participant})", sha256="0" * 64, loaded_at=at, summary={"erasure": participant}))
    return summary
