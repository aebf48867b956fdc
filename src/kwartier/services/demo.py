"""The demo: generate a small community's week, import it through the real importers, summarise it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, and_, select

from kwartier import synth
from kwartier.ids import make_ean18
from kwartier.money import format_eur, nano_to_cents
from kwartier.services.imports import ImportSummary, import_prices, import_readings
from kwartier.store import schema
from kwartier.timegrid import DEFAULT_TZ, interval_starts, iso_utc, local_period_bounds

#: The demo households: (label, annual consumption kWh, PV kWp).
HOUSEHOLDS = (
    ("family, 5 kWp PV", 3500, 5.0),
    ("couple, 8 kWp PV", 2800, 8.0),
    ("apartment", 1600, 0.0),
    ("heat pump, 6 kWp PV", 6500, 6.0),
    ("single person", 1400, 0.0),
)
SEED = 20270101


@dataclass
class DemoResult:
    period: tuple[date, date]
    files: list[Path]
    imports: list[ImportSummary]
    reimport_new: int
    reimport_revised: int
    settlement: dict[str, object] = field(default_factory=dict)
    ledger: dict[str, object] = field(default_factory=dict)
    spot_window: tuple[str, str] = ("", "")
    invoices: list[dict[str, object]] = field(default_factory=list)
    connections: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        prices = self.imports[0].to_json()
        return {
            "from": self.period[0].isoformat(),
            "to": self.period[1].isoformat(),
            "zone": prices["zone"],
            "price_intervals": prices["intervals"],
            "min_eur_per_kwh": prices["min_eur_per_kwh"],
            "max_eur_per_kwh": prices["max_eur_per_kwh"],
            "connections": self.connections,
            "reimport": {"new": self.reimport_new, "revised": self.reimport_revised},
            "spot_window": {"from": self.spot_window[0], "to": self.spot_window[1]},
            "settlement": self.settlement,
            "ledger": self.ledger,
            "invoices": self.invoices,
        }

    def print(self, console: Console) -> None:
        data = self.to_json()
        console.print(
            f"[bold]kwartier demo[/]: a community of {len(self.connections)} households, local days "
            f"{data['from']} .. {data['to']} (end exclusive), zone {data['zone']}"
        )
        console.print(
            f"day-ahead prices: {data['price_intervals']} quarter-hours, "
            f"{data['min_eur_per_kwh']} .. {data['max_eur_per_kwh']} EUR/kWh"
        )
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("EAN", no_wrap=True)
        table.add_column("household", no_wrap=True)
        for head in ("import\nkWh", "export\nkWh", "spot cost\nEUR", "avg price\nEUR/kWh"):
            table.add_column(head, justify="right", no_wrap=True)
        for c in self.connections:
            table.add_row(str(c["ean"]), str(c["household"]), str(c["import_kwh"]), str(c["export_kwh"]),
                          str(c["spot_cost_eur"]), str(c["avg_spot_eur_per_kwh"]))
        console.print(table)
        console.print("the last 7 days; spot cost = import energy x day-ahead price per quarter, exact, "
                      "rounded once to the cent.")
        st = self.settlement
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False,
                      title=f"settled {st['period']}: what each household owes, incl. VAT", title_justify="left")
        table.add_column("participant", no_wrap=True)
        table.add_column("plan", no_wrap=True)
        table.add_column("EUR", justify="right")
        for i, (pid, owed) in enumerate(st["by_participant"].items()):  # type: ignore[union-attr]
            table.add_row(pid, PLANS[i] if i < len(PLANS) else "", str(owed))
        console.print(table)
        payees = ", ".join(f"{k} {v}" for k, v in st["by_payee"].items())  # type: ignore[union-attr]
        console.print(f"paid to: {payees} EUR; {st['new_postings']} ledger postings, debits {st['debit_total']} = "
                      f"credits {st['credit_total']} EUR")
        led = self.ledger
        console.print(f"ledger verify: {'intact' if led['ok'] else 'BROKEN'}, {led['entries']} entries "
                      "(kwartier ledger verify)")
        if self.invoices:
            first, last = self.invoices[0], self.invoices[-1]
            console.print(f"invoices: {first['number']} .. {last['number']} (PDF with Factur-X XML, and UBL) in "
                          f"{Path(str(first['pdf'])).parent}/; see kwartier invoice list")
        console.print(
            f"imported again: {self.reimport_new} new, {self.reimport_revised} revised (imports are idempotent)."
        )
        console.print(f"files in {self.files[0].parent}; database ready for `kwartier import ...`.")


def generate(folder: Path, first: date, days: int, tz: str = DEFAULT_TZ) -> list[Path]:
    """Write a price file and one meter file per household (generic CSV) for ``days`` local days."""
    folder.mkdir(parents=True, exist_ok=True)
    start, end = local_period_bounds(first, first + timedelta(days=days), tz)
    starts = interval_starts(start, end)
    epoch_s = starts.dt.epoch("s").to_numpy()
    local = starts.dt.convert_time_zone(tz)
    local_hour = (local.dt.hour() + local.dt.minute() / 60).to_numpy().astype(np.float64)
    weekend = (local.dt.weekday() >= 6).to_numpy().astype(np.float64)
    day_index = ((epoch_s - epoch_s[0]) // 86400).astype(np.int64)
    rng = np.random.default_rng(SEED + first.toordinal())
    clearness = synth.daily_cloudiness(int(day_index.max()) + 1, rng)[day_index]
    solar = synth.solar_elevation_sin(epoch_s, 51.59, 4.78)
    price = synth.day_ahead_eur_per_mwh(local_hour, solar, clearness, rng)
    stamps = starts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    files = [folder / "prices_NL.csv"]
    pl.DataFrame({"timestamp": stamps, "price_eur_per_mwh": [f"{p:.2f}" for p in price]}).write_csv(files[0])
    for i, (_label, annual_kwh, kwp) in enumerate(HOUSEHOLDS):
        load = synth.household_load_wh(local_hour, annual_kwh, rng, weekend)
        pv = synth.pv_energy_wh(epoch_s, kwp, clearness) if kwp else np.zeros_like(load)
        imp, exp = np.clip(load - pv, 0, None), np.clip(pv - load, 0, None)
        path = folder / f"readings_{demo_ean(i)}.csv"
        pl.DataFrame(
            {"timestamp": stamps, "import_kwh": [f"{v / 1000:.3f}" for v in imp],
             "export_kwh": [f"{v / 1000:.3f}" for v in exp]}
        ).write_csv(path)
        files.append(path)
    return files


def demo_ean(i: int) -> str:
    """The demo's EAN for household ``i``: a Dutch-looking prefix and a valid check digit."""
    return make_ean18(f"87100000000000{i + 1:03d}")


