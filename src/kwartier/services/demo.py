"""The demo: a Breda-like community of 90 households, generated (batteries steered), imported, settled and billed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from kwartier import synth
from kwartier.money import format_eur, nano_to_cents
from kwartier.services.demo_model import (
    BATTERY_KW,
    BATTERY_KWH,
    LAT_DEG,
    LON_DEG,
    N_HOUSEHOLDS,
    PRICE_DAYS_AHEAD,
    SEED,
    TRANSFORMER_KVA,
    DemoError,
    Household,
    default_period,
    full_months,
    households,
)
from kwartier.services.demo_steering import (
    BATTERY_EFFICIENCY,
    BATTERY_SOC_START,
    Steering,
    is_steered,
    read_market,
    steer_batteries,
)
from kwartier.services.imports import ImportSummary, import_prices, import_readings
from kwartier.timegrid import DEFAULT_TZ, interval_starts, iso_utc, local_period_bounds

SAMPLE_PDFS = 1  # billing stores all invoices; PDFs are rendered for this many (the rest on demand)
Progress = Callable[[str], None]


def community_toml(homes: list[Household], valid_from: date) -> str:
    """The community: a supplier that is also the aggregator, a grid operator, the tax office, a cooperative."""
    parts = [
        '[community]\nid = "kwartier-demo"\nname = "Demo community (Breda)"\ntimezone = "Europe/Amsterdam"\n'
        'zone = "NL"\n',
        '[[parties]]\nid = "zuidstroom"\nroles = ["supplier", "aggregator"]\nname = "ZuidStroom (demo)"\n'
        'vat_id = "NL001234567B01"\n',
        '[[parties]]\nid = "netbeheer"\nroles = ["grid"]\nname = "Grid operator (demo)"\nvat_id = "NL009988776B01"\n',
        '[[parties]]\nid = "belastingdienst"\nroles = ["tax"]\nname = "Belastingdienst"\n',
        '[[parties]]\nid = "coop"\nroles = ["community"]\nname = "Energy cooperative (demo)"\n'
        'vat_id = "NL005566778B01"\n',
    ]
    for h in homes:
        parts.append(f'[[participants]]\nid = "{h.participant}"\nname = "{h.name} ({h.label})"\n'
                     f'email = "{h.email}"\nlocale = "{h.locale}"\n')
        parts.append(f'[[connections]]\nean = "{h.ean}"\nparticipant = "{h.participant}"\ngrid_area = "Breda"\n'
                     f'capacity_kw = "17.25"\ngrid = "netbeheer"\n')
        parts.append(f'[[contracts]]\nid = "contract-{h.participant[10:]}"\ntarget = "{h.ean}"\n'
                     f'supplier = "zuidstroom"\nplan = "{h.plan}"\nvalid_from = {valid_from.isoformat()}\n')
    return "\n".join(parts)


@dataclass
class Generated:
    """What :func:`generate` wrote, and the community's peak flows at the transformer."""

    files: dict[str, Path]  # readings file per EAN
    prices: Path | None
    peak_import_kw: float
    peak_export_kw: float
    steering: Steering = field(default_factory=lambda: Steering())


