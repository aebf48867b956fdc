"""DSMR P1 telegrams (one, or a logged stream) -> energy register samples and quarter-hour Wh.

Splitting: a telegram runs from a line starting with ``/`` to the next line ``!`` + 0..4 hex digits
(its CRC). Other text that is no OBIS data line (PuTTY header, filler bytes, EasyMeter trailer) holds
no reading and is ignored. A fragment -- a header without ``!`` line (capture cut off), OBIS data
outside a telegram (capture began mid-telegram) -- is rejected naming its line: remove it.

Specification (from the first telegram, first match wins): ``0-0:96.1.4`` or header ``/FLU`` ->
BELGIUM_FLUVIUS; ``1-0:15.8.0`` (E.ON Hungary) -> EON_HUNGARY; header ``/ESY5Q3D`` -> Q3D; energy in
``*Wh`` -> SAGEMCOM_T210_D_R (plain text); version ``1-3:0.2.8`` >= 50 -> LUXEMBOURG_SMARTY with header
``/Ene5`` or a ``1-0:2.8.0``/``0-0:42.0.0`` line, else V5; version < 50 -> V4; no version but a
``0-0:1.0.0`` timestamp -> ISKRA_IE; else V2_2 (= V3). dsmr-parser parses with that specification's
parsers for the timestamp, equipment id and energy registers only (the rest is not imported; this
keeps a day of 10-s telegrams fast). An energy line the specification does not read is rejected,
never skipped. Fluvius units without ``*`` (``000123.456kWh``) are read as ``*kWh``.

CRC16/ARC over ``/``..``!`` (as ``dsmr_parser.TelegramParser.crc16``, table-driven for speed) is
checked wherever a telegram states one; failing as stored, it is retried with CRLF restored
(loggers drop the CR). Telegrams without CRC (DSMR 2.2/3.0, EasyMeter): one CRC_NOT_CHECKED anomaly.
A failing CRC rejects the file naming every failing telegram: the telegram was corrupted or edited,
and importing around it would hide that. Except when EVERY telegram of a stream of two or more
fails: line noise does not hit every telegram, so the file was re-encoded after capture (like the
depersonalised Hungarian sample: ids replaced, LF endings). It is imported with one
CRC_NOT_CHECKED anomaly, and as no CRC vouches for the values, a stated total that differs from
the sum of its tariffs then rejects the file (else a REGISTER_MISMATCH anomaly); a register going
backwards rejects it in any case. A corrupted digit in a register thus cannot pass unseen.

Time: ``0-0:1.0.0`` is local time with an S/W flag; dsmr-parser converts it (Europe/Amsterdam, W =
the winter-time pass of the repeated autumn hour), and that wall-clock time and pass are placed in
``options.tz`` or the specification's zone (CET/CEST like Amsterdam; Europe/Dublin for ISKRA_IE).
An undated telegram takes ``options.at`` (tz-aware); without it, or for several undated
telegrams, the file is rejected. Identical telegrams at one time are kept once (DUPLICATE);
different ones are rejected.

Registers: ``1-0:1.8.k`` -> ``import_tk`` (k = 1..4), ``1.8.0`` -> ``import_total``, ``2.8.x`` ->
``export_*``; kWh x 1000, Wh as is (Sagemcom T210-D-r). Fractions of a Wh (EasyMeter) are rounded
half-even per reading (ENERGY_ROUNDED; cumulative readings telescope, nothing is lost). Every
telegram must carry the same registers; none at all (a heat meter) is NO_DATA. The equipment id
``0-0:96.1.1`` (hex ASCII) is the connection if it decodes to 18 digits; two ids are rejected.

Quarters: import = the sum of the import tariff registers (the total if none), export likewise (0
without export register). The register at a quarter boundary is the reading stamped there, else the
linear interpolation between the last reading before and the first after when both are within 60 s
(rounded to the Wh: it only moves a few Wh between two adjacent quarters, so status stays
``actual``). Energy of ``[t, t+15min)`` = register(t+15min) - register(t). A touched quarter not
covered from start to end is a PARTIAL_INTERVAL, a run of quarters without telegram a GAP; each
states the Wh read over it that no quarter holds: imported + not placed = last - first reading.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import reduce
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl
from dsmr_parser import obis_references as obis
from dsmr_parser import telegram_specifications as specs
from dsmr_parser.parsers import TelegramParser

from kwartier.ingest import base
from kwartier.ingest.base import Anomaly, Format, InputRejected, ReadingImport, ReadOptions
from kwartier.timegrid import PT15M, QUARTER, iso_utc

FORMAT_NAME = "dsmr-p1"
BOUNDARY_WINDOW = timedelta(seconds=60)  # a reading this close to a quarter boundary may place it
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_AMSTERDAM = ZoneInfo("Europe/Amsterdam")
_DETECT = re.compile(r"(?m)^/[^\r\n]{2,}\r?\n(?:\r?\n)?\d-\d+:\d+\.\d+\.\d+")
_HEADER = re.compile(r"(?m)^/")
_END = re.compile(r"(?m)^!([0-9A-Fa-f]{0,4})[ \t]*\r?$")
_DATA_LINE = re.compile(r"(?m)^\d-\d+:\d+\.\d+\.\d+")
_ENERGY_LINE = re.compile(r"(?m)^\d-\d:([12])\.8\.([0-4])\b")
_UNIT_NO_STAR = re.compile(r"(?m)^(\d-\d:[12]\.8\.[0-4]\(\d+(?:\.\d+)?)(k?Wh\))")
_WH_UNITS = re.compile(r"(?m)^\d-\d:[12]\.8\.[0-4]\(\d+(?:\.\d+)?\*Wh\)")
_VERSION = re.compile(r"(?m)^1-3:0\.2\.8\((\d+)\)")
_TIMESTAMP_LINE = re.compile(r"(?m)^0-0:1\.0\.0\(")


def _register_name(direction: str, index: str) -> str:
    return f"{'import' if direction == '1' else 'export'}_{'total' if index == '0' else 't' + index}"


_REGISTERS: dict[str, str] = {  # dsmr-parser OBIS reference -> register name
    getattr(obis, f"ELECTRICITY_{kind}_TARIFF_{k}"): _register_name(d, str(k))
    for d, kind in (("1", "USED"), ("2", "DELIVERED")) for k in range(1, 5)
} | {obis.ELECTRICITY_IMPORTED_TOTAL: "import_total", obis.ELECTRICITY_EXPORTED_TOTAL: "export_total"}
_IDS = (obis.EQUIPMENT_IDENTIFIER, obis.BELGIUM_EQUIPMENT_IDENTIFIER)
_NEEDED = {*_REGISTERS, obis.P1_MESSAGE_TIMESTAMP, *_IDS}


_CRC_TABLE = [reduce(lambda c, _: (c >> 1) ^ 0xA001 if c & 1 else c >> 1, range(8), i) for i in range(256)]


def crc16_arc(data: bytes) -> int:
    """CRC16/ARC (polynomial 0x8005 reflected, init 0), as DSMR 4+ telegrams state it after ``!``."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True)
