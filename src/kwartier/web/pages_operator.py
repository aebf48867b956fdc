"""The community operator's overview and the grid operator's aggregate load (never one household)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from kwartier.money import nano_to_cents
from kwartier.settle.ledger import RECORD_PERIOD
from kwartier.store import schema
from kwartier.web import api, i18n
from kwartier.web.page import (
    MIN_HOUSEHOLDS,
    language,
    local_time,
    not_found,
    page_user,
    render,
    to_login,
)

router = APIRouter(include_in_schema=False)


@router.get("/operator")
def operator(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return to_login()
    if user.role != "operator":
        return not_found(request, user)
    engine = request.app.state.engine
    lang = language(request)
    ctx = api.context(engine, user)
    members = []
    if ctx.defn is not None:
        per = {p.id: 0 for p in ctx.defn.spec.participants}
        for c in ctx.defn.spec.connections:
            per[c.participant] = per.get(c.participant, 0) + 1
        members = [{"id": p.id, "name": p.name, "connections": per[p.id]} for p in ctx.defn.spec.participants]
    j, runs, inv = schema.journal, schema.settle_runs, schema.invoices
    with engine.connect() as conn:
        settled = sorted(set(conn.execute(select(runs.c.period).where(runs.c.period != RECORD_PERIOD)).scalars()))
        period = settled[-1] if settled else None
        owed: dict[str, int] = {}
        if period:
            for account, nano in conn.execute(select(j.c.debit, func.sum(j.c.amount_nano))
                                              .where(j.c.period == period).group_by(j.c.debit)):
                owed[account] = owed.get(account, 0) + int(nano)
            for account, nano in conn.execute(select(j.c.credit, func.sum(j.c.amount_nano))
                                              .where(j.c.period == period).group_by(j.c.credit)):
                owed[account] = owed.get(account, 0) - int(nano)
        docs = conn.execute(select(inv.c.period, inv.c.kind, func.count(), func.sum(inv.c.total_cents))
                            .group_by(inv.c.period, inv.c.kind).order_by(inv.c.period, inv.c.kind)).all()
    totals = {m["id"]: i18n.money(nano_to_cents(owed.get(f"participant:{m['id']}", 0)), lang) for m in members}
    kpis = _period_energy(engine, list(ctx.mains), period, ctx.tz, lang) if period else None
    status = [{"period": p, "settled": p in settled,
               "documents": ", ".join(f"{n} × {i18n.t(k, lang) if k in i18n.TEXT else k}" for pp, k, n, _ in docs
                                      if pp == p)}
              for p in sorted(set(settled) | {d[0] for d in docs})]
    return render(request, "operator.j2", user, members=members, period=period, owed=totals, kpis=kpis,
                  runs=status)


def _period_energy(engine: Any, mains: list[str], period: str, tz: str, lang: str) -> dict[str, str]:
    from kwartier.services.settle import parse_period
    from kwartier.timegrid import local_period_bounds

    first, end = parse_period(period)
    start, stop = local_period_bounds(first, end, tz)
    r = schema.readings
    with engine.connect() as conn:
        imp, exp = conn.execute(select(func.coalesce(func.sum(r.c.import_wh), 0), func.coalesce(
            func.sum(r.c.export_wh), 0)).where(r.c.connection.in_(mains), r.c.is_current.is_(True),
                                              r.c.interval_start >= start, r.c.interval_start < stop)).one()
    return {"taken_kwh": i18n.number(Decimal(int(imp)).scaleb(-3), lang, 0),
            "fed_kwh": i18n.number(Decimal(int(exp)).scaleb(-3), lang, 0)}


@router.get("/grid")
def grid(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return to_login()
    if user.role not in ("grid", "operator"):
        return not_found(request, user)
    lang = language(request)
    data = request.app.state.views.get("grid", (user.username, user.role, user.party, lang),
                                       lambda: _grid(request, user, lang))
    return render(request, "grid.j2", user, **data)


def _grid(request: Request, user: Any, lang: str) -> dict[str, Any]:
    """The area's load over the last 7 days: households that consented to grid use, quarters of at least k."""
    from kwartier.services.privacy import TooFewHouseholds, aggregate_for_grid

    engine = request.app.state.engine
    ctx = api.context(engine, user)
    end = api.now_quarter()
    households = 0
    if ctx.defn is not None:
        households = len({c.participant for c in ctx.defn.spec.connections
                          if user.party is None or c.grid == user.party})
    try:
        load = aggregate_for_grid(engine, end - timedelta(days=7), end, actor=user.username, role=user.role,
                                  party=user.party, k=MIN_HOUSEHOLDS)
    except (TooFewHouseholds, ValueError):  # too few consenting households, or no community yet
        load = pl.DataFrame(schema={"interval_start": pl.Datetime("us", "UTC"), "import_wh": pl.Int64,
                                    "export_wh": pl.Int64})
    load = load.sort("interval_start")
    chart = {"x": [local_time(ts, ctx.tz) for ts in load["interval_start"]],
             "import": [w / 1000 for w in load["import_wh"]], "export": [w / 1000 for w in load["export_wh"]],
             "labels": {k: i18n.t(k, lang) for k in ("import", "export")}}
    return {"chart": chart, "households": households, "min_households": MIN_HOUSEHOLDS,
            "generated": local_time(datetime.now(UTC), ctx.tz)}


