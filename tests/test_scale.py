"""Bill runs on Dask: the same journal as the local settle, posting for posting, and the partition pieces."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sqlalchemy import create_engine, select, text

from communities import HEAD, member
from communities import write_generic as _generic
from conftest import PG_URL, _pg_reachable, need
from kwartier import synth
from kwartier.ids import make_ean18
from kwartier.scale.partitions import PartitionError, meter_groups, read_partition
from kwartier.scale.run import (
    dense_energy,
    frame_lines,
    lines_frame,
    reading_fingerprints,
    settle_distributed,
)
from kwartier.services import settle as local
from kwartier.services.community import current_definition, load_community
from kwartier.services.imports import import_prices, import_readings
from kwartier.services.settle import SettleError, settle
from kwartier.settle import ledger
from kwartier.store import open_store
from kwartier.store import schema as s
from kwartier.timegrid import interval_starts, local_period_bounds

EANS = [make_ean18(f"871000{i:011d}") for i in range(8)]
HEAT = make_ean18("87100000000000099")
GAP_EAN = EANS[2]  # one day of February missing: estimated from the week before

#: A supplier switch mid-month (two contracts, two plans), a heat-pump sub-meter with its own supplier,
#: a JEM-2.0 household (its derived tax share reads January), and plain dynamic households.
EXTRA = f"""
[[parties]]
id = "heat"
roles = ["supplier"]
name = "Heat B.V."

[[participants]]
id = "p5"
name = "Household 5"
email = "p5@example.org"

[[connections]]
ean = "{EANS[5]}"
participant = "p5"
grid_area = "breda"
capacity_kw = "17.25"
grid = "net"

[[contracts]]
id = "c5a"
target = "{EANS[5]}"
supplier = "sup"
plan = "nl-fixed-2026"
valid_from = 2023-01-01
valid_to = 2026-02-15

[[contracts]]
id = "c5b"
target = "{EANS[5]}"
supplier = "sup"
plan = "nl-dynamic-2026"
valid_from = 2026-02-15

[[metering_points]]
ean = "{HEAT}"
connection = "{EANS[4]}"
supplier = "heat"