#: The demo households' contracts: a mix of the built-in plans.
PLANS = ("nl-dynamic-2026", "nl-dynamic-2026", "nl-fixed-2026", "nl-daynight-2026", "nl-dynamic-2026")


def community_toml(first: date) -> str:
    """The demo community: one supplier (also the aggregator), a grid operator, the tax office, a cooperative."""
    parts = [
        '[community]\nid = "kwartier-demo"\nname = "Demo community (Breda)"\ntimezone = "Europe/Amsterdam"\n'
        'zone = "NL"\n',
        '[[parties]]\nid = "zuidstroom"\nroles = ["supplier", "aggregator"]\nname = "ZuidStroom (demo)"\n'
        'vat_id = "NL001234567B01"\n',
        '[[parties]]\nid = "netbeheer"\nroles = ["grid"]\nname = "Grid operator (demo)"\nvat_id = "NL009988776B01"\n',
        '[[parties]]\nid = "belastingdienst"\nroles = ["tax"]\nname = "Belastingdienst"\n',
        '[[parties]]\nid = "coop"\nroles = ["community"]\nname = "Energy cooperative (demo)"\n',
    ]
    for i, (label, _kwh, _kwp) in enumerate(HOUSEHOLDS):
        parts.append(f'[[participants]]\nid = "household-{i + 1}"\nname = "Household {i + 1} ({label})"\n'
                     f'email = "household{i + 1}@example.org"\nlocale = "{("nl", "en", "fr", "nl", "en")[i]}"\n')
        parts.append(f'[[connections]]\nean = "{demo_ean(i)}"\nparticipant = "household-{i + 1}"\n'
                     f'grid_area = "Breda"\ncapacity_kw = "17.25"\ngrid = "netbeheer"\n')
        parts.append(f'[[contracts]]\nid = "contract-{i + 1}"\ntarget = "{demo_ean(i)}"\nsupplier = "zuidstroom"\n'
                     f'plan = "{PLANS[i]}"\nvalid_from = {first.isoformat()}\n')
    return "\n".join(parts)


