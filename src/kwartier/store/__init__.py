"""Persistence: open the database (SQLite by default, PostgreSQL in production) at the latest schema."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event

DEFAULT_URL = "sqlite:///kwartier.db"
ENV_URL = "KWARTIER_DATABASE_URL"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class StoreError(RuntimeError):
    """The database cannot be opened or is not at a schema this version understands."""


def resolve_url(url: str | None = None) -> str:
    """The database URL: the one given, else ``$KWARTIER_DATABASE_URL``, else ``kwartier.db`` here.

    ``postgresql://`` and ``postgres://`` URLs are taken to mean the psycopg 3 driver.
    """
    chosen = url or os.environ.get(ENV_URL) or DEFAULT_URL
    for prefix in ("postgres://", "postgresql://"):
        if chosen.startswith(prefix):
            return "postgresql+psycopg://" + chosen[len(prefix) :]
    return chosen


def make_engine(url: str | None = None, **kwargs: object) -> Engine:
    """An engine for ``url`` (see :func:`resolve_url`); SQLite gets WAL and enforced foreign keys."""
    resolved = resolve_url(url)
    kwargs.setdefault("hide_parameters", True)  # bound values (names, e-mails, hashes) stay out of logs and errors
    engine = create_engine(resolved, **kwargs)  # type: ignore[arg-type]
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic (a no-op when it is there already)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def open_store(url: str | None = None, *, upgrade: bool = True, **engine_options: object) -> Engine:
    """Open the database at ``url`` and bring it to the latest schema."""
    try:
        engine = make_engine(url, **engine_options)
        if upgrade:
            migrate(engine)
    except Exception as exc:  # the driver's own message is the useful part
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(exc, SQLAlchemyError | OSError):
            raise StoreError(f"cannot open database {resolve_url(url)}: {exc.__class__.__name__}: {exc}") from exc
        raise
    return engine