class Spec:
    """A dsmr-parser telegram specification (by its name there), its default zone and parser."""

    name: str
    tz: str
    parser: TelegramParser


_PARSERS: dict[str, TelegramParser] = {}


def _spec(name: str, tz: str) -> Spec:
    if name not in _PARSERS:  # the specification reduced to the objects imported here
        objects = [o for o in getattr(specs, name)["objects"] if o["obis_reference"] in _NEEDED]
        _PARSERS[name] = TelegramParser({"checksum_support": False, "objects": objects},
                                        apply_checksum_validation=False)
    return Spec(name, tz, _PARSERS[name])


def choose_spec(telegram: str) -> Spec:
    """The dsmr-parser specification for a telegram, by the rule in the module docstring."""
    header = telegram.split("\n", 1)[0]
    version = _VERSION.search(telegram)
    if header.startswith("/FLU") or "0-0:96.1.4(" in telegram:
        return _spec("BELGIUM_FLUVIUS", "Europe/Brussels")
    if "1-0:15.8.0(" in telegram:
        return _spec("EON_HUNGARY", "Europe/Budapest")
    if header.startswith("/ESY5Q3D"):
        return _spec("Q3D", "Europe/Berlin")
    if _WH_UNITS.search(telegram):
        return _spec("SAGEMCOM_T210_D_R", "Europe/Vienna")
    if version and int(version.group(1)) >= 50:
        if header.startswith("/Ene5") or "1-0:2.8.0(" in telegram or "0-0:42.0.0(" in telegram:
            return _spec("LUXEMBOURG_SMARTY", "Europe/Luxembourg")
        return _spec("V5", "Europe/Amsterdam")
    if version:
        return _spec("V4", "Europe/Amsterdam")
    if _TIMESTAMP_LINE.search(telegram):
        return _spec("ISKRA_IE", "Europe/Dublin")
    return _spec("V2_2", "Europe/Amsterdam")


