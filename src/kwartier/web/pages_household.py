"""A household's own pages: insight (prices, use, costs), performance and alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from kwartier.billing.documents import invoice_from_json
from kwartier.services.billing import REFERENCE_PLAN
from kwartier.store import schema
from kwartier.web import api, i18n
from kwartier.web.auth import User
from kwartier.web.page import (
    language,
    live_documents,
    local_time,
    own_frame,
    page_user,
    participant_only,
    render,
    to_login,
)

router = APIRouter(include_in_schema=False)


@router.get("/")
def insight(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return to_login()
    if user.role != "participant":
        return RedirectResponse("/operator" if user.role == "operator" else "/grid", status_code=303)
    lang = language(request)
    data = request.app.state.views.get("insight", (user.participant, lang), lambda: _insight(request, user, lang))
    return render(request, "insight.j2", user, **data)


def _insight(request: Request, user: User, lang: str) -> dict[str, Any]:
    """The insight page's data: today's and tomorrow's prices, the last week's use, the last bill's costs."""
    engine = request.app.state.engine
    ctx = api.context(engine, user)
    today = api.today(ctx.tz)
    plan = api.participant_plan(ctx, user.participant, today)
    price_points: list[dict[str, Any]] = []
    if plan is not None:
        for day in (today, today + timedelta(days=1)):
            try:
                found = api.day_quarters(request, plan, ctx.zone, day)
            except ValueError:  # beyond the forecast horizon or nothing to forecast from
                continue
            price_points += [{"at": q["start"], "x": local_time(datetime.fromisoformat(q["start"]), ctx.tz),
                              "y": float(q["eur_per_kwh"]), "status": q["status"]} for q in found]
    end = api.now_quarter()
    use = api.readings(engine, list(ctx.mains), end - timedelta(days=7), end)
    use = (use.group_by("interval_start").agg(pl.col("import_wh").sum(), pl.col("export_wh").sum())
           .sort("interval_start"))
    usage = {"x": [local_time(ts, ctx.tz) for ts in use["interval_start"]],
             "import": [w / 1000 for w in use["import_wh"]], "export": [w / 1000 for w in use["export_wh"]]}
    charts = {"prices": price_points, "usage": usage, "plan": plan.id if plan else None, "lang": lang,
              "labels": {k: i18n.t(k, lang) for k in ("fixed", "forecast", "import", "export")}}
    return {"charts": charts, "costs": _last_costs(engine, user, lang, plan),
            "plan_name": plan.plan.name if plan else None}


def _last_costs(engine: Any, user: User, lang: str, plan: Any) -> dict[str, Any] | None:
    """The last billed month's lines (costs per component), compared with a non-dynamic plan.

    Taken from the stored invoices: their lines are the settled cost per component, and their
    informative part holds the same month priced under the reference plan (tariffs.cost at bill time).
    """
    i = schema.invoices
    with engine.connect() as conn:
        rows = conn.execute(select(i.c.number, i.c.kind, i.c.corrects, i.c.period, i.c.content)
                            .where(i.c.participant == user.participant).order_by(i.c.period, i.c.number)).all()
    if not rows:
        return None
    period = rows[-1].period
    credited = {r.corrects for r in rows if r.kind == "credit_note"}
    live = [r for r in rows if r.period == period and r.kind == "invoice" and r.number not in credited]
    lines: dict[str, int] = {}
    total = 0
    reference: int | None = 0
    for r in live:
        invoice, info = invoice_from_json(r.content)
        for ln in invoice.lines:  # the plan's label in the page's language (the invoice has the member's)
            label = _component_label(plan, ln.component, lang) or ln.label
            lines[label] = lines.get(label, 0) + ln.amount_cents
        total += invoice.total_cents
        ref = info.reference_total_cents if info is not None else None
        reference = None if reference is None or ref is None else reference + ref
    vat = total - sum(lines.values())
    on_reference = plan is not None and plan.id == REFERENCE_PLAN
    return {"period": period, "lines": [(label, i18n.money(c, lang)) for label, c in lines.items()],
            "vat": i18n.money(vat, lang), "total": i18n.money(total, lang), "reference_plan": REFERENCE_PLAN,
            "on_reference": on_reference,
            "reference": i18n.money(reference, lang) if reference is not None and not on_reference else None}


def _component_label(plan: Any, component: str, lang: str) -> str | None:
    if plan is None:
        return None
    try:
        return str(plan.plan.component(component).label_in(lang))
    except (KeyError, ValueError):
        return None


@router.get("/performance")
def performance(request: Request) -> Response:
    user, other = participant_only(request)
    if other is not None or user is None:
        return other or to_login()
    lang = language(request)
    data = request.app.state.views.get("performance", (user.participant, lang),
                                       lambda: _performance(request, user, lang), per_quarter=False)
    return render(request, "performance.j2", user, **data)


