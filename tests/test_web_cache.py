"""The portal's view cache: computed once per key and data version, recomputed after a write."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert

from kwartier.store import open_store, schema
from kwartier.web.cache import ViewCache


def _import_row(engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(schema.imports).values(kind="prices", file_name="x.csv", sha256="0" * 64, format="f",
                                                   target="NL", imported_at=datetime.now(UTC), new=0, unchanged=0,
                                                   revised=0, anomalies=[]))


def test_a_view_is_computed_once_until_the_store_changes(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'k.db'}")
    views = ViewCache(engine)
    calls = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert views.get("page", ("p1", "en"), compute) == 1
    assert views.get("page", ("p1", "en"), compute) == 1  # a hit
    assert views.get("page", ("p2", "en"), compute) == 2  # another key
    _import_row(engine)  # a write: the data version moves on
    assert views.get("page", ("p1", "en"), compute) == 3
    assert (views.hits, views.misses) == (1, 3)


def test_with_a_ttl_a_write_shows_only_after_it(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'k.db'}")
    now = [0.0]
    views = ViewCache(engine, ttl_s=1.0, clock=lambda: now[0])
    first = views.data_version()
    _import_row(engine)
    assert views.data_version() == first  # trusted for 1 s
    now[0] = 1.0
    assert views.data_version() != first


def test_the_cache_is_bounded(tmp_path):
    views = ViewCache(open_store(f"sqlite:///{tmp_path / 'k.db'}"), maxsize=3)
    for k in range(10):
        views.get("v", k, lambda k=k: k)
    assert len(views._items) == 3 and views.get("v", 9, lambda: -1) == 9 and views.get("v", 0, lambda: -1) == -1


def test_shared_data_is_computed_once_for_every_process(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    one, other = ViewCache(open_store(url)), ViewCache(open_store(url))  # as two worker processes
    calls = []

    def compute() -> dict:
        calls.append(1)
        return {"total_cents": 1234, "plans": [{"id": "a", "total": None}]}

    assert one.get("learn", ("p1", "2026-10"), compute, shared=True)["total_cents"] == 1234
    calls.clear()
    assert other.get("learn", ("p1", "2026-10"), compute, shared=True) == {"total_cents": 1234,
                                                                            "plans": [{"id": "a", "total": None}]}
    assert calls == [] and other.shared_hits == 1  # read from the store, not computed again
    _import_row(one.engine)  # a write: a new data version, computed afresh
    other.get("learn", ("p1", "2026-10"), compute, shared=True)
    assert calls == [1]


def test_a_view_watching_some_parts_survives_writes_to_the_others(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'k.db'}")
    views = ViewCache(engine)
    calls = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert views.get("sharing", "2026-10", compute, watch=("readings", "prices")) == 1
    _import_row(engine)  # the imports table moves on, readings and prices do not
    assert views.get("sharing", "2026-10", compute, watch=("readings", "prices")) == 1
    assert views.get("page", "2026-10", compute) == 2  # a view that watches everything sees the write
