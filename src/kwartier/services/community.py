"""Load a community definition file into the store as versioned entities, and read the current one back.

Each party, participant, connection, metering point and contract (and the community itself) is an
entity keyed by its id or EAN. Loading compares each entity's canonical JSON with the current
version: unchanged entities are left alone, a changed one gets a new version (the old one kept with
``is_current`` false), one that is no longer in the file gets a new version with ``data`` null. A
load that changes nothing writes nothing, not even the load log. Settlement reads the definition
back with :func:`current_definition`, with the exact plan texts that were loaded.
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, null, select, update

from kwartier.community.definition import Definition, DefinitionError, PlanText, build_definition, load_definition
from kwartier.store import schema
from kwartier.tariffs.plan import PlanError

#: Entity kinds and the definition sections they come from.
SECTION_OF = {
    "party": "parties",
    "participant": "participants",
    "connection": "connections",
    "metering_point": "metering_points",
    "contract": "contracts",
}
PLAN_SHA = "plan_sha256"
Key = tuple[str, str]  # (kind, id or EAN)


@dataclass(frozen=True)
class LoadSummary:
    """What a load did: the file's entity counts and how many entities were new, changed, unchanged, removed."""

    file: str
    community: str
    parties: int
    participants: int
    connections: int
    metering_points: int
    contracts: int
    new: int
    changed: int
    unchanged: int
    removed: int
    load_id: int | None  # None when nothing changed (and nothing was written)

    def to_json(self) -> dict[str, object]:
        return {
            "community": self.community,
            "parties": self.parties,
            "participants": self.participants,
            "connections": self.connections,
            "metering_points": self.metering_points,
            "contracts": self.contracts,
            "new": self.new,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "removed": self.removed,
        }