def _performance(request: Request, user: User, lang: str) -> dict[str, Any]:
    """Per billed month: the average price paid, the community's, the percentile and the trend."""
    months: dict[str, dict[str, Any]] = {}
    for r in live_documents(request.app.state.engine, user.participant):
        _, info = invoice_from_json(r.content)
        if info is not None and r.period not in months:
            months[r.period] = {"period": r.period, "mine": info.average_eur_per_kwh,
                                "community": info.community_average_eur_per_kwh, "percentile": info.percentile}
    rows = []
    previous: Decimal | None = None
    for m in months.values():
        mine = m["mine"]
        trend = None if mine is None or previous is None else mine - previous
        rows.append({"period": m["period"], "percentile": m["percentile"],
                     "mine": i18n.number(mine, lang, 4) if mine is not None else "–",
                     "community": i18n.number(m["community"], lang, 4) if m["community"] is not None else "–",
                     "trend": ("" if trend is None else ("+" if trend > 0 else "") + i18n.number(trend, lang, 4))})
        previous = mine if mine is not None else previous
    chart = {"x": list(months), "mine": [float(m["mine"]) if m["mine"] is not None else None for m in months.values()],
             "community": [float(m["community"]) if m["community"] is not None else None for m in months.values()],
             "labels": {k: i18n.t(k, lang) for k in ("you", "community_avg")}}
    return {"rows": rows, "chart": chart}


@router.get("/alerts")
def alerts_page(request: Request) -> Response:
    user, other = participant_only(request)
    if other is not None or user is None:
        return other or to_login()
    lang = language(request)
    shown = request.app.state.views.get("alerts", (user.participant, lang), lambda: _alerts(request, user, lang))
    return render(request, "alerts.j2", user, alerts=shown)


def _alerts(request: Request, user: User, lang: str) -> list[dict[str, str]]:
    """The alerts that hold now: the cheapest window tomorrow, negative prices ahead, unusual use yesterday."""
    from kwartier.services.prices import stored_prices
    from kwartier.timegrid import local_period_bounds
    from kwartier.web import alerts

    engine = request.app.state.engine
    ctx = api.context(engine, user)
    now, day = datetime.now(UTC), api.today(ctx.tz)
    tomorrow = day + timedelta(days=1)
    plan = api.participant_plan(ctx, user.participant, day)
    found: list[alerts.Alert | None] = []
    if plan is not None:
        try:
            q = api.day_quarters(request, plan, ctx.zone, tomorrow)
        except ValueError:
            q = []
        # Advice counts once tomorrow's day-ahead prices are published: a component fixed later (JEM's
        # congestion surcharge, 4 h ahead) may still change, but the market's shape is known.
        published = _market_published(request, ctx.zone, ctx.tz, tomorrow, now)
        table = pl.DataFrame({"interval_start": [datetime.fromisoformat(x["start"]) for x in q],
                              "price_ueur_per_kwh": [int(Decimal(x["eur_per_kwh"]).scaleb(6)) for x in q],
                              "fixed": [published or x["status"] == "fixed" for x in q]},
                             schema={"interval_start": pl.Datetime("us", "UTC"), "price_ueur_per_kwh": pl.Int64,
                                     "fixed": pl.Boolean})
        found.append(alerts.cheapest_window(table, ctx.tz, tomorrow))
        found.append(alerts.congestion_ahead(_congestion(request, plan, ctx.zone, (day, tomorrow)), now))
    found.append(alerts.negative_prices(stored_prices(engine, ctx.zone, now - timedelta(minutes=15),
                                                      now + timedelta(days=2)), now))
    start = api.now_quarter() - timedelta(days=7 * alerts.WEEKS_BACK + 2)
    daily = alerts.daily_import_wh(own_frame(engine, list(ctx.mains), start, api.now_quarter()), ctx.tz)
    yesterday = day - timedelta(days=1)
    found.append(alerts.unusual_consumption(daily, yesterday, local_period_bounds(yesterday, day, ctx.tz)[0]))
    shown = [{"kind": i18n.t(a.kind + "_title", lang), "at": local_time(a.at_utc, ctx.tz),
              "text": i18n.t(a.kind, lang, **{k: local_time(v, ctx.tz)[-5:] if isinstance(v, datetime) else
                                              (i18n.number(v, lang, 4 if k == "eur_per_kwh" else 1)
                                               if isinstance(v, Decimal) else v) for k, v in a.values.items()})}
             for a in found if a is not None]
    return shown


def _market_published(request: Request, zone: str, tz: str, day: Any, now: datetime) -> bool:
    """Whether every quarter of the local ``day`` has a day-ahead price known at ``now``."""
    from kwartier.services.prices import stored_prices
    from kwartier.timegrid import local_period_bounds

    start, stop = local_period_bounds(day, day + timedelta(days=1), tz)
    market = stored_prices(request.app.state.engine, zone, start, stop)
    if market.is_empty():
        return False
    known = market.filter(pl.col("known_at") <= now)
    hours = {"PT15M": 1, "PT60M": 4}
    covered = sum(hours.get(r, 0) for r in known["resolution"].to_list())
    return covered >= int((stop - start).total_seconds() // 900)


def _congestion(request: Request, plan: Any, zone: str, days: tuple[Any, ...]) -> pl.DataFrame:
    """The plan's congestion component (EUR/kWh, as known now) per quarter of ``days``; empty without one.

    Its values are the plan's input series ``congestion``; a quarter without a published value has
    the plan's default (no surcharge).
    """
    rows: list[tuple[datetime, Decimal]] = []
    for day in days:
        try:
            found = api.day_quarters(request, plan, zone, day)
        except ValueError:
            continue
        rows += [(datetime.fromisoformat(q["start"]), Decimal(c["eur_per_kwh"])) for q in found
                 for c in q["components"] if c["component"] == "congestion"]
    return pl.DataFrame(rows, schema={"interval_start": pl.Datetime("us", "UTC"), "value": pl.Decimal(18, 6)},
                        orient="row")
