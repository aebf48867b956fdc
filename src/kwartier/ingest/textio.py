"""Text-file helpers the meter readers share: CSV rows with their line numbers, header names, date-times.

Every helper rejects bad input with :class:`~kwartier.ingest.base.InputRejected` naming the file and
the 1-based physical line (``row``) where the problem is, so a user can open the file at that line.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfoNotFoundError

import polars as pl

from kwartier.ingest.base import InputRejected, read_text
from kwartier.timegrid import Localized, localize_naive

ROW = "row"  # the physical line number (1-based, header included) of every parsed row
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_QUOTED = '"[^"]*"'
_OFFSET_AT_END = r"[+-]\d{2}:?\d{2}$"


def _lines(text: str) -> list[str]:
    """The physical lines of ``text`` (ended by ``\\r\\n``, ``\\r`` or ``\\n``), a leading BOM dropped."""
    return _LINE_BREAK.split(text.removeprefix("\ufeff"))


def _header(lines: list[str]) -> tuple[int, str]:
    """Index and text of the first non-blank line (``-1, ""`` when there is none)."""
    return next(((i, line) for i, line in enumerate(lines) if line.strip()), (-1, ""))


def _clean_name(name: str) -> str:
    return name.strip().strip('"').strip()


def guess_separator(header_line: str) -> str:
    """``;`` when the header line holds one, else ``,``."""
    return ";" if ";" in header_line else ","


def header_fields(head: str, separator: str | None = None) -> list[str]:
    """The column names of the first non-blank line of ``head`` (stripped, quotes removed)."""
    _, line = _header(_lines(head))
    sep = separator or guess_separator(line)
    return [_clean_name(f) for f in line.split(sep)]


@dataclass(frozen=True)
class CsvTable:
    """A CSV file read as text columns, with the physical line number of each row in ``row``."""

    frame: pl.DataFrame
    columns: list[str]
    header_row: int
    separator: str


def read_csv_table(
    path: str | Path, separator: str | None = None, *, pad_short_lines: bool = False, empty_ok: bool = False
) -> CsvTable:
    """Read a delimited file into string columns plus ``row``, checking every line against the header.

    The header is the first non-blank line; blank lines are skipped (the others keep their line
    numbers). Rejected, naming the line: an unbalanced quote, more fields than the header (a stray
    separator), fewer fields (a truncated line) unless ``pad_short_lines`` (the missing trailing
    cells are then empty, for the reader's own checks to name the empty column). A file without
    data rows is rejected unless ``empty_ok`` (the reader then reports it as ``no_data``).
    """
    lines = _lines(read_text(path))
    h, header_line = _header(lines)
    if h < 0:
        raise InputRejected(path, "the file is empty")
    sep = separator or guess_separator(header_line)
    body = pl.DataFrame({
        "line": pl.Series(lines[h + 1 :], dtype=pl.String), ROW: pl.int_range(h + 2, len(lines) + 1, eager=True)
    })
    body = body.filter(pl.col("line").str.strip_chars() != "")
    if not body.height and not empty_ok:
        raise InputRejected(path, "the file has no data rows")
    n_fields = len(re.sub(_QUOTED, "", header_line).split(sep))
    checked = body.with_columns(
        quotes=pl.col("line").str.count_matches('"', literal=True),
        fields=pl.col("line").str.replace_all(_QUOTED, "").str.count_matches(sep, literal=True) + 1,
    )
    wrong = pl.col("fields") > n_fields if pad_short_lines else pl.col("fields") != n_fields
    bad = checked.filter((pl.col("quotes") % 2 == 1) | wrong)
    if bad.height:
        r = bad.row(0, named=True)
        if r["quotes"] % 2:
            problem = "unbalanced quote (a truncated or malformed line)"
        elif r["fields"] > n_fields:
            problem = f"not a readable CSV line: {r['fields']} fields where the header has {n_fields}"
        else:
            problem = f"{r['fields']} fields where the header has {n_fields} (a truncated or malformed line)"
        raise InputRejected(path, problem, row=r[ROW])
    data = "\n".join([header_line, *body["line"].to_list()]).encode()
    try:
        frame = pl.read_csv(io.BytesIO(data), separator=sep, infer_schema=False, quote_char='"')
    except (pl.exceptions.PolarsError, ValueError) as exc:
        problem = f"not a readable {sep!r}-separated file: {str(exc).splitlines()[0]}"
        raise InputRejected(path, problem, row=h + 1) from None
    if frame.height != body.height:
        raise InputRejected(path, "the number of rows does not match the number of lines")
    frame = frame.rename({c: _clean_name(c) for c in frame.columns}).with_columns(body[ROW])
    return CsvTable(frame, [c for c in frame.columns if c != ROW], h + 1, sep)


def require_columns(path: str | Path, found: Sequence[str], wanted: Sequence[str], header_row: int = 1) -> None:
    """Reject the file when one of ``wanted`` is not among ``found``, naming the header row."""
    missing = [n for n in wanted if n not in found]
    if missing:
        have = [c for c in found if c != ROW]
        raise InputRejected(path, f"missing column(s) {missing}; found {have}", row=header_row)


def parse_datetimes(
    frame: pl.DataFrame,
    text: pl.Series | str,
    formats: Sequence[str],
    path: str | Path,
    what: str,
    expected: str,
    *,
    shown: Sequence[str] | None = None,
    time_zone: str | None = None,
) -> pl.Series:
    """Date-times (``us``) from text, each value parsed by the first of ``formats`` that fits it.

    ``text`` is a column of ``frame`` or a series aligned with it (stripped here). Without
    ``time_zone`` the result is naive; with it the formats carry an offset (``%z``) and the
    instants come out in that zone. The first value that no format fits is rejected, naming its
    row and showing the cells of the columns ``shown`` (default: the ``text`` column):
    ``<what> '<value>' is not <expected>``, or ``... has no UTC offset`` when an offset is needed
    and the value ends without one.
    """
    values = (frame[text] if isinstance(text, str) else text).str.strip_chars()
    parsed = pl.select(
        pl.coalesce([values.str.to_datetime(f, strict=False, time_unit="us", time_zone=time_zone) for f in formats])
    ).to_series()
    bad = parsed.is_null()
    if not bad.any():
        return parsed
    i = int(bad.arg_max())  # type: ignore[arg-type]
    cells = [frame[c][i] for c in shown] if shown else [frame[text][i] if isinstance(text, str) else text[i]]
    value = " ".join(repr(c) for c in cells)
    if all(c is None for c in cells):
        problem = f"{what} is empty (expected {expected})"
    elif time_zone is not None and not re.search(_OFFSET_AT_END, values[i] or ""):
        problem = f"{what} {value} has no UTC offset (expected {expected})"
    else:
        problem = f"{what} {value} is not {expected}"
    raise InputRejected(path, problem, row=frame[ROW][i])


def localize(naive: pl.Series, tz: str, path: str | Path) -> Localized:
    """:func:`~kwartier.timegrid.localize_naive`, rejecting a time zone that does not exist."""
    try:
        return localize_naive(naive, tz)
    except (ZoneInfoNotFoundError, pl.exceptions.PolarsError) as exc:
        raise InputRejected(path, f"cannot place the times in time zone {tz!r}: {str(exc).splitlines()[0]}") from None