def canonical_json(data: Any) -> str:
    """The JSON that an entity's SHA-256 is taken of: sorted keys, no spaces."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def entity_sha256(data: Any) -> str:
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


def definition_entities(defn: Definition) -> dict[Key, dict[str, Any]]:
    """Every entity of a definition as JSON data; a contract's data carries its plan's SHA-256."""
    out: dict[Key, dict[str, Any]] = {("community", defn.community.id): defn.community.model_dump(mode="json")}
    for kind, section in SECTION_OF.items():
        for item in getattr(defn.spec, section):
            data = item.model_dump(mode="json")
            key = data.get("id", data.get("ean"))
            if kind == "contract":
                data[PLAN_SHA] = defn.plan_texts[key].sha256
            out[(kind, key)] = data
    return out


@dataclass(frozen=True)
class _Current:
    version: int
    sha256: str
    removed: bool


def load_community(engine: Engine, path: str | Path) -> LoadSummary:
    """Validate a definition file and store what changed as new entity versions, in one transaction.

    Raises DefinitionError (nothing written) when the file has mistakes.
    """
    p = Path(path)
    defn = load_definition(p)
    file_sha = hashlib.sha256(p.read_bytes()).hexdigest()
    incoming = definition_entities(defn)
    e = schema.entities
    with engine.begin() as conn:
        current = {
            (r.kind, r.key): _Current(r.version, r.sha256, r.data is None)
            for r in conn.execute(select(e.c.kind, e.c.key, e.c.version, e.c.sha256, e.c.data)
                                  .where(e.c.is_current.is_(True)))
        }
        writes: list[dict[str, Any]] = []  # new versions with data
        new = changed = unchanged = 0
        for key, data in incoming.items():
            sha, cur = entity_sha256(data), current.get(key)
            if cur is not None and not cur.removed and cur.sha256 == sha:
                unchanged += 1
                continue
            if cur is None or cur.removed:  # never seen, or back after a removal
                new += 1
            else:
                changed += 1
            writes.append({"kind": key[0], "key": key[1], "version": 1 if cur is None else cur.version + 1,
                           "data": data, "sha256": sha})
        gone = [(key, cur) for key, cur in current.items() if key not in incoming and not cur.removed]
        spec = defn.spec
        summary = LoadSummary(
            file=str(p), community=defn.community.id, parties=len(spec.parties),
            participants=len(spec.participants), connections=len(spec.connections),
            metering_points=len(spec.metering_points), contracts=len(spec.contracts),
            new=new, changed=changed, unchanged=unchanged, removed=len(gone), load_id=None,
        )
        if not writes and not gone:
            conn.rollback()  # nothing changed: leave no trace, not even in the load log
            return summary
        now = datetime.now(UTC)
        load_id = int(conn.execute(insert(schema.community_loads).values(
            file_name=str(p), sha256=file_sha, loaded_at=now, summary=summary.to_json(),
        )).inserted_primary_key[0])
        _store_plan_texts(conn, defn.plan_texts.values(), now)
        retired = [w for w in writes if w["version"] > 1] + [{"kind": k[0], "key": k[1]} for k, _ in gone]
        if retired:
            same_key = (e.c.kind == bindparam("b_kind"), e.c.key == bindparam("b_key"), e.c.is_current.is_(True))
            conn.execute(update(e).where(*same_key).values(is_current=False),
                         [{"b_kind": r["kind"], "b_key": r["key"]} for r in retired])
        if writes:
            conn.execute(insert(e), [w | {"is_current": True, "load_id": load_id} for w in writes])
        for (kind, key), cur in gone:  # data is SQL NULL: the entity was removed from the file
            conn.execute(insert(e).values(kind=kind, key=key, version=cur.version + 1, is_current=True,
                                          data=null(), sha256=entity_sha256(None), load_id=load_id))
    return replace(summary, load_id=load_id)


def _store_plan_texts(conn: Connection, texts: Iterable[PlanText], now: datetime) -> None:
    """Insert each plan text not stored yet (keyed by its SHA-256)."""
    t = schema.plan_texts
    by_sha: dict[str, PlanText] = {pt.sha256: pt for pt in texts}
    if not by_sha:
        return
    stored = set(conn.execute(select(t.c.sha256).where(t.c.sha256.in_(list(by_sha)))).scalars())
    fresh = [{"sha256": s, "plan_id": pt.plan_id, "text": pt.text, "stored_at": now}
             for s, pt in by_sha.items() if s not in stored]
    if fresh:
        conn.execute(insert(t), fresh)


#: Per engine (not per URL: two engines on one server may point at different schemas).
_CACHE: weakref.WeakKeyDictionary[Engine, tuple[tuple[object, ...], Definition]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def current_definition(engine: Engine) -> Definition:
    """The definition as last loaded (see :func:`rebuild_definition`), cached until the next load.

    The cache key is the newest load and the number of entity versions, read with one small query,
    so a load from another process is seen at once; a Definition is never changed by its users.
    """
    with engine.connect() as conn:
        key = tuple(conn.execute(select(
            select(func.max(schema.community_loads.c.id)).scalar_subquery(),
            select(func.count()).select_from(schema.entities).scalar_subquery())).one())
    with _CACHE_LOCK:
        hit = _CACHE.get(engine)
    if hit is not None and hit[0] == key:
        return hit[1]
    definition = rebuild_definition(engine)
    with _CACHE_LOCK:
        _CACHE[engine] = (key, definition)
    return definition


def rebuild_definition(engine: Engine) -> Definition:
    """The definition as last loaded, rebuilt from the current entities and the stored plan texts.

    It is validated again, so settlement works on exactly what was loaded, even if the file or a
    built-in plan has changed since.
    """
    e, t = schema.entities, schema.plan_texts
    with engine.connect() as conn:
        rows = conn.execute(select(e.c.kind, e.c.key, e.c.data)
                            .where(e.c.is_current.is_(True), e.c.data.is_not(None))
                            .order_by(e.c.kind, e.c.key)).all()
        rows = [r for r in rows if r.data is not None]
        wanted = {r.data[PLAN_SHA] for r in rows if r.kind == "contract"}
        found = conn.execute(select(t.c.sha256, t.c.text).where(t.c.sha256.in_(list(wanted)))) if wanted else []
        texts: dict[str, str] = {sha: text for sha, text in found}
    where = "stored community definition"
    communities = [r.data for r in rows if r.kind == "community"]
    if len(communities) != 1:
        raise DefinitionError(f"{where}: holds {len(communities)} communities; load a definition file first "
                              "(kwartier community load FILE)")
    data: dict[str, Any] = {"community": communities[0], **{s: [] for s in SECTION_OF.values()}}
    plan_of: dict[str, str] = {}
    for r in rows:
        if r.kind in SECTION_OF:
            item = dict(r.data)
            if r.kind == "contract":
                plan_of[item["id"]] = item.pop(PLAN_SHA)
            data[SECTION_OF[r.kind]].append(item)

    def stored_plan(contract: Any) -> tuple[str, str]:
        sha = plan_of[contract.id]
        if sha not in texts:
            raise PlanError(f"plan text {sha} is missing from the store")
        return texts[sha], f"{contract.plan} (stored, sha256 {sha[:12]})"

    return build_definition(data, where, stored_plan)
