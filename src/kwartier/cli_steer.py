"""The ``kwartier plan`` command: plan a household's devices against prices, with baselines and reasons.

``register(app)`` adds the command to the main Typer app. Prices come from a price file (the market
price alone, for both directions) or from a tariff plan (its full import and export prices per
quarter, taxes included, over the market prices of ``--prices FILE`` or else of the store).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kwartier.steer.devices import DeviceFileError, load_devices
from kwartier.steer.optimize import Prices, SteerError, SteerResult, horizon_starts, make_problem, optimise
from kwartier.steer.prices import market_quarters, plan_prices

out = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _aware(text: str, option: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"{option} {text!r} is not an ISO 8601 time such as 2026-10-01T00:00:00+02:00") from None
    if when.tzinfo is None:
        raise _fail(f"{option} {text!r} has no offset; add one, e.g. +01:00 or Z")
    return when


def load_prices(prices_file: Path | None, plan_ref: str | None, zone: str, db: str | None,
                starts: tuple[datetime, ...]) -> Prices:
    """The prices for the horizon from a price file, a plan, or both (see the module docstring)."""
    from kwartier.ingest import read_prices

    market: pl.DataFrame | None = None
    if prices_file is not None:
        frame = read_prices(prices_file).frame
        if plan_ref is None:
            return Prices.market(market_quarters(frame, starts, str(prices_file)))
        from kwartier.services.imports import day_ahead_known_at

        market = frame.with_columns(known_at=day_ahead_known_at(frame["interval_start"]))
    from kwartier.tariffs.plan import load_plan

    loaded = load_plan(plan_ref or "")
    if market is None:
        from kwartier.services.prices import stored_prices
        from kwartier.store import open_store

        market = stored_prices(open_store(db), zone, starts[0] - timedelta(days=8), starts[-1] + timedelta(hours=1))
        if market.is_empty():
            raise SteerError(f"no stored {zone} market prices for the horizon; import them first "
                             "(kwartier import prices) or give --prices FILE")
    else:
        market_quarters(market, starts, str(prices_file))  # every quarter must be covered
    return plan_prices(loaded, market, starts)


def schedule_rows(result: SteerResult, lang: str) -> list[dict[str, object]]:
    """Every device and quarter: start, device, power (kW), SOC (kWh, batteries only) and the reason."""
    return [row.to_json(lang) for row in result.schedule()]


def plan_json(result: SteerResult, baselines: dict[str, Decimal], lang: str) -> dict[str, object]:
    """The JSON object of ``kwartier plan --json``."""
    return {
        "cost": str(result.cost), "wear_cost": str(result.wear_cost),
        "baselines": {k: str(v) for k, v in baselines.items()},
        "schedule": schedule_rows(result, lang),
        "violations": [v.to_json() for v in result.violations],
        "solve_seconds": round(result.solve_seconds, 4),
    }


def compute_baselines(result: SteerResult) -> dict[str, Decimal]:
    """Costs of no steering, greedy cheapest slots, and perfect foresight (the plan on these true prices)."""
    from kwartier.steer.baselines import greedy, no_steering
    from kwartier.steer.optimize import account

    p = result.problem
    return {"none": account(p, no_steering(p)).cost, "greedy": account(p, greedy(p)).cost, "perfect": result.cost}


def _print_human(result: SteerResult, baselines: dict[str, Decimal], lang: str) -> None:
    rows = schedule_rows(result, lang)
    table = Table("quarter (UTC)", "device", "kW", "SOC kWh", "why")
    for r in rows:
        if r["power_kw"] != "0.000":
            table.add_row(str(r["start"]), str(r["device"]), str(r["power_kw"]), str(r["soc_kwh"] or ""),
                          str(r["reason"]))
    out.print(table)
    out.print(f"energy cost {result.cost} EUR, battery wear {result.wear_cost} EUR "
              f"(no steering {baselines['none']}, greedy {baselines['greedy']}, perfect {baselines['perfect']}); "
              f"solved in {result.solve_seconds:.2f} s ({result.status})", highlight=False)
    for v in result.violations:
        out.print(f"[yellow]not met:[/] {escape(v.describe())}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``kwartier plan`` to ``app``."""

    @app.command("plan")
    def plan_cmd(
        devices: Annotated[Path, typer.Option("--devices", help="Device TOML file.")],
        from_: Annotated[str, typer.Option("--from", help="Horizon start, ISO 8601 with offset.")],
        to: Annotated[str, typer.Option("--to", help="Horizon end (exclusive), at most 48 h after --from.")],
        prices: Annotated[Path | None, typer.Option("--prices", help="Price file: the market price alone, "
                                                    "for import and export.")] = None,
        plan: Annotated[str | None, typer.Option("--plan", help="Tariff plan id or TOML: its full import and "
                                                 "export prices (market from --prices or the store).")] = None,
        zone: Annotated[str, typer.Option("--zone", help="Bidding zone of stored market prices.")] = "NL",
        db: Annotated[str | None, typer.Option("--db", help="Database URL for stored prices.")] = None,
        lang: Annotated[str, typer.Option("--lang", help="Language of the reasons: en, nl or fr.")] = "en",
        time_limit: Annotated[float, typer.Option("--time-limit", help="Solver time limit in seconds.")] = 10.0,
        json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    ) -> None:
        """Plan devices against quarter-hour prices: schedule, cost, reasons and three baselines."""
        from kwartier.ingest import InputRejected
        from kwartier.steer.explain import LOCALES
        from kwartier.store import StoreError
        from kwartier.tariffs.compose import MissingData
        from kwartier.tariffs.plan import PlanError

        if prices is None and plan is None:
            raise _fail("give --prices FILE or --plan ID")
        if lang not in LOCALES:
            raise _fail(f"--lang {lang!r}: choose nl, en or fr")
        start, end = _aware(from_, "--from"), _aware(to, "--to")
        try:
            starts = horizon_starts(start, end)
            devs = load_devices(devices)
            if db is None and plan is not None and prices is None:
                from kwartier.cli import State

                db = State.db
            price = load_prices(prices, plan, zone, db, starts)
            problem = make_problem(devs, starts, price)
            result = optimise(problem, time_limit_s=time_limit)
        except (SteerError, DeviceFileError, PlanError, InputRejected, MissingData) as exc:
            raise _fail(str(exc)) from None
        except StoreError as exc:
            raise _fail(str(exc), 1) from None
        baselines = compute_baselines(result)
        if json_out:
            sys.stdout.write(json.dumps(plan_json(result, baselines, lang), ensure_ascii=False) + "\n")
            return
        _print_human(result, baselines, lang)


__all__ = ["load_prices", "market_quarters", "plan_json", "plan_prices", "register"]
