"""Fuzzing every importer: random bytes and mutated real files give a result or a clean InputRejected, nothing else.

Each format of :func:`kwartier.ingest.formats` is fed (a) arbitrary bytes from hypothesis and (b) a real
file from ``../shared/data`` (its head, so one read stays in the milliseconds) with 1-4 mutations: lines
deleted, duplicated or swapped, a cell replaced by a hostile value, the file cut short, bytes inserted or
flipped, JSON leaves replaced, xlsx cells rewritten. The reader is run both forced (``fmt.read``, the
worst case: any input reaches the parser) and through detection (``read_prices`` / ``read_readings``).

The property: either a frame that passed the store's validation, or :class:`InputRejected` whose
message starts with the file name. Any other exception (``KeyError``, ``IndexError``, a polars
``ComputeError``, ``OverflowError`` ...) is a bug: hypothesis shrinks it to a small failing file.
Examples are bounded (``derandomize=True`` makes a CI run repeat a local one).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SHARED_DATA, data_file
from kwartier.ingest import InputRejected, ReadOptions, formats, read_prices, read_readings
from kwartier.ingest.base import PRICE_SCHEMA, READING_SCHEMA

HEAD_LINES = 60  # lines of a real text file kept as the seed
JSON_ITEMS = 30  # items kept of every list of a real JSON file
XLSX_ROWS = 40  # rows kept of every sheet of a real workbook
BYTES_EXAMPLES = 20  # per format: arbitrary bytes
MUTATION_EXAMPLES = 35  # per format: mutated real files ...
XLSX_EXAMPLES = 15  # ... but fewer workbooks (each is written and parsed by openpyxl, ~50 ms)

#: Values a hostile or broken export puts in a cell.
NASTY = ["", " ", "NaN", "nan", "inf", "-inf", "-1", "-0", "0", "1e400", "-1e400", "9" * 40, "1,5", "1.5.5",
         "0x1F", "１２", "２０２５-01-01", "null", "None", "true", '"', '""', ";", ",", "\t", "\x00", "\ufeff",
         "ä€", "2025-02-30 25:61:00", "2025-13-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59+14:00",
         "1970-01-01", "-2147483649", "2025-10-26 02:30:00", "2025-03-30 02:15:00", "2025-01-01T00:07:00+00:00",
         "24:00", "x" * 300, "=1+1", "<x>", "]]>", "&amp;", "PT15M", "PT1M", "P1D", "estimated", "\r", "\n"]
#: JSON values put in place of a leaf or a list item.
NASTY_JSON: list[object] = [None, "", "abc", -1, 0, 1e308, -1e308, 2**70, True, [], {}, [None], "NaN",
                            "2025-13-01T00:00:00Z", "2025-01-01T00:07:00", "0001-01-01T00:00:00", 1.5e-9]

#: The real file each format is mutated from (a new format needs one here).
SEEDS = {
    "entsoe-xml": "entsoe_xml/hass_entsoe_BE_60M_15M_mix.xml",
    "entsoe-csv": "prices_nl/entsoe_tp_export_NL_Day-ahead_Prices_202301010000-202401010000.csv",
    "rigaux-csv": "prices_be/be_dayahead_2022_2024_hourly_rigaux.csv",
    "energyzero-json": "prices_nl/energyzero_fixtures/rest_electricity_quarter_response.json",
    "easyenergy-json": "prices_nl/easyenergy_fixtures/energy_quarter.json",
    "markvis-json": "prices_nl/mark_vis_epex_json/prices_2026.json",
    "jeroen-csv": "prices_nl/nl_dayahead_2025_15min_jeroen_nl.csv",
    "dsmr-p1": "dsmr_p1_telegrams/telegram_v5.txt",
    "slimmemeterportal-xlsx": "household_nl/slimmemeterportal_2024_15min_partial.xlsx",
    "slimmemeterportal-csv": "household_nl/slimmemeterportal_2023_15min.csv",
    "emo-csv": "household_nl/energiemanageronline_2025_15min_cumulative.csv",
    "homewizard-csv": "household_nl/homewizard_p1_2022-09_15min_cumulative.csv",
    "dsmrreader-csv": "household_nl/dsmrreader_export_2024_hourly.csv",
    "p1mon-uur-csv": "household_nl/p1mon_e_history_uur.csv",
    "p1mon-min-csv": "household_nl/p1mon_e_history_min.csv",
    "p1mon-xlsx": "household_nl/p1mon_e_historie.db.xlsx",
    "p1mon-xlsx-min": "household_nl/p1mon_e_historie.db.xlsx",
    "fluvius-csv": "household_be/fluvius_2023-10-22_2023-12-31_15min.csv",
    "generic-csv/prices": "prices_nl/nl_dayahead_2025_15min_jeroen_nl.csv",  # rewritten as generic, see _seed
    "generic-csv/readings": "household_nl/slimmemeterportal_2023_15min.csv",
}
ALL = [pytest.param(f, id=f"{f.name}/{f.kind}", marks=[pytest.mark.slow] if "xlsx" in f.name else [])
       for f in formats()]
def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                HealthCheck.data_too_large])


def _key(fmt) -> str:  # type: ignore[no-untyped-def]
    return f"{fmt.name}/{fmt.kind}" if fmt.name.startswith("generic") else fmt.name


# --- the property ---------------------------------------------------------------------------------


def check_read(fmt, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Forced and detected reads of ``path``: a valid frame or InputRejected naming the file."""
    for read in (lambda: fmt.read(path, ReadOptions()),
                 lambda: (read_prices if fmt.kind == "prices" else read_readings)(path)):
        try:
            result = read()
        except InputRejected as exc:
            assert str(exc).startswith(str(path)), f"the message does not name the file: {exc}"
            assert exc.problem.strip(), "a rejection without a problem stated"
            continue
        schema = PRICE_SCHEMA if fmt.kind == "prices" else READING_SCHEMA
        assert list(result.frame.columns)[: len(schema)] == list(schema) or set(schema) <= set(result.frame.columns)