[[contracts]]
id = "c-heat"
target = "{HEAT}"
supplier = "heat"
plan = "nl-fixed-2026"
valid_from = 2023-01-01
"""


def community_text() -> str:
    plans = {6: "jem-2.0"}
    since = {3: "2026-02-15"}  # a new customer mid-month: its engine call is the one household 5 switches into
    people = "".join(member(i, EANS[i], plans.get(i, "nl-dynamic-2026"), since.get(i, "2023-01-01"))
                     for i in range(8) if i != 5)
    return HEAD + people + EXTRA


def build(engine, folder: Path) -> None:
    """January and February 2026: prices, and readings for every meter (a day missing for one)."""
    folder.mkdir(exist_ok=True)
    (folder / "c.toml").write_text(community_text())
    load_community(engine, folder / "c.toml")
    start, stop = local_period_bounds(date(2026, 1, 1), date(2026, 3, 1))
    starts = interval_starts(start, stop)
    hour = (starts.dt.convert_time_zone("Europe/Amsterdam").dt.hour()).to_numpy().astype(float)
    epoch_s = starts.dt.epoch("s").to_numpy()
    price = 90 + 50 * np.sin(hour / 24 * 6.28) + 10 * np.cos(epoch_s / 86400.0)
    pl.DataFrame({"timestamp": starts.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "price_eur_per_mwh": [f"{p:.2f}" for p in price]}).write_csv(folder / "prices.csv")
    import_prices(engine, folder / "prices.csv")
    rng = np.random.default_rng(17)
    pv = synth.pv_energy_wh(epoch_s, 1.0, np.full(epoch_s.shape, 0.7))
    gap = (starts >= datetime(2026, 2, 10, 23, tzinfo=UTC)) & (starts < datetime(2026, 2, 11, 23, tzinfo=UTC))
    for k, ean in enumerate([*EANS, HEAT]):
        load = synth.household_load_wh(hour, 2500 + 300 * k, rng)
        if ean == HEAT:
            frame = pl.DataFrame({"interval_start": starts, "import_wh": load // 3, "export_wh": np.zeros_like(load)})
        else:
            own = np.rint(pv * (k % 3) * 2).astype(np.int64)
            frame = pl.DataFrame({"interval_start": starts, "import_wh": np.clip(load - own, 0, None),
                                  "export_wh": np.clip(own - load, 0, None)})
        if ean == GAP_EAN:
            frame = frame.filter(~pl.Series(gap))
        import_readings(engine, _generic(frame, folder / f"{ean}.csv"), ean)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def twin(request, tmp_path):
    """Two fresh stores of one backend holding the same community: one for the local settle, one for Dask."""
    if request.param == "sqlite":
        engines = [open_store(f"sqlite:///{tmp_path / f'{k}.db'}") for k in ("local", "dask")]
        for k, eng in zip(("local", "dask"), engines, strict=True):
            build(eng, tmp_path / k)
        yield engines
        for eng in engines:
            eng.dispose()
        return
    need(_pg_reachable(), f"PostgreSQL is not reachable at {PG_URL}")
    admin = create_engine(PG_URL)
    names = [f"kw_scale_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    with admin.begin() as conn:
        for name in names:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
    engines = [open_store(PG_URL, connect_args={"options": f"-csearch_path={name}"}) for name in names]
    try:
        for k, eng in zip(("local", "dask"), engines, strict=True):
            build(eng, tmp_path / k)
        yield engines
    finally:
        for eng in engines:
            eng.dispose()
        with admin.begin() as conn:
            for name in names:
                conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 single-threaded in-process workers, shared by the tests that connect to one."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as c:
        yield c


def journal(engine) -> list[tuple]:
    """The journal without what depends on the clock (posted_at, and so the hashes) and the run ids."""
    j = s.journal
    with engine.connect() as conn:
        rows = conn.execute(select(j.c.seq, j.c.period, j.c.kind, j.c.debit, j.c.credit, j.c.amount_nano,
                                   j.c.participant, j.c.payee, j.c.connection, j.c.component, j.c.inputs)
                            .order_by(j.c.seq)).all()
    return [tuple(r) for r in rows]


def revise(engine, folder: Path) -> None:
    """One February quarter of household 5 (after its supplier switch) read 3 kWh higher."""
    at = datetime(2026, 2, 20, 17, tzinfo=UTC)
    pl.DataFrame({"interval_start": [at], "import_wh": [3000], "export_wh": [0]}).pipe(
        _generic, folder / "revised.csv")
    import_readings(engine, folder / "revised.csv", EANS[5])


@pytest.mark.slow
def test_the_dask_path_posts_what_the_local_settle_posts(twin, tmp_path, cluster):
    engine_local, engine_dask = twin
    expected = settle(engine_local, "2026-02")
    got = settle_distributed(engine_dask, "2026-02", workers=2, processes=False, partition_meters=2,
                             folder=tmp_path / "export")
    assert expected.estimated_intervals == got.estimated_intervals == 96  # the missing day, estimated once
    assert got.new_postings == expected.new_postings > 40
    assert got.to_json() == expected.to_json()
    assert journal(engine_dask) == journal(engine_local)
    with engine_dask.connect() as conn:
        assert ledger.verify(conn).ok
        runs = conn.execute(select(s.settle_runs.c.summary)).scalars().all()
    assert runs[-1]["journal"]["entries"] == len(journal(engine_dask))
    assert list((tmp_path / "export").iterdir()) == []  # the partitions are removed after the run
    assert {r[9] for r in journal(engine_dask)} >= {"supply@sup", "energy_tax@fisc", "supply@heat"}

    # A revised reading: both paths post the same correction; then an unchanged rerun posts nothing.
    revise(engine_local, tmp_path / "local")
    revise(engine_dask, tmp_path / "dask")
    expected = settle(engine_local, "2026-02")
    got = settle_distributed(engine_dask, "2026-02", scheduler=cluster.scheduler_address, partition_meters=3)
    assert got.new_postings == expected.new_postings > 0
    assert journal(engine_dask) == journal(engine_local)
    assert {r[2] for r in journal(engine_dask)[-got.new_postings:]} == {"correction"}
    again = settle_distributed(engine_dask, "2026-02", scheduler=cluster.scheduler_address)
    assert again.new_postings == 0 and again.to_json()["by_participant"] == got.to_json()["by_participant"]


def test_a_metering_point_stays_with_its_connection_in_every_partition_size(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'k.db'}")
    (tmp_path / "c.toml").write_text(community_text())
    load_community(engine, tmp_path / "c.toml")
    defn = current_definition(engine)
    for size in range(1, 11):
        groups = meter_groups(defn, size)
        assert sorted(m for g in groups for m in g) == sorted([*EANS, HEAT])
        assert any(EANS[4] in g and HEAT in g for g in groups)
        assert all(len(g) <= size + 1 for g in groups)  # a connection and its one metering point
    with pytest.raises(ValueError, match="at least 1"):
        meter_groups(defn, 0)
    engine.dispose()


def _random_readings(rng: np.random.Generator, meters: int, start: datetime, quarters: int) -> pl.DataFrame:
    """Sparse readings (some quarters absent, some values null) with a meter index, as in a partition."""
    keep = rng.random((meters, quarters)) < 0.8
    m, q = np.nonzero(keep)
    n = m.size
    imp = pl.Series(rng.integers(0, 3000, n)).set(pl.Series(rng.random(n) < 0.05), None)
    return pl.DataFrame({
        "meter": m.astype(np.int32),
        "interval_start": pl.Series(start.timestamp() * 1e6 + q * 900e6).cast(pl.Int64).cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC"),
        "import_wh": imp, "export_wh": rng.integers(0, 1000, n),
        "status": rng.choice(["actual", "estimated"], n), "version": rng.integers(1, 4, n),
    })


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_dense_matrices_and_fingerprints_equal_the_local_settle_s(seed):
    rng = np.random.default_rng(seed)
    start, stop = local_period_bounds(date(2026, 3, 1), date(2026, 3, 4))  # the spring DST change: 2 x 96 + 92
    starts = interval_starts(start, stop)
    meters = [make_ean18(f"8710000000000{i:04d}") for i in range(7)]
    rows = _random_readings(rng, len(meters), start, starts.len())
    named = rows.with_columns(connection=pl.Series(meters).gather(rows["meter"]))
    imp, exp = dense_energy(rows, len(meters), start, starts.len())
    want_imp, want_exp = local._matrices(named, meters, starts)
    assert np.array_equal(imp, want_imp) and np.array_equal(exp, want_exp)
    fps = reading_fingerprints(rows, meters)
    for (ean,), part in named.sort("interval_start").group_by(["connection"]):
        cols = part.select("interval_start", "version", "import_wh", "export_wh", "status")
        assert fps[ean] == local._fingerprint(cols)
    assert len(fps) == len(meters)


def test_lines_survive_the_trip_between_processes_exactly():
    lines = [local._Line("p1", EANS[0], "supply", "sup", "sup", True, Decimal("0.21"), -1234567891, "c1", "ab" * 32,
                         "supplier", Decimal("123.456"), "kWh"),
             local._Line("p1", EANS[0], "standing", "net", "sup", False, Decimal("0.09"), 10**15, "c1", "cd" * 32,
                         "grid", Decimal(28) / Decimal(31), "month", "12.5"),
             local._Line("p2", EANS[1], "fee", "sup", "sup", True, Decimal("0.21"), 0, "c2", "ef" * 32,
                         "supplier", Decimal("1E+1"), "day", None)]
    back = frame_lines(lines_frame(lines))
    assert back == lines
    assert [str(ln.quantity) for ln in back] == ["123.456", str(Decimal(28) / Decimal(31)), "1E+1"]


def test_a_partition_the_worker_cannot_see_is_a_clear_error(tmp_path):
    with pytest.raises(PartitionError, match="shared file system"):
        read_partition(tmp_path / "export" / "part-00000")


def test_a_scheduler_and_local_workers_together_are_refused(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'k.db'}")
    (tmp_path / "c.toml").write_text(community_text())
    load_community(engine, tmp_path / "c.toml")
    with pytest.raises(SettleError, match="not both"):
        settle_distributed(engine, "2026-02", scheduler="tcp://127.0.0.1:1", workers=2)
    with pytest.raises(SettleError, match="not YYYY-MM"):
        settle_distributed(engine, "2026-2x", workers=1, processes=False)
    engine.dispose()
