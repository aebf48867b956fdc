"""Versioned writes: compare incoming values with the current ones, insert only what is new or changed.

The same file imported twice changes nothing; a changed value for a stored interval becomes
version n+1, and version n is kept with ``is_current = false``. Bulk rows go in through the
driver's fastest path (PostgreSQL ``COPY``, SQLite ``executemany``) inside the caller's transaction.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl
from sqlalchemy import BigInteger, Connection, Table, and_, bindparam, func, select, update

UTC_DT = pl.Datetime("us", "UTC")


@dataclass
class VersionCounts:
    """What a versioned write did: how many keys were new, unchanged and revised."""

    new: int = 0
    unchanged: int = 0
    revised: int = 0
    revised_starts: list[datetime] = field(default_factory=list)


def epoch_us(conn: Connection, column):  # type: ignore[no-untyped-def]
    """SQL for a UTC timestamp column as integer microseconds since 1970, computed by the database.

    Reading timestamps this way skips per-row Python conversion, which dominates large reads.
    """
    if conn.dialect.name == "postgresql":
        return func.floor(func.extract("epoch", column) * 1_000_000).cast(BigInteger)
    if conn.dialect.name == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC; grid times are whole seconds
        return func.strftime("%s", column).cast(BigInteger) * 1_000_000
    raise NotImplementedError(f"no epoch conversion for {conn.dialect.name}")


def current_frame(
    conn: Connection,
    table: Table,
    owner_col: str,
    owner: str,
    value_cols: list[str],
    start: datetime | None = None,
    end: datetime | None = None,
) -> pl.DataFrame:
    """The current rows of ``owner`` (a connection EAN or a zone) in ``[start, end]``, oldest first."""
    cols = [epoch_us(conn, table.c.interval_start), table.c.resolution, table.c.version,
            *(table.c[c] for c in value_cols)]
    cond = [table.c[owner_col] == owner, table.c.is_current.is_(True)]
    if start is not None:
        cond.append(table.c.interval_start >= start)
    if end is not None:
        cond.append(table.c.interval_start <= end)
    rows = conn.execute(select(*cols).where(and_(*cond)).order_by(table.c.interval_start)).all()
    schema: dict[str, pl.DataType] = {"interval_start": pl.Int64(), "resolution": pl.String(), "version": pl.Int64()}
    for c in value_cols:
        schema[c] = pl.String() if c == "status" else pl.Int64()
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
    frame = pl.DataFrame(dict(zip(schema, columns, strict=True)), schema=schema)
    return frame.with_columns(pl.from_epoch("interval_start", time_unit="us").dt.replace_time_zone("UTC"))


def write_versions(
    conn: Connection,
    table: Table,
    owner_col: str,
    owner: str,
    incoming: pl.DataFrame,
    value_cols: list[str],
    fixed: dict[str, object],
) -> VersionCounts:
    """Store ``incoming`` (interval_start, resolution, *value_cols, ...) as versions of ``owner``'s rows.

    Only ``value_cols`` decide whether a row changed; other incoming columns are stored as given.

    ``fixed`` holds the columns every inserted row shares (source, import_id, imported_at, ...).
    """
    if incoming.is_empty():
        return VersionCounts()
    lo, hi = incoming["interval_start"].min(), incoming["interval_start"].max()
    existing = current_frame(conn, table, owner_col, owner, value_cols, lo, hi)  # type: ignore[arg-type]
    joined = incoming.join(existing, on=["interval_start", "resolution"], how="left", suffix="_old")
    changed = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_old")) for c in value_cols])
    is_new = pl.col("version").is_null()
    new = joined.filter(is_new)
    revised = joined.filter(~is_new & changed)
    counts = VersionCounts(
        new=new.height,
        unchanged=joined.height - new.height - revised.height,
        revised=revised.height,
        revised_starts=revised["interval_start"].to_list(),
    )
    if revised.height:
        stmt = (
            update(table)
            .where(
                table.c[owner_col] == owner,
                table.c.interval_start == bindparam("ts"),
                table.c.resolution == bindparam("res"),
                table.c.is_current.is_(True),
            )
            .values(is_current=False)
        )
        keys = revised.select("interval_start", "resolution").iter_rows()
        conn.execute(stmt, [{"ts": t, "res": r} for t, r in keys])
    rows = pl.concat(
        [
            new.select(*incoming.columns, pl.lit(1, pl.Int64).alias("version")),
            revised.select(*incoming.columns, (pl.col("version") + 1).alias("version")),
        ],
        how="vertical_relaxed",
    )
    rows = rows.with_columns(
        [pl.lit(owner).alias(owner_col), pl.lit(True).alias("is_current")]
        + [pl.lit(v).alias(k) for k, v in fixed.items()]
    )
    bulk_insert(conn, table, rows)
    return counts


def bulk_insert(conn: Connection, table: Table, frame: pl.DataFrame) -> None:
    """Insert every row of ``frame`` (columns named as in ``table``) in the current transaction."""
    if frame.is_empty():
        return
    cols = [c.name for c in table.columns if c.name in frame.columns]
    frame = frame.select(cols)
    dbapi = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        _copy_postgres(dbapi, table.name, frame)
        return
    if conn.dialect.name == "sqlite":
        _executemany_sqlite(dbapi, table.name, frame)
        return
    conn.execute(table.insert(), frame.to_dicts())


def _as_text_frame(frame: pl.DataFrame, ts_format: str, *, sqlite: bool) -> pl.DataFrame:
    conv = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Datetime):
            col = pl.col(name)
            if dtype.time_zone is None:
                col = col.dt.replace_time_zone("UTC")
            conv.append(col.dt.convert_time_zone("UTC").dt.strftime(ts_format).alias(name))
        elif dtype == pl.Boolean and sqlite:
            conv.append(pl.col(name).cast(pl.Int8))
        else:
            conv.append(pl.col(name))
    return frame.select(conv)


def _copy_postgres(dbapi: object, table: str, frame: pl.DataFrame) -> None:
    text = _as_text_frame(frame, "%Y-%m-%d %H:%M:%S.%6f+00", sqlite=False)
    buf = io.BytesIO()
    text.write_csv(buf, include_header=False, null_value="")
    cols = ", ".join(f'"{c}"' for c in frame.columns)
    with dbapi.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv)") as copy:  # type: ignore[attr-defined]
        view = buf.getbuffer()
        step = 1 << 20
        for i in range(0, len(view), step):
            copy.write(view[i : i + step])


def _executemany_sqlite(dbapi: object, table: str, frame: pl.DataFrame) -> None:
    text = _as_text_frame(frame, "%Y-%m-%d %H:%M:%S.%6f", sqlite=True)
    cols = ", ".join(f'"{c}"' for c in frame.columns)
    marks = ", ".join("?" for _ in frame.columns)
    cur = dbapi.cursor()  # type: ignore[attr-defined]
    try:
        cur.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", text.iter_rows())
    finally:
        cur.close()


#: The columns whose change makes a new version.
READING_VALUES = ["import_wh", "export_wh", "status"]
PRICE_VALUES = ["price_ueur_per_kwh", "status"]


def select_frame(conn: Connection, stmt, schema: dict[str, pl.DataType]) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    """Run a SELECT and return its rows as a polars frame with ``schema`` (column names in order).

    Large reads skip SQLAlchemy's per-row objects: PostgreSQL streams ``COPY (...) TO STDOUT`` as
    CSV into polars; SQLite returns plain tuples from the driver. Timestamps should be selected as
    epoch microseconds (:func:`epoch_us`) and converted by the caller.
    """
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    sql = str(compiled)
    dbapi = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        buf = io.BytesIO()
        with dbapi.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:  # type: ignore[attr-defined]
            for chunk in copy:
                buf.write(chunk)
        if buf.tell() == 0:
            return pl.DataFrame(schema=schema)
        buf.seek(0)
        text_schema = {k: (pl.String if v == pl.Boolean else v) for k, v in schema.items()}
        frame = pl.read_csv(buf, has_header=False, new_columns=list(schema), schema_overrides=text_schema)
        return frame.with_columns(pl.col(k) == "t" for k, v in schema.items() if v == pl.Boolean)
    cur = dbapi.cursor()  # type: ignore[attr-defined]
    try:
        cur.execute(sql)
        rows = cur.fetchall()
    finally:
        cur.close()
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows, schema=schema, orient="row")