def _kwh_text(wh: pl.Expr) -> pl.Expr:
    """Integer Wh as a kWh text with exactly three decimals (exact, no float formatting)."""
    return (wh // 1000).cast(pl.String) + "." + (wh % 1000).cast(pl.String).str.zfill(3)


def generate(folder: Path, first: date, end: date, homes: list[Household], *, synthetic_prices: bool = True,
             prices_end: date | None = None, tz: str = DEFAULT_TZ, market: pl.DataFrame | None = None,
             progress: Progress | None = None) -> Generated:
    """Write the period's weather, one meter file per household (generic CSV, after PV and battery), the
    synthetic day-ahead prices (unless prices come from a file; up to ``prices_end`` when it is later
    than ``end``) and ``households.json``.

    Batteries of households on a dynamic plan are steered by the optimiser against the plan's prices
    over ``market`` (the price file's frame; the synthetic prices when they are generated here), the
    others run the self-consumption rule (:func:`synth.battery_self_consumption`). Without a market
    (no synthetic prices and none given) every battery runs the rule.
    """
    if first.toordinal() < date(2000, 1, 1).toordinal():
        raise DemoError(f"--from {first}: the demo's synthetic weather starts on 2000-01-01")
    folder.mkdir(parents=True, exist_ok=True)
    starts = interval_starts(*local_period_bounds(first, end, tz))
    epoch_s = starts.dt.epoch("s").to_numpy()
    local = starts.dt.convert_time_zone(tz)
    hour = (local.dt.hour() + local.dt.minute() / 60).to_numpy().astype(np.float64)
    day_index = (local.dt.date().cast(pl.Int32) - (first - date(1970, 1, 1)).days).to_numpy()
    day_of_year = local.dt.ordinal_day().to_numpy().astype(np.float64)
    weekday = local.dt.weekday().to_numpy()
    day_type = np.select([weekday == 6, weekday == 7], [synth.SATURDAY, synth.SUNDAY], synth.WORKDAY)
    n_days = (end - first).days
    prices_end = max(end, prices_end or end)
    daily_c, clear = synth.daily_weather(first.toordinal(), (prices_end - first).days, SEED)
    daily_c, clear, ahead = daily_c[:n_days], clear[:n_days], clear
    temperature_c = synth.quarter_temperature_c(daily_c[day_index], hour)
    days_type = day_type[np.searchsorted(day_index, np.arange(n_days))]
    stamps = starts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    pl.DataFrame({"day": [first + timedelta(days=d) for d in range(n_days)],
                  "temperature_c": np.round(daily_c, 2), "clearness": np.round(clear, 3)}).write_csv(
        folder / "weather.csv")
    prices = None
    if synthetic_prices:
        rng = np.random.default_rng([SEED, first.toordinal(), prices_end.toordinal()])
        p_starts = interval_starts(*local_period_bounds(first, prices_end, tz))
        p_local = p_starts.dt.convert_time_zone(tz)
        p_hour = (p_local.dt.hour() + p_local.dt.minute() / 60).to_numpy().astype(np.float64)
        p_day = (p_local.dt.date().cast(pl.Int32) - (first - date(1970, 1, 1)).days).to_numpy()
        solar = synth.solar_elevation_sin(p_starts.dt.epoch("s").to_numpy(), LAT_DEG, LON_DEG)
        price = synth.day_ahead_eur_per_mwh(p_hour, solar, ahead[p_day], rng)
        prices = folder / "prices_NL.csv"
        pl.DataFrame({"timestamp": p_starts.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "price_eur_per_mwh": [f"{p:.2f}" for p in price]}).write_csv(prices)
    loads, pvs = np.zeros((len(homes), starts.len()), np.int64), np.zeros((len(homes), starts.len()), np.int64)
    for k, h in enumerate(homes):
        rng = np.random.default_rng([SEED, k, first.toordinal(), end.toordinal()])
        load = synth.household_demand_wh(hour, day_of_year, day_type, day_index, h.annual_kwh, rng)
        if h.heat_loss_w_per_k:
            presence = synth.heating_presence(hour, day_type, h.away_on_workdays)
            load += synth.heat_pump_electricity_wh(temperature_c, presence, h.heat_loss_w_per_k)
        if h.ev_commute_km:
            arrival_h = np.clip(rng.normal(18.0, 0.6, n_days), 16.5, 21.0)
            need = synth.ev_daily_need_wh(days_type, h.ev_commute_km, rng)
            load += synth.ev_charging_wh(hour, day_index, arrival_h, need)
        loads[k] = load
        if h.pv_kwp:
            pvs[k] = synth.pv_energy_wh(epoch_s, h.pv_kwp * rng.uniform(0.85, 1.0), clear[day_index],
                                        LAT_DEG, LON_DEG)
    imp, exp = np.clip(loads - pvs, 0, None), np.clip(pvs - loads, 0, None)
    with_battery = np.array([h.battery for h in homes])
    if with_battery.any():
        imp[with_battery], exp[with_battery] = synth.battery_self_consumption(
            loads[with_battery], pvs[with_battery], BATTERY_KWH * 1000, BATTERY_KW * 1000, BATTERY_EFFICIENCY,
            BATTERY_SOC_START)
    if synthetic_prices and prices is not None:
        market = read_market(prices)
    steering = Steering()
    if market is not None and any(is_steered(h) for h in homes):
        (progress or (lambda _msg: None))(f"steering {sum(is_steered(h) for h in homes)} batteries")
        flows, steering = steer_batteries(homes, loads, pvs, starts, (imp.copy(), exp.copy()), market, first, end, tz)
        for k, (i, e) in flows.items():
            imp[k], exp[k] = i, e
    files = {}
    for k, h in enumerate(homes):
        path = folder / f"readings_{h.ean}.csv"
        pl.DataFrame({"timestamp": stamps, "i": imp[k], "e": exp[k]}).select(
            "timestamp", _kwh_text(pl.col("i")).alias("import_kwh"), _kwh_text(pl.col("e")).alias("export_kwh")
        ).write_csv(path)
        files[h.ean] = path
    meta = {"seed": SEED, "site": {"lat_deg": LAT_DEG, "lon_deg": LON_DEG},
            "grid": {"operator": "netbeheer", "transformer_kva": TRANSFORMER_KVA},
            "battery_model": {
                "steered": "households on a dynamic plan: the optimiser (kwartier.steer) re-plans every day at 13:00 "
                           "local over the known prices (the rest of today and tomorrow), with the plan's marginal "
                           "import and export prices and the household's own load and PV as known (the demo's "
                           "models are the truth), the SOC carried over; the first day of each plan is applied",
                "self-consumption": "households on the fixed plan: charge from PV surplus, discharge to cover "
                                    "load, no grid charging",
                "efficiency_one_way": BATTERY_EFFICIENCY, "soc_start": BATTERY_SOC_START,
                "meter": "meter data is after the battery"},
            "households": [{**asdict(h), "battery_kwh": BATTERY_KWH if h.battery else 0.0,
                            "battery_kw": BATTERY_KW if h.battery else 0.0,
                            "battery_control": _control(h, steering)} for h in homes]}
    (folder / "households.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return Generated(files, prices, float((imp.sum(axis=0) - exp.sum(axis=0)).max()) * 4 / 1000,
                     float((exp.sum(axis=0) - imp.sum(axis=0)).max()) * 4 / 1000, steering)


def _control(h: Household, steering: Steering) -> str | None:
    """How a household's battery is run: "steered", "self-consumption", or None without a battery."""
    if not h.battery:
        return None
    return "steered" if h.participant in steering.cents else "self-consumption"


@dataclass
class DemoResult:
    period: tuple[date, date]
    folder: Path
    homes: list[Household]
    imports: list[ImportSummary]
    reimport_new: int
    reimport_revised: int
    months: list[str]
    peak_kw: tuple[float, float] = (0.0, 0.0)
    settlements: list[dict[str, object]] = field(default_factory=list)
    ledger: dict[str, object] = field(default_factory=dict)
    spot_window: tuple[str, str] = ("", "")
    invoices: list[dict[str, object]] = field(default_factory=list)
    connections: list[dict[str, object]] = field(default_factory=list)
    users: list[dict[str, object]] = field(default_factory=list)
    url: str = ""
    seconds: float = 0.0
    steering: Steering = field(default_factory=lambda: Steering())

    @property
    def partial_note(self) -> str | None:
        if self.period[0].day == 1 and self.period[1].day == 1:
            return None
        return "the period's partial months are imported but not settled or billed (only whole local months are)"

    def to_json(self) -> dict[str, object]:
        """The summary: ``invoices`` is how many were issued (the issue's contract), ``invoice_list`` what they are."""
        prices = self.imports[0].to_json()
        return {
            "from": self.period[0].isoformat(), "to": self.period[1].isoformat(),
            "participants": len(self.homes), "invoices": len(self.invoices),
            "zone": prices["zone"], "price_intervals": prices["intervals"], "price_source": self.imports[0].format,
            "min_eur_per_kwh": prices["min_eur_per_kwh"], "max_eur_per_kwh": prices["max_eur_per_kwh"],
            "batteries": sum(h.battery for h in self.homes), "folder": str(self.folder),
            "steering": self.steering.to_json(),
            "transformer": {"capacity_kva": TRANSFORMER_KVA, "peak_import_kw": round(self.peak_kw[0], 1),
                            "peak_export_kw": round(self.peak_kw[1], 1)},
            "connections": self.connections,
            "imported": {"new": sum(s.counts.new for s in self.imports),
                         "unchanged": sum(s.counts.unchanged for s in self.imports),
                         "revised": sum(s.counts.revised for s in self.imports)},
            "reimport": {"new": self.reimport_new, "revised": self.reimport_revised},
            "spot_window": {"from": self.spot_window[0], "to": self.spot_window[1]},
            "months": self.months, "not_billed": self.partial_note,
            "settlement": self.settlements[-1] if self.settlements else None,
            "settlements": self.settlements,
            "ledger": self.ledger,
            "invoice_list": self.invoices,
            "url": self.url,
            "users": self.users,
            "seconds": round(self.seconds, 1),
        }

    def print(self, console: Console) -> None:
        data = self.to_json()
        console.print(
            f"[bold]kwartier demo[/]: {data['participants']} households ({data['batteries']} with a "
            f"{BATTERY_KWH:g} kWh / {BATTERY_KW:g} kW battery), local days {data['from']} .. {data['to']} "
            f"(end exclusive), zone {data['zone']}, in {data['seconds']} s")
        console.print(f"day-ahead prices ({data['price_source']}): {data['price_intervals']} intervals, "
                      f"{data['min_eur_per_kwh']} .. {data['max_eur_per_kwh']} EUR/kWh")
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for head in ("participant", "assets", "plan"):
            table.add_column(head, no_wrap=True)
        for head in ("import\nkWh", "export\nkWh", "spot cost\nEUR", "avg price\nEUR/kWh", "owes\nEUR"):
            table.add_column(head, justify="right", no_wrap=True)
        owed = (self.settlements[-1]["by_participant"] if self.settlements else {})
        for h, c in zip(self.homes, self.connections, strict=True):
            table.add_row(h.participant, h.label, h.plan, str(c["import_kwh"]), str(c["export_kwh"]),
                          str(c["spot_cost_eur"]), str(c["avg_spot_eur_per_kwh"]),
                          str(owed.get(h.participant, "")))  # type: ignore[union-attr]
        console.print(table)
        console.print("import, export and spot cost: the period's last 7 days (spot cost = import energy x "
                      "day-ahead price per quarter, exact, rounded once to the cent); owes: the last settled "
                      "month, incl. VAT.")
        t = data["transformer"]
        console.print(f"transformer {t['capacity_kva']} kVA: community peak import {t['peak_import_kw']} kW, "  # type: ignore[index]
                      f"peak export {t['peak_export_kw']} kW")  # type: ignore[index]
        console.print(self.steering.describe(sum(h.battery for h in self.homes)))
        for st in self.settlements:
            payees = ", ".join(f"{k} {v}" for k, v in st["by_payee"].items())  # type: ignore[union-attr]
            console.print(f"settled {st['period']}: paid to {payees} EUR; {st['new_postings']} new ledger "
                          f"postings, debits {st['debit_total']} = credits {st['credit_total']} EUR")
        if self.partial_note:
            console.print(f"[yellow]note:[/] {self.partial_note}")
        led = self.ledger
        console.print(f"ledger verify: {'intact' if led['ok'] else 'BROKEN'}, {led['entries']} entries "
                      "(kwartier ledger verify)")
        if self.invoices:
            first, last = self.invoices[0], self.invoices[-1]
            sample = f"; a sample PDF in {Path(str(first['pdf'])).parent}/" if first.get("pdf") else ""
            console.print(f"invoices: {len(self.invoices)} stored, {first['number']} .. {last['number']}{sample}; "
                          "see kwartier invoice list / show / pdf")
        imported = data["imported"]
        console.print(f"imported {imported['new']} new, {imported['unchanged']} unchanged, "  # type: ignore[index]
                      f"{imported['revised']} revised values; again: {self.reimport_new} new, "  # type: ignore[index]
                      f"{self.reimport_revised} revised (imports are idempotent).")
        console.print(f"files in {self.folder}/ (households.json: the households and their models).")
        console.print(f"[bold]portal[/]: {self.url or '(not served: run kwartier serve)'}  -- demo logins "
                      "(for this demo only):")
        for u in self.users:
            who = f" ({u['participant']})" if u["participant"] else ""
            console.print(f"  {u['role']:<12} {u['username']:<14} password {u['password']}{who}")


def run_demo(engine: Engine, folder: Path, *, first: date | None = None, end: date | None = None,
             prices_file: Path | None = None, today: date | None = None, progress: Progress | None = None,
             ) -> DemoResult:
    """Generate the period (default: the last full month), import it, settle and bill every whole month."""
    from kwartier.services.billing import bill, find, write_files
    from kwartier.services.community import load_community
    from kwartier.services.settle import settle
    from kwartier.settle.ledger import verify

    clock = time.monotonic()
    today = today or date.today()
    default_first, default_end = default_period(today)
    first, end = first or default_first, end or default_end
    if end <= first:
        raise DemoError(f"--to {end} must be after --from {first} (the end is exclusive)")
    step = progress or (lambda _msg: None)
    homes = households()
    months = full_months(first, end)
    step(f"generating {len(homes)} households, {first} .. {end}")
    live = end >= today  # the data reaches today: publish today's and tomorrow's prices too
    market = read_market(prices_file) if prices_file is not None else None
    gen = generate(folder, first, end, homes, synthetic_prices=prices_file is None,
                   prices_end=end + timedelta(days=PRICE_DAYS_AHEAD) if live else None, market=market,
                   progress=step)
    community = folder / "community.toml"
    community.write_text(community_toml(homes, first.replace(day=1)), encoding="utf-8")
    step("loading the community")
    load_community(engine, community)
    price_path = prices_file or gen.prices
    assert price_path is not None
    rounds: list[list[ImportSummary]] = []
    for label in ("importing", "importing again"):  # the second round shows that imports are idempotent
        step(f"{label} {price_path.name}")
        summaries = [import_prices(engine, price_path, zone="NL")]
        for h in homes:
            step(f"{label} {gen.files[h.ean].name}")
            summaries.append(import_readings(engine, gen.files[h.ean], h.ean))
        rounds.append(summaries)
    result = DemoResult((first, end), folder, homes, rounds[0], sum(s.counts.new for s in rounds[1]),
                        sum(s.counts.revised for s in rounds[1]), months, (gen.peak_import_kw, gen.peak_export_kw),
                        steering=gen.steering)
    for period in months:
        step(f"settling {period}")
        result.settlements.append(settle(engine, period).to_json())
        step(f"billing {period}")
        result.invoices += bill(engine, period, None, today=today).to_json()["invoices"]  # type: ignore[operator]
    for inv in result.invoices[:SAMPLE_PDFS]:
        step(f"rendering {inv['number']}.pdf")
        inv.update(write_files(*find(engine, str(inv["number"])), folder / "invoices"))
    with engine.connect() as conn:
        result.ledger = verify(conn).to_json()
    step("creating the demo logins")
    result.users = demo_users(engine, homes)
    step("founding the rulebook; consents; a proposal to vote on")
    demo_governance(engine, homes, first, today)
    start, stop = local_period_bounds(max(first, end - timedelta(days=7)), end)
    result.spot_window = (iso_utc(start) or "", iso_utc(stop) or "")
    spots = spot_summaries(engine, [h.ean for h in homes], "NL", start, stop)
    result.connections = [{"ean": h.ean, "participant": h.participant, "household": h.label, "plan": h.plan,
                           "pv_kwp": h.pv_kwp, "battery": h.battery, "heat_pump": bool(h.heat_loss_w_per_k),
                           "ev": bool(h.ev_commute_km), **spots[h.ean]} for h in homes]
    result.seconds = time.monotonic() - clock
    return result


def demo_users(engine: Engine, homes: list[Household]) -> list[dict[str, object]]:
    """The demo's portal logins: an operator, the grid operator, and three households (nl, en, fr).

    The passwords are fixed and printed: they exist for this demo database only. A user that is
    already there (a second demo run) is kept as it is.
    """
    from kwartier.web.auth import create_user, get_user

    picks: list[Household] = []
    for locale in ("nl", "en", "fr"):  # one per language, on a dynamic plan (what the demo is about) if any
        speakers = [h for h in homes if h.locale == locale]
        picks += ([h for h in speakers if h.plan != "nl-fixed-2026"] or speakers)[:1]
    wanted: list[dict[str, object]] = [
        {"username": "operator", "password": "demo-operator", "role": "operator", "participant": None},
        {"username": "grid", "password": "demo-grid", "role": "grid", "participant": None},
    ] + [{"username": h.participant, "password": f"demo-{h.participant}", "role": "participant",
          "participant": h.participant} for h in picks]
    for u in wanted:
        if get_user(engine, str(u["username"])) is None:
            create_user(engine, str(u["username"]), str(u["password"]), str(u["role"]),
                        u["participant"] and str(u["participant"]), party="netbeheer" if u["role"] == "grid" else None)
    return wanted


def demo_governance(engine: Engine, homes: list[Household], first: date, today: date) -> None:
    """The community's rulebook founded at the first day, every demo household's consent to share its load
    with the grid operator (in aggregates of at least 5), and one open proposal for the portal's vote.

    Run again, it adds nothing: a founded rulebook, a consent given and a proposal made stay as they are.
    """
    from kwartier.services import governance, privacy

    if governance.version_in_force(engine, datetime.now(ZoneInfo(DEFAULT_TZ))).version == 0:
        start, _ = local_period_bounds(first, first + timedelta(days=1))
        governance.found(engine, effective_from=start)
    given = privacy.consented_map(engine, [h.participant for h in homes])
    for h in homes:
        if not given[h.participant]["grid"]:
            privacy.set_consent(engine, h.participant, "grid", True, by="demo")
    if not governance.show(engine)["proposals"]:
        month = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
        if (month - today).days < 14:  # voting (7 days) closes, and notice is given, before it takes effect
            month = (month + timedelta(days=32)).replace(day=1)
        effective, _ = local_period_bounds(month, month + timedelta(days=1))
        governance.propose(engine, homes[0].participant, "One community price of 0.15 EUR/kWh for shared energy",
                           {"price": {"rule": "uniform", "uniform_eur_per_kwh": "0.15"}}, effective)


def demo_steps(first: date | None, end: date | None, today: date | None = None) -> int:
    """How many progress steps :func:`run_demo` reports for this period."""
    a, b = default_period(today or date.today())
    return 7 + 2 * N_HOUSEHOLDS + 2 * len(full_months(first or a, end or b)) + SAMPLE_PDFS


def spot_summaries(engine: Engine, eans: list[str], zone: str, start: datetime, end: datetime
                   ) -> dict[str, dict[str, str]]:
    """Per connection: import, export and the exact day-ahead cost of its quarter-hours in ``[start, end)``."""
    from kwartier.services.prices import stored_prices
    from kwartier.services.settle import _readings
    from kwartier.tariffs.compose import price_series_nano

    with engine.connect() as conn:
        rows = _readings(conn, eans, start, end)
    quarter = price_series_nano(stored_prices(engine, zone, start - timedelta(hours=1), end))
    priced = rows.join(quarter.rename({"quarter": "interval_start"}), on="interval_start", how="left")
    # Wh x nEUR/kWh = pEUR; summed exactly, then once to nano-euros and cents.
    totals = priced.group_by("connection").agg(
        pl.col("import_wh").sum().alias("i"), pl.col("export_wh").sum().alias("e"),
        (pl.col("import_wh") * pl.col("value").fill_null(0)).sum().alias("pico"))
    out = {}
    for ean, imp, exp, pico in totals.iter_rows():
        nano = int(pico) // 1000  # prices are whole micro-euros per kWh: this division is exact
        cost_cents = nano_to_cents(nano)
        avg = (Decimal(nano) / int(imp)).scaleb(-6) if imp else Decimal(0)
        out[str(ean)] = {"import_kwh": str(Decimal(int(imp)).scaleb(-3)),
                         "export_kwh": str(Decimal(int(exp)).scaleb(-3)),
                         "spot_cost_eur": format_eur(cost_cents),
                         "avg_spot_eur_per_kwh": str(avg.quantize(Decimal("0.0001")))}
    zero = {"import_kwh": "0.000", "export_kwh": "0.000", "spot_cost_eur": "0.00", "avg_spot_eur_per_kwh": "0.0000"}
    return {ean: out.get(ean, zero) for ean in eans}
