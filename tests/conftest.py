"""Shared fixtures: the real data folder and server availability, with CI's no-skip rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(condition: bool, reason: str) -> None:
    """Skip with ``reason`` when ``condition`` is false; under CI=true fail instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    need(SHARED_DATA.is_dir(), f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def data_file(relpath: str) -> Path:
    """A file under ../shared/data; skips (fails under CI) when it is not there."""
    p = SHARED_DATA / relpath
    need(p.is_file(), f"real data file {p} is absent")
    return p


PG_URL = os.environ.get("KWARTIER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    """A fresh, migrated store: a SQLite file, or a throwaway schema on the real PostgreSQL server."""
    from kwartier.store import open_store

    if request.param == "sqlite":
        eng = open_store(f"sqlite:///{tmp_path / 'kwartier.db'}")
        yield eng
        eng.dispose()
        return
    need(_pg_reachable(), f"PostgreSQL is not reachable at {PG_URL}")
    import uuid

    from sqlalchemy import create_engine, text

    schema = f"kw_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    eng = open_store(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