@dataclass(frozen=True)
class RawTelegram:
    """One telegram as found in the file: its lines and the text the CRC covers."""

    first: int  # physical line of the '/' header
    last: int  # physical line of the '!' CRC line
    text: str  # '/' .. '!' inclusive: what the CRC covers
    crc: str  # the stated CRC in hex, '' when absent


def split_telegrams(text: str, file: str | Path) -> list[RawTelegram]:
    """The complete telegrams in ``text``, with their line numbers; fragments are rejected."""
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line(pos: int) -> int:
        return bisect_left(newlines, pos) + 1

    def no_stray_data(start: int, stop: int) -> None:
        stray = _DATA_LINE.search(text, start, stop)
        if stray:
            raise InputRejected(file, "OBIS data outside a telegram (a capture that began or ended "
                                "mid-telegram); remove the fragment", row=line(stray.start()))

    heads = [m.start() for m in _HEADER.finditer(text)] + [len(text)]
    ends = list(_END.finditer(text))
    out: list[RawTelegram] = []
    cursor, e = 0, 0
    for h, nxt in pairwise(heads):
        while e < len(ends) and ends[e].start() < h:
            e += 1
        if e == len(ends) or ends[e].start() > nxt:
            raise InputRejected(file, "incomplete telegram: a '/' header without its '!' end line "
                                "(the capture was cut off); remove the fragment", row=line(h))
        no_stray_data(cursor, h)
        end = ends[e]
        out.append(RawTelegram(line(h), line(end.start()), text[h:end.start() + 1], end.group(1).upper()))
        cursor, e = end.end(), e + 1
    no_stray_data(cursor, len(text))
    return out


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def _crc_ok(raw: RawTelegram) -> bool:
    stated = int(raw.crc, 16)
    if crc16_arc(raw.text.encode("latin-1")) == stated:
        return True
    restored = _crlf(raw.text)
    return restored != raw.text and crc16_arc(restored.encode("latin-1")) == stated