# --- seeds: a small real file per format ------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    kind: str  # "text" | "json" | "xlsx"
    text: str = ""
    data: object = None  # parsed JSON, or {sheet: rows} for a workbook
    separator: str = ","


def _head_text(path: Path, lines: int = HEAD_LINES) -> str:
    raw = path.read_bytes()[:200_000]
    text = raw.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[:lines]) + "\n"


def _shrink(obj: object) -> object:
    if isinstance(obj, list):
        return [_shrink(x) for x in obj[:JSON_ITEMS]]
    if isinstance(obj, dict):
        return {k: _shrink(v) for k, v in obj.items()}
    return obj


def _sheets(path: Path) -> dict[str, list[list[object]]]:
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        return {ws.title: [list(r) for r, _ in zip(ws.iter_rows(values_only=True), range(XLSX_ROWS), strict=False)]
                for ws in book.worksheets}
    finally:
        book.close()


def _generic_prices(path: Path) -> str:
    lines = _head_text(path, HEAD_LINES).splitlines()[1:]
    out = ["timestamp,price_eur_per_mwh"]
    for line in lines:
        cells = [c.strip('"') for c in line.split(";")]
        if len(cells) >= 3:
            out.append(f"{cells[1].replace(' ', 'T')}Z,{float(cells[2].replace(',', '.')) * 1000:.2f}")
    return "\n".join(out) + "\n"


def _generic_readings() -> str:
    rows = ["timestamp,import_wh,export_wh,status"]
    rows += [f"2025-03-30T{h // 4:02d}:{15 * (h % 4):02d}:00Z,{100 + 7 * h},{h % 5},actual" for h in range(48)]
    return "\n".join(rows) + "\n"


@cache
def _sheets_of(path: Path) -> dict[str, list[list[object]]]:
    return _sheets(path)


@cache
def _seed(key: str) -> Seed:
    path = data_file(SEEDS[key])
    if key == "generic-csv/prices":
        return Seed("text", _generic_prices(path))
    if key == "generic-csv/readings":
        return Seed("text", _generic_readings())
    if path.suffix == ".xlsx":
        return Seed("xlsx", data=_sheets_of(path))
    if path.suffix == ".json":
        data = _shrink(json.loads(path.read_text(encoding="utf-8")))
        if isinstance(data, dict) and "count" in data and isinstance(data.get("prices"), list):
            data["count"] = len(data["prices"])  # mark-vis states its length
        return Seed("json", data=data)
    small = path.stat().st_size < 40_000  # XML and telegrams whole; big tables by their head
    text = path.read_text(encoding="utf-8", errors="replace") if small else _head_text(path)
    return Seed("text", text, separator=";" if text.split("\n", 1)[0].count(";") else ",")


# --- mutations ---------------------------------------------------------------------------------------

Draw = Callable[[st.SearchStrategy], object]


