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