def _check_crcs(raws: list[RawTelegram], file: str | Path) -> tuple[list[Anomaly], bool]:
    """Apply the CRC rule; returns its anomalies and whether the values stay unverified."""
    anomalies: list[Anomaly] = []
    without = [r for r in raws if not r.crc]
    if without:
        anomalies.append(Anomaly(base.CRC_NOT_CHECKED, None, without[0].first, f"{len(without)} telegram(s) "
                                 "carry no CRC (DSMR 2.2/3.0, EasyMeter); values taken as read"))
    with_crc = [r for r in raws if r.crc]
    failed = [r for r in with_crc if not _crc_ok(r)]
    if not failed:
        return anomalies, False
    if len(failed) == len(with_crc) >= 2:
        lf = ", LF line endings" if "\r\n" not in failed[0].text else ""
        anomalies.append(Anomaly(base.CRC_NOT_CHECKED, None, failed[0].first, f"all {len(failed)} "
                                 "telegrams fail their CRC: the file was re-encoded after capture "
                                 f"(depersonalised{lf}); imported unverified: totals checked against "
                                 "tariffs, registers monotonic"))
        return anomalies, True
    r, computed = failed[0], crc16_arc(failed[0].text.encode("latin-1"))
    raise InputRejected(file, f"{len(failed)} of {len(with_crc)} telegram(s) fail their CRC (first at lines "
                        f"{r.first}-{r.last}: stated {r.crc}, computed {computed:04X}); corrupted in "
                        "transfer or edited", rows=[f.first for f in failed])


@dataclass
class _Reading:
    row: int
    ts: datetime | None
    registers: dict[str, Decimal]  # Wh, exact
    equipment: str | None


def _parse(raw: RawTelegram, spec: Spec, file: str | Path) -> _Reading:
    text = _UNIT_NO_STAR.sub(r"\1*\2", _crlf(raw.text) + "\r\n")

    def row_of(pattern: str) -> int:
        m = re.search(pattern, text, re.MULTILINE)
        return raw.first + (text.count("\n", 0, m.start()) if m else 0)

    try:
        tg = spec.parser.parse(text, throw_ex=True)
    except Exception as exc:
        bad = (m.start() for o in spec.parser.telegram_specification["objects"]
               for m in re.finditer(o["obis_reference"], text, re.M | re.S) if not _parses(o, m.group(0)))
        row = raw.first + text.count("\n", 0, next(bad, 0))
        raise InputRejected(file, f"cannot parse the telegram ({spec.name}): {exc}", row=row) from None
    regs: dict[str, Decimal] = {}
    for ref, name in _REGISTERS.items():
        obj = tg.get(ref)
        if obj is not None:
            if obj.value is None or obj.unit not in ("kWh", "Wh"):
                raise InputRejected(file, f"register {name}: {obj.value!r} {obj.unit!r} is no energy in kWh "
                                    "or Wh", row=row_of(ref))
            regs[name] = obj.value * 1000 if obj.unit == "kWh" else obj.value
    for m in _ENERGY_LINE.finditer(text):
        if _register_name(*m.groups()) not in regs:
            raise InputRejected(file, f"energy register line not read by the {spec.name} specification",
                                row=raw.first + text.count("\n", 0, m.start()))
    ts = None
    if _TIMESTAMP_LINE.search(text):
        obj = tg.get(obis.P1_MESSAGE_TIMESTAMP)
        ts = obj.value if obj is not None else None
        if ts is None:
            raise InputRejected(file, "unreadable timestamp 0-0:1.0.0 (expected YYMMDDhhmmss and S or W)",
                                row=row_of(r"^0-0:1\.0\.0\("))
    ids = [tg[ref].value for ref in _IDS if ref in tg and tg[ref].value]
    return _Reading(raw.first, ts, regs, ids[0] if ids else None)


def _parses(obj: dict[str, Any], line: str) -> bool:
    try:
        obj["value_parser"].parse(line)
    except Exception:
        return False
    return True