def _mutate_lines(lines: list[str], sep: str, draw: Draw) -> list[str]:
    if not lines:
        return lines
    i = draw(st.integers(0, len(lines) - 1))
    op = draw(st.sampled_from(["delete", "duplicate", "swap", "cell", "cell", "cell", "blank", "reorder"]))
    if op == "delete":
        return lines[:i] + lines[i + 1:]
    if op == "duplicate":
        return [*lines[:i + 1], lines[i], *lines[i + 1:]]
    if op == "swap":
        j = draw(st.integers(0, len(lines) - 1))
        lines = list(lines)
        lines[i], lines[j] = lines[j], lines[i]
        return lines
    if op == "blank":
        return [*lines[:i], "", *lines[i:]]
    if op == "reorder":
        return [lines[0], *reversed(lines[1:])]
    cells = lines[i].split(sep)
    k = draw(st.integers(0, len(cells) - 1))
    value = draw(st.one_of(st.sampled_from(NASTY), st.text(max_size=12)))
    cells[k] = value if draw(st.booleans()) else f'"{value}"'
    return [*lines[:i], sep.join(cells), *lines[i + 1:]]


def _mutate_bytes(raw: bytes, draw: Draw) -> bytes:
    if not raw:
        return draw(st.binary(max_size=64))
    op = draw(st.sampled_from(["truncate", "insert", "flip", "utf16", "crlf"]))
    i = draw(st.integers(0, len(raw) - 1))
    if op == "truncate":
        return raw[:i]
    if op == "insert":
        return raw[:i] + draw(st.binary(min_size=1, max_size=16)) + raw[i:]
    if op == "flip":
        return raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1:]
    if op == "utf16":
        return raw.decode("utf-8", errors="replace").encode("utf-16")
    return raw.replace(b"\n", b"\r\n") if draw(st.booleans()) else raw.replace(b"\n", b"\r")


def _mutate_json(obj: object, draw: Draw) -> object:
    """Replace one leaf, drop one key or list item, somewhere in ``obj``."""
    if isinstance(obj, dict) and obj:
        k = draw(st.sampled_from(sorted(obj, key=str)))
        action = draw(st.sampled_from(["descend", "descend", "drop", "replace"]))
        if action == "drop":
            return {kk: v for kk, v in obj.items() if kk != k}
        if action == "replace":
            return {**obj, k: draw(st.sampled_from(NASTY_JSON))}
        return {**obj, k: _mutate_json(obj[k], draw)}
    if isinstance(obj, list) and obj:
        i = draw(st.integers(0, len(obj) - 1))
        action = draw(st.sampled_from(["descend", "descend", "drop", "duplicate", "replace"]))
        if action == "drop":
            return obj[:i] + obj[i + 1:]
        if action == "duplicate":
            return [*obj[:i + 1], obj[i], *obj[i + 1:]]
        if action == "replace":
            return [*obj[:i], draw(st.sampled_from(NASTY_JSON)), *obj[i + 1:]]
        return [*obj[:i], _mutate_json(obj[i], draw), *obj[i + 1:]]
    return draw(st.sampled_from(NASTY_JSON))


