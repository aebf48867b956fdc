"""Learn: what-ifs on the household's own data (move an appliance, add a battery, every plan)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
from fastapi import APIRouter, Request
from fastapi.responses import Response

from kwartier.web import api, i18n
from kwartier.web.auth import User
from kwartier.web.page import (
    language,
    last_settled,
    own_frame,
    participant_only,
    render,
    to_login,
)

router = APIRouter(include_in_schema=False)


def shift_load(frame: pl.DataFrame, tz: str, start: datetime, stop: datetime, wh: int, from_hour: int,
               to_hour: int) -> pl.DataFrame:
    """Move ``wh`` of use from local hour ``from_hour`` to ``to_hour`` on every day in [start, stop).

    Per day, the hour's share (``wh``/4 per quarter, the remainder on the first quarters; all of it on
    an hourly interval) is taken from import, at most what was imported, and added at the same minute
    of ``to_hour``: first absorbing feed-in, the rest as import. Days without the target interval keep
    their use.
    """
    local = pl.col("interval_start").dt.convert_time_zone(tz)
    keyed = frame.with_row_index("_i").with_columns(_day=local.dt.date(), _hour=local.dt.hour(),
                                                     _minute=local.dt.minute(),
                                                     _in=(pl.col("interval_start") >= start)
                                                     & (pl.col("interval_start") < stop))
    share = pl.when(pl.col("resolution") == "PT60M").then(wh).otherwise(
        wh // 4 + (pl.col("_minute") // 15 < wh % 4).cast(pl.Int64))
    source = (keyed.filter(pl.col("_in") & (pl.col("_hour") == from_hour))
              .select("_i", "_day", "_minute", _take=pl.min_horizontal(pl.col("import_wh"), share)))
    target = keyed.filter(pl.col("_in") & (pl.col("_hour") == to_hour)).select("_day", "_minute", _j="_i")
    moves = source.join(target, on=["_day", "_minute"], how="inner")
    taken = moves.select("_i", pl.col("_take").alias("_minus"))
    given = moves.select(pl.col("_j").alias("_i"), pl.col("_take").alias("_plus"))
    out = (keyed.join(taken, on="_i", how="left").join(given, on="_i", how="left")
           .with_columns(pl.col("_minus", "_plus").fill_null(0)))
    absorbed = pl.min_horizontal(pl.col("export_wh"), pl.col("_plus"))
    out = out.with_columns(import_wh=pl.col("import_wh") - pl.col("_minus") + pl.col("_plus") - absorbed,
                           export_wh=pl.col("export_wh") - absorbed)
    return out.sort("_i").select(frame.columns)


def with_battery(frame: pl.DataFrame, start: datetime, stop: datetime, capacity_wh: int,
                 power_w: int) -> pl.DataFrame:
    """The frame with a self-consumption battery (kwartier.synth's rule, empty at the start) in [start, stop)."""
    from kwartier.synth import battery_self_consumption

    inside = (pl.col("interval_start") >= start) & (pl.col("interval_start") < stop)
    part = frame.filter(inside)
    imp, exp = battery_self_consumption(part["import_wh"].to_numpy()[None, :], part["export_wh"].to_numpy()[None, :],
                                        capacity_wh=capacity_wh, power_w=power_w, initial_soc=0.0)
    part = part.with_columns(import_wh=pl.Series(imp[0]), export_wh=pl.Series(exp[0]))
    return pl.concat([frame.filter(~inside), part]).sort("interval_start")


def int_param(request: Request, name: str, default: Decimal, low: int, high: int, scale: int = 1) -> int:
    raw = request.query_params.get(name)
    try:
        value = Decimal(raw.replace(",", ".")) if raw else default
    except ArithmeticError:
        raise ValueError(name) from None
    if not value.is_finite() or not low <= value <= high:
        raise ValueError(name)
    return int(value * scale)


@router.get("/learn")
def learn(request: Request) -> Response:
    user, other = participant_only(request)
    if other is not None or user is None:
        return other or to_login()
    lang = language(request)
    try:
        form = {"kwh": int_param(request, "kwh", Decimal("1.5"), 0, 50, 1000),
                "from_hour": int_param(request, "from_hour", Decimal(19), 0, 23),
                "to_hour": int_param(request, "to_hour", Decimal(23), 0, 23),
                "battery_kwh": int_param(request, "battery_kwh", Decimal(5), 0, 100, 1000),
                "battery_kw": int_param(request, "battery_kw", Decimal("2.5"), 0, 50, 1000)}
    except ValueError as exc:
        return render(request, "error.j2", user, status=422, message=i18n.t("bad_field", lang, field=str(exc)))
    engine = request.app.state.engine
    ctx = api.context(engine, user)
    period = last_settled(engine)
    if period is None:
        return render(request, "learn.j2", user, period=None, form=form)
    views = request.app.state.views
    cents = views.get("learn", (user.participant, period, tuple(form.items())),
                      lambda: _what_ifs(engine, ctx, user, period, form), per_quarter=False, shared=True)

    def shown(value: int | None) -> str:
        return "–" if value is None else i18n.money(value, lang)

    now, shifted, battery = cents["now"], cents["shifted"], cents["battery"]
    hourly = cents["hourly"]
    plans = [{**p, "total": shown(p["total"])} for p in cents["plans"]]
    results = {"now": shown(now), "shifted": shown(shifted), "battery": shown(battery),
               "shift_diff": shown(None if now is None or shifted is None else shifted - now),
               "battery_diff": shown(None if now is None or battery is None else battery - now)}
    return render(request, "learn.j2", user, period=period, form=form, results=results, plans=plans,
                  hourly=hourly, plan_name=cents["plan_name"],
                  form_text={"kwh": i18n.number(Decimal(form["kwh"]).scaleb(-3), lang, 1),
                             "battery_kwh": i18n.number(Decimal(form["battery_kwh"]).scaleb(-3), lang, 1),
                             "battery_kw": i18n.number(Decimal(form["battery_kw"]).scaleb(-3), lang, 1)},
                  raw={k: str(Decimal(v).scaleb(-3)) if k in ("kwh", "battery_kwh", "battery_kw") else str(v)
                       for k, v in form.items()})


def _what_ifs(engine: Any, ctx: api.Context, user: User, period: str, form: dict[str, int]) -> dict[str, Any]:
    """The month's total in cents now, with the appliance moved, with the battery, and under every plan.

    Each is ``tariffs.cost`` on the household's own readings (changed as the what-if says) and the
    stored market prices; a total that cannot be computed (prices missing) is None.
    """
    from kwartier.services.prices import stored_prices
    from kwartier.services.settle import parse_period
    from kwartier.tariffs.cost import cost
    from kwartier.tariffs.plan import builtin_ids, load_plan
    from kwartier.timegrid import local_period_bounds

    first, end = parse_period(period)
    plan = api.participant_plan(ctx, user.participant, first)
    start, stop = local_period_bounds(first, end, ctx.tz)
    frame = own_frame(engine, list(ctx.mains), start - timedelta(days=400), stop)
    market = stored_prices(engine, ctx.zone, start - timedelta(days=40), stop)

    def total(p: Any, readings: pl.DataFrame) -> int | None:
        try:
            return cost(p, readings, market, first, end, allow_gaps=True).total_cents
        except ValueError:
            return None

    hourly = bool((frame.filter(pl.col("interval_start") >= start)["resolution"] == "PT60M").any())
    return {  # JSON: shared by the server's worker processes through the store (web/cache.py)
        "plan_name": plan.plan.name if plan else None, "hourly": hourly,
        "now": total(plan, frame) if plan else None,
        "shifted": total(plan, shift_load(frame, ctx.tz, start, stop, form["kwh"], form["from_hour"],
                                          form["to_hour"])) if plan else None,
        "battery": (total(plan, with_battery(frame, start, stop, form["battery_kwh"], form["battery_kw"]))
                    if plan and not hourly else None),
        "plans": [{"id": pid, "name": (lp := load_plan(pid)).plan.name, "total": total(lp, frame),
                   "own": plan is not None and lp.plan.name == plan.plan.name} for pid in builtin_ids()],
    }