def _date(readings: list[_Reading], options: ReadOptions, tz: str, file: str | Path) -> None:
    """Give every reading its UTC time: its own, placed in ``tz``, or ``options.at`` when undated."""
    undated = [r for r in readings if r.ts is None]
    if not undated:
        try:
            zone = ZoneInfo(tz)
        except (ValueError, ZoneInfoNotFoundError):
            raise InputRejected(file, f"unknown time zone {tz!r}") from None
        for r in readings:  # dsmr-parser's Amsterdam wall-clock time, re-read in tz, same S/W pass
            local = r.ts.astimezone(_AMSTERDAM)  # type: ignore[union-attr]
            r.ts = local.replace(tzinfo=zone, fold=local.fold).astimezone(UTC)
        return
    if len(undated) < len(readings):
        raise InputRejected(file, "a telegram without a timestamp among timestamped ones", row=undated[0].row)
    if len(readings) > 1:
        raise InputRejected(file, f"{len(readings)} telegrams without a timestamp (DSMR 2.2/3.0): --at can "
                            "date only a single telegram", rows=[r.row for r in readings])
    at = options.at
    if at is None:
        raise InputRejected(file, "the telegram has no timestamp (DSMR 2.2/3.0); give the reading time "
                            "with --at", row=readings[0].row)
    if at.tzinfo is None or at.utcoffset() is None:
        raise InputRejected(file, f"--at {at.isoformat()} has no time zone; give an offset",
                            row=readings[0].row)
    readings[0].ts = at.astimezone(UTC)


def _connection(readings: list[_Reading], file: str | Path) -> str | None:
    ids = sorted({r.equipment for r in readings if r.equipment})
    if len(ids) > 1:
        other = next(r for r in readings if r.equipment and r.equipment != readings[0].equipment)
        raise InputRejected(file, f"telegrams from more than one meter (equipment ids {ids})", row=other.row)
    try:
        decoded = bytes.fromhex(ids[0]).decode("ascii") if ids else ""
    except ValueError:
        decoded = ids[0]
    return decoded if len(decoded) == 18 and decoded.isdigit() else None


def _register_table(readings: list[_Reading], names: list[str], file: str | Path
                    ) -> tuple[pl.DataFrame, list[Anomaly]]:
    """One row per telegram: ts, row and every register in integer Wh; sorted, unique, monotonic."""
    anomalies: list[Anomaly] = []
    cols: dict[str, list[int]] = {n: [] for n in names}
    rounded = 0
    for r in readings:
        if set(r.registers) != set(names):
            raise InputRejected(file, f"the telegram has registers {sorted(r.registers)}, the first one "
                                f"{names}: every telegram of a stream must carry the same", row=r.row)
        for n in names:
            wh = r.registers[n].to_integral_value(ROUND_HALF_EVEN)
            rounded += wh != r.registers[n]
            cols[n].append(int(wh))
    if rounded:
        anomalies.append(Anomaly(base.ENERGY_ROUNDED, readings[0].ts, readings[0].row,
                                 f"{rounded} register reading(s) had fractions of a Wh; rounded half-even"))
    wide = pl.DataFrame({"ts": [r.ts for r in readings], "row": [r.row for r in readings], **cols},
                        schema_overrides={"ts": pl.Datetime("us", "UTC"), **dict.fromkeys(names, pl.Int64)})
    wide, dups = base.duplicate_rows(wide, "ts", names, file)
    anomalies += [Anomaly(base.DUPLICATE, a.at, a.row, "identical telegrams: " + a.detail) for a in dups]
    wide = wide.sort("ts", maintain_order=True)
    for n in names:
        back = wide.with_columns(prev=pl.col(n).shift(1), prev_row=pl.col("row").shift(1)).filter(
            pl.col(n) < pl.col("prev"))
        if back.height:
            b = back.row(0, named=True)
            raise InputRejected(file, f"register {n} goes backwards from {b['prev']} Wh to {b[n]} Wh",
                                rows=[b["prev_row"], b["row"]])
    return wide, anomalies