def _xlsx_bytes(sheets: dict[str, list[list[object]]]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        ws = book.create_sheet(name)
        for row in rows:
            ws.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def _mutate_sheets(sheets: dict[str, list[list[object]]], draw: Draw) -> dict[str, list[list[object]]]:
    name = draw(st.sampled_from(sorted(sheets)))
    rows = [list(r) for r in sheets[name]]
    if not rows:
        return sheets
    i = draw(st.integers(0, len(rows) - 1))
    op = draw(st.sampled_from(["cell", "cell", "delete", "duplicate"]))
    if op == "delete":
        rows = rows[:i] + rows[i + 1:]
    elif op == "duplicate":
        rows = [*rows[:i + 1], rows[i], *rows[i + 1:]]
    elif rows[i]:
        k = draw(st.integers(0, len(rows[i]) - 1))
        rows[i][k] = draw(st.one_of(st.sampled_from(NASTY), st.sampled_from([None, -1, 0, 1e300, -5.5, 10**15])))
    return {**sheets, name: rows}


def mutated(seed: Seed, draw: Draw) -> bytes:
    """The seed with 1-4 mutations, as file bytes."""
    n = draw(st.integers(1, 4))
    if seed.kind == "xlsx":
        sheets = seed.data  # type: ignore[assignment]
        for _ in range(n):
            sheets = _mutate_sheets(sheets, draw)  # type: ignore[arg-type]
        raw = _xlsx_bytes(sheets)  # type: ignore[arg-type]
        return _mutate_bytes(raw, draw) if draw(st.integers(0, 9)) == 0 else raw
    if seed.kind == "json":
        obj = seed.data
        for _ in range(n):
            obj = _mutate_json(obj, draw)
        raw = json.dumps(obj).encode()
        return _mutate_bytes(raw, draw) if draw(st.integers(0, 4)) == 0 else raw
    lines = seed.text.split("\n")
    for _ in range(n):
        if draw(st.integers(0, 4)) == 0:
            return _mutate_bytes("\n".join(lines).encode("utf-8"), draw)
        lines = _mutate_lines(lines, seed.separator, draw)
    return "\n".join(lines).encode("utf-8")


# --- the tests ---------------------------------------------------------------------------------------


def test_every_format_has_a_seed_file():
    missing = sorted({_key(f) for f in formats()} - set(SEEDS))
    assert not missing, f"new format(s) {missing}: add a real seed file to SEEDS"


@pytest.mark.parametrize("fmt", ALL)
def test_arbitrary_bytes_are_rejected_cleanly(fmt, tmp_path):
    path = tmp_path / f"fuzz-{fmt.name}.dat"

    @fuzz(BYTES_EXAMPLES)
    @given(raw=st.one_of(st.binary(max_size=600),
                         st.text(alphabet=st.sampled_from(list("0123456789-:;,.T Z+\"\n\r\tabcdefkWh{}[]<>/=")),
                                 max_size=400).map(str.encode)))
    def run(raw: bytes) -> None:
        path.write_bytes(raw)
        check_read(fmt, path)

    run()


@pytest.mark.parametrize("fmt", ALL)
def test_mutated_real_files_are_read_or_rejected_cleanly(fmt, tmp_path):
    if not SHARED_DATA.is_dir():
        data_file(SEEDS.get(_key(fmt), "x"))  # skips (fails under CI) with the reason
    seed = _seed(_key(fmt))
    suffix = {"xlsx": ".xlsx", "json": ".json"}.get(seed.kind, ".csv")
    path = tmp_path / f"mutant-{fmt.name}{suffix}"

    @fuzz(XLSX_EXAMPLES if seed.kind == "xlsx" else MUTATION_EXAMPLES)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        path.write_bytes(mutated(seed, data.draw))
        check_read(fmt, path)

    run()


@pytest.mark.parametrize("fmt", ALL)
def test_the_unmutated_seed_is_read(fmt, tmp_path):
    """The seeds themselves are good files: the mutation tests start from something a reader accepts."""
    seed = _seed(_key(fmt))
    suffix = {"xlsx": ".xlsx", "json": ".json"}.get(seed.kind, ".csv")
    path = tmp_path / f"seed-{fmt.name}{suffix}"
    path.write_bytes(_xlsx_bytes(seed.data) if seed.kind == "xlsx"  # type: ignore[arg-type]
                     else json.dumps(seed.data).encode() if seed.kind == "json" else seed.text.encode())
    result = fmt.read(path, ReadOptions())
    registers = getattr(result, "registers", None)
    assert result.frame.height > 0 or (registers is not None and registers.height > 0), fmt.name


# --- what the fuzzing found (fixed in kwartier.ingest; kept as plain regression tests) -----------------


def test_energyzero_interval_that_is_not_a_number_is_rejected(tmp_path):
    path = tmp_path / "ez.json"
    path.write_text(json.dumps({"interval": [], "base": [
        {"start": "2025-01-01T00:00:00Z", "end": "2025-01-01T00:15:00Z", "price": {"value": 0.1}}]}))
    with pytest.raises(InputRejected, match="interval"):  # was: TypeError: unhashable type: 'list'
        read_prices(path, "energyzero-json")


@pytest.mark.parametrize("year", [[], "", 1e308, None, 20250])
def test_markvis_year_that_is_not_a_year_is_rejected(tmp_path, year):
    path = tmp_path / "mv.json"
    path.write_text(json.dumps({"year": year, "count": 1, "prices": [{"timestamp": "2025-01-01T00:00:00",
                                                                       "price": 63.4}]}))
    with pytest.raises(InputRejected, match="year"):  # was: a polars error comparing a date part with a list
        read_prices(path, "markvis-json")


def test_a_p1mon_workbook_under_another_name_is_rejected_cleanly(tmp_path):
    path = tmp_path / "export.dat"
    path.write_bytes(_xlsx_bytes({"e_history_uur": [["TIMESTAMP"], ["2024-01-01 00:00:00"]]}))
    with pytest.raises(InputRejected, match="xlsx"):  # was: openpyxl's InvalidFileException
        read_readings(path, "p1mon-xlsx")