def run_demo(engine: Engine, folder: Path, *, today: date | None = None, console: Console | None = None
             ) -> DemoResult:
    """Generate last month and this month up to today, import it, settle last month, verify the ledger."""
    from kwartier.services.community import load_community
    from kwartier.services.settle import settle
    from kwartier.settle.ledger import verify

    today = today or datetime.now(UTC).date()
    this_month = today.replace(day=1)
    first = (this_month - timedelta(days=1)).replace(day=1)
    days = (today - first).days + 1
    say = console.print if console else (lambda *_a, **_k: None)
    say(f"generating {days} days ({first} .. {today}) for {len(HOUSEHOLDS)} households in {folder}/ ...")
    files = generate(folder, first, days)
    community = folder / "community.toml"
    community.write_text(community_toml(first), encoding="utf-8")
    load_community(engine, community)
    summaries = [import_prices(engine, files[0], zone="NL")]
    for i, path in enumerate(files[1:]):
        summaries.append(import_readings(engine, path, demo_ean(i)))
        say(f"imported {path.name}")
    again = [import_prices(engine, files[0], zone="NL")] + [
        import_readings(engine, p, demo_ean(i)) for i, p in enumerate(files[1:])
    ]
    period = f"{first:%Y-%m}"
    say(f"settling {period} ...")
    settled = settle(engine, period)
    with engine.connect() as conn:
        verdict = verify(conn)
    say(f"billing {period} ...")
    from kwartier.services.billing import bill

    billed = bill(engine, period, folder / "invoices", today=today)
    result = DemoResult(
        period=(first, today + timedelta(days=1)),
        files=files,
        imports=summaries,
        reimport_new=sum(s.counts.new for s in again),
        reimport_revised=sum(s.counts.revised for s in again),
        settlement=settled.to_json(),
        ledger=verdict.to_json(),
        invoices=billed.to_json()["invoices"],  # type: ignore[arg-type]
    )
    start, end = local_period_bounds(today - timedelta(days=6), today + timedelta(days=1))
    result.spot_window = (iso_utc(start) or "", iso_utc(end) or "")
    for i, (label, _kwh, _kwp) in enumerate(HOUSEHOLDS):
        result.connections.append({"ean": demo_ean(i), "household": label, "plan": PLANS[i],
                                   **spot_summary(engine, demo_ean(i), "NL", start, end)})
    return result


def spot_summary(engine: Engine, ean: str, zone: str, start: datetime, end: datetime) -> dict[str, str]:
    """Import, export and the exact day-ahead cost of a connection's quarter-hours in ``[start, end)``."""
    r, p = schema.readings, schema.prices
    stmt = (
        select(r.c.import_wh, r.c.export_wh, p.c.price_ueur_per_kwh)
        .select_from(r.join(p, and_(p.c.interval_start == r.c.interval_start, p.c.resolution == r.c.resolution,
                                    p.c.zone == zone, p.c.is_current.is_(True))))
        .where(r.c.connection == ean, r.c.is_current.is_(True), r.c.interval_start >= start,
               r.c.interval_start < end)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    imp = sum(int(a) for a, _b, _c in rows)
    exp = sum(int(b) for _a, b, _c in rows)
    cost_nano = sum(int(a) * int(c) for a, _b, c in rows)
    # nEUR / Wh = uEUR / kWh, so the import-weighted average price is cost / energy.
    avg = (Decimal(cost_nano) / imp).scaleb(-6) if imp else Decimal(0)
    return {
        "import_kwh": str(Decimal(imp).scaleb(-3)),
        "export_kwh": str(Decimal(exp).scaleb(-3)),
        "spot_cost_eur": format_eur(nano_to_cents(cost_nano)),
        "avg_spot_eur_per_kwh": str(avg.quantize(Decimal("0.0001"))),
    }