def _energy_columns(wide: pl.DataFrame, names: list[str], unverified: bool, rounded: bool,
                    file: str | Path) -> tuple[pl.DataFrame, list[Anomaly]]:
    """Add ``imp``/``exp``: the sum of the tariff registers (or the total); check stated totals."""
    anomalies: list[Anomaly] = []
    exprs: dict[str, pl.Expr] = {}
    for side, col in (("import", "imp"), ("export", "exp")):
        tariffs, total = [n for n in names if re.fullmatch(side + r"_t\d", n)], f"{side}_total"
        if tariffs and total in names:
            bad = wide.filter((pl.sum_horizontal(tariffs) - pl.col(total)).abs() > (len(tariffs) * rounded))
            if bad.height:
                b = bad.row(0, named=True)
                what = f"{total} {b[total]} Wh differs from its tariffs' sum ({sum(map(b.get, tariffs))} Wh)"
                if unverified:
                    raise InputRejected(file, what + "; with no valid CRC it may be corrupted", row=b["row"])
                anomalies.append(Anomaly(base.REGISTER_MISMATCH, b["ts"], b["row"],
                                         f"{bad.height} telegram(s): {what}; the tariff sum is used"))
        exprs[col] = (pl.sum_horizontal(tariffs) if tariffs else pl.col(total) if total in names
                      else pl.lit(0, dtype=pl.Int64))
    return wide.with_columns(**exprs), anomalies


def _boundaries(pts: pl.DataFrame) -> pl.DataFrame:
    """Import/export register ``bi``/``be`` (null: unknown) at each boundary ``b`` of the touched quarters."""
    first, last = pts["ts"][0], pts["ts"][-1]
    end = last - timedelta(microseconds=1) if last > first else first
    b = pl.datetime_range(first - (first - _EPOCH) % QUARTER, end - (end - _EPOCH) % QUARTER + QUARTER,
                          QUARTER, eager=True, time_unit="us", time_zone="UTC")
    frame = pl.DataFrame({"b": b})
    frame = frame.join_asof(pts.select(t0="ts", i0="imp", e0="exp"), left_on="b", right_on="t0",
                            strategy="backward")
    frame = frame.join_asof(pts.select(t1="ts", i1="imp", e1="exp"), left_on="b", right_on="t1",
                            strategy="forward")
    num = (pl.col("b") - pl.col("t0")).dt.total_microseconds()
    den = (pl.col("t1") - pl.col("t0")).dt.total_microseconds()
    window = BOUNDARY_WINDOW
    near = ((pl.col("b") - pl.col("t0")) <= window) & ((pl.col("t1") - pl.col("b")) <= window)

    def value(v0: str, v1: str) -> pl.Expr:  # exact reading, else interpolated rounded half up
        step = ((pl.col(v1) - pl.col(v0)) * 2 * num + den) // pl.when(den > 0).then(2 * den).otherwise(1)
        return pl.when(pl.col("t0") == pl.col("b")).then(pl.col(v0)).when(near).then(pl.col(v0) + step)

    return frame.select("b", bi=value("i0", "i1"), be=value("e0", "e1"))


def _quarters(pts: pl.DataFrame) -> tuple[pl.DataFrame, list[Anomaly]]:
    """Quarter-hour energy from the register samples, and anomalies for the quarters not covered."""
    edges = _boundaries(pts)
    quarters = edges.with_columns(nbi=pl.col("bi").shift(-1), nbe=pl.col("be").shift(-1)).head(-1)
    ok = pl.col("bi").is_not_null() & pl.col("nbi").is_not_null()
    frame = quarters.filter(ok).select(
        interval_start="b", resolution=pl.lit(PT15M), import_wh=pl.col("nbi") - pl.col("bi"),
        export_wh=pl.col("nbe") - pl.col("be"), status=pl.lit("actual"))
    known = {b: (i, e) for b, i, e in edges.iter_rows() if i is not None}
    inside = {r["q"]: r for r in pts.group_by(q=pl.col("ts").dt.truncate("15m")).agg(
        pl.col("ts").first().alias("t0"), pl.col("ts").last().alias("t1"), pl.col("row").first(),
        pl.col("imp").first().alias("i0"), pl.col("imp").last().alias("i1"),
        pl.col("exp").first().alias("e0"), pl.col("exp").last().alias("e1")).iter_rows(named=True)}
    anomalies: list[Anomaly] = []
    gap: list[datetime] = []
    ts_list = pts["ts"].to_list()
    for q in [*quarters.filter(~ok)["b"].to_list(), None]:
        if gap and (q is None or q in inside or q != gap[-1] + QUARTER):
            anomalies.append(_gap_anomaly(gap, pts, ts_list))
            gap = []
        if q is not None and q not in inside:
            gap.append(q)
        elif q is not None:
            cell, nxt = inside[q], inside.get(q + QUARTER)
            start = known.get(q, (cell["i0"], cell["e0"]))
            stop = known.get(q + QUARTER, (nxt["i0"], nxt["e0"]) if nxt else (cell["i1"], cell["e1"]))
            missing = " and ".join(w for w, t in (("start", q), ("end", q + QUARTER)) if t not in known)
            anomalies.append(Anomaly(
                base.PARTIAL_INTERVAL, q, cell["row"], f"readings cover only {cell['t0']:%H:%M:%S}.."
                f"{cell['t1']:%H:%M:%S} UTC of this quarter, none within {BOUNDARY_WINDOW.seconds} s of "
                f"its {missing}: {stop[0] - start[0]} Wh import and {stop[1] - start[1]} Wh export are not "
                "placed in any quarter"))
    return frame, anomalies


