"""Readers for the price and meter files people really have; the format is detected from content.

Each reader module exposes ``FORMATS: list[Format]``. :func:`read_prices` and
:func:`read_readings` pick the format (or take the forced one), run the reader and validate
its frame against the canonical schema, so the store only ever sees well-formed frames.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from kwartier.ingest.base import (
    PRICE_SCHEMA,
    READING_SCHEMA,
    REGISTER_SCHEMA,
    Format,
    InputRejected,
    PriceImport,
    ReadingImport,
    ReadOptions,
    validate_frame,
)

__all__ = [
    "Format",
    "InputRejected",
    "PriceImport",
    "ReadOptions",
    "ReadingImport",
    "detect_format",
    "formats",
    "read_prices",
    "read_readings",
]

#: Reader modules in detection order: the more specific sniffers first, generic CSV last.
_MODULES = (
    "kwartier.ingest.prices_entsoe",
    "kwartier.ingest.prices_json",
    "kwartier.ingest.prices_csv",
    "kwartier.ingest.p1",
    "kwartier.ingest.meters_smp",
    "kwartier.ingest.meters_cumulative",
    "kwartier.ingest.meters_dsmrreader",
    "kwartier.ingest.meters_p1mon",
    "kwartier.ingest.meters_fluvius",
    "kwartier.ingest.meters_generic",
)


def formats(kind: str | None = None) -> list[Format]:
    """Every known format (of ``kind`` ``prices`` or ``readings`` when given), in detection order."""
    out: list[Format] = []
    for name in _MODULES:
        module = importlib.import_module(name)
        out.extend(f for f in module.FORMATS if kind is None or f.kind == kind)
    generic = [f for f in out if f.name.startswith("generic")]
    return [f for f in out if not f.name.startswith("generic")] + generic


def _head(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            raw = fh.read(65536)
    except OSError as exc:
        raise InputRejected(path, f"cannot read the file: {exc.strerror or exc}") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start > len(raw) - 4:  # a multi-byte character cut at the end of the head
            return raw[: exc.start].decode("utf-8")
        return raw.decode("latin-1")


def detect_format(path: str | Path, kind: str, forced: str | None = None) -> Format:
    """The format of the file at ``path``: the forced one when given, else the first that sniffs it."""
    p = Path(path)
    candidates = formats(kind)
    if forced is not None:
        for f in candidates:
            if f.name == forced:
                return f
        names = ", ".join(f.name for f in candidates)
        raise InputRejected(p, f"unknown {kind} format {forced!r}; known: {names}")
    if not p.is_file():
        raise InputRejected(p, "no such file")
    head = _head(p)
    for f in candidates:
        if f.detect(p, head):  # type: ignore[operator]
            return f
    names = ", ".join(f.name for f in candidates)
    raise InputRejected(p, f"not a {kind} file kwartier recognises (tried: {names}); use --format to force one")


def read_prices(path: str | Path, format: str | None = None, options: ReadOptions | None = None) -> PriceImport:
    """Read a price file into the canonical price frame (see :mod:`kwartier.ingest.base`)."""
    p = Path(path)
    fmt = detect_format(p, "prices", format)
    result: PriceImport = fmt.read(p, options or ReadOptions())  # type: ignore[operator]
    result.frame = validate_frame(result.frame, PRICE_SCHEMA, p)
    return result


def read_readings(
    path: str | Path, format: str | None = None, options: ReadOptions | None = None
) -> ReadingImport:
    """Read a meter file into the canonical reading frame (see :mod:`kwartier.ingest.base`)."""
    p = Path(path)
    fmt = detect_format(p, "readings", format)
    result: ReadingImport = fmt.read(p, options or ReadOptions())  # type: ignore[operator]
    result.frame = validate_frame(result.frame, READING_SCHEMA, p)
    if result.registers is not None:
        result.registers = validate_frame(result.registers, REGISTER_SCHEMA, p)
    return result