def _gap_anomaly(gap: list[datetime], pts: pl.DataFrame, ts_list: list[datetime]) -> Anomaly:
    i = bisect_left(ts_list, gap[0])
    before, after = pts.row(i - 1, named=True), pts.row(i, named=True)
    imp, exp = after["imp"] - before["imp"], after["exp"] - before["exp"]
    return Anomaly(base.GAP, gap[0], after["row"], f"no telegram for {len(gap)} quarter(s) from "
                   f"{iso_utc(gap[0])}: {imp} Wh import and {exp} Wh export read between "
                   f"{iso_utc(before['ts'])} and {iso_utc(after['ts'])} are not placed in any quarter")


def read_p1(path: str | Path, options: ReadOptions) -> ReadingImport:
    """Read one P1 telegram or a logged stream of them (every rule is in the module docstring)."""
    file = Path(path)
    try:
        text = file.read_bytes().removeprefix(b"\xef\xbb\xbf").decode("latin-1")  # P1 is bytes
    except OSError as exc:
        raise InputRejected(file, f"cannot read the file: {exc.strerror or exc}") from None
    raws = split_telegrams(text, file)
    if not raws:
        raise InputRejected(file, "no P1 telegram (a '/' header line .. a '!' end line) in the file")
    spec = choose_spec(raws[0].text)
    anomalies, unverified = _check_crcs(raws, file)
    readings = [_parse(r, spec, file) for r in raws]
    _date(readings, options, options.tz or spec.tz, file)
    connection = _connection(readings, file)
    names = sorted(readings[0].registers)
    if not names:
        anomalies.append(Anomaly(base.NO_DATA, None, readings[0].row, "no electricity register (1-0:1.8.x, "
                                 "1-0:2.8.x) in the telegram(s): nothing to import"))
        return ReadingImport(base.empty(base.READING_SCHEMA), FORMAT_NAME, anomalies,
                             base.empty(base.REGISTER_SCHEMA), connection)
    wide, more = _register_table(readings, names, file)
    anomalies += more
    rounded = any(a.kind == base.ENERGY_ROUNDED for a in more)
    wide, more = _energy_columns(wide, names, unverified, rounded, file)
    anomalies += more
    frame, more = _quarters(wide.select("ts", "row", "imp", "exp"))
    registers = wide.unpivot(index="ts", on=names, variable_name="register", value_name="value_wh")
    return ReadingImport(frame, FORMAT_NAME, anomalies + more, registers.sort("ts", "register"), connection)


def detect(path: Path, head: str) -> bool:
    """A P1 telegram: a '/' identification line, then (after an optional blank line) an OBIS data line."""
    return bool(_DETECT.search(head))


FORMATS = [Format(FORMAT_NAME, "readings", "DSMR P1 telegram or logged stream of telegrams", detect, read_p1)]
