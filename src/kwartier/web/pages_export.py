"""Export: the household's own data as CSV and JSON (readings, prices, costs, invoices)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from kwartier.billing.documents import invoice_from_json
from kwartier.store import schema
from kwartier.web import api
from kwartier.web.auth import User
from kwartier.web.page import (
    live_documents,
    participant_only,
    render,
    to_login,
)

router = APIRouter(include_in_schema=False)


EXPORTS = ("readings.csv", "readings.json", "invoices.json", "costs.json", "prices.csv")


@router.get("/export")
def export_page(request: Request) -> Response:
    user, other = participant_only(request)
    if other is not None or user is None:
        return other or to_login()
    return render(request, "export.j2", user, files=EXPORTS)


def _download(body: str, kind: str, name: str) -> Response:
    media = "text/csv; charset=utf-8" if kind == "csv" else "application/json"
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"',
                                                     "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def _all_readings(request: Request, user: User) -> pl.DataFrame:
    ctx = api.context(request.app.state.engine, user)
    frame = api.readings(request.app.state.engine, sorted(ctx.eans), datetime(2000, 1, 1, tzinfo=UTC),
                         datetime(2100, 1, 1, tzinfo=UTC))
    return frame.with_columns(pl.col("interval_start").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))


@router.get("/export/readings.csv")
def export_readings_csv(request: Request) -> Response:
    user, other = participant_only(request)
    if other is not None or user is None:
        return other or to_login()
    return _download(_all_readings(request, user).write_csv(), "csv", "readings.csv")


@router.get("/export/readings.json")
def export_readings_json(request: Request) -> Response:
    user, other = participant_only(request)
    if other is not None or user is None:
        return other or to_login()
    return _download(_all_readings(request, user).write_json(), "json", "readings.json")


@router.get("/export/invoices.json")
def export_invoices(request: Request) -> Response:
    import json

    user, other = participant_only(request)
    if other is not None or user is None:
        return other or to_login()
    i = schema.invoices
    with request.app.state.engine.connect() as conn:
        docs = [dict(r[0]) for r in conn.execute(select(i.c.content).where(i.c.participant == user.participant)
                                                 .order_by(i.c.number))]
    return _download(json.dumps(docs, ensure_ascii=False, default=str), "json", "invoices.json")


@router.get("/export/costs.json")
def export_costs(request: Request) -> Response:
    """Per billed month: the cost lines of the participant's live invoices (as billed)."""
    import json

    user, other = participant_only(request)
    if other is not None or user is None:
        return other or to_login()
    out = []
    for r in live_documents(request.app.state.engine, user.participant):
        invoice, _ = invoice_from_json(r.content)
        out.append({"period": r.period, "invoice": r.number,
                    "lines": [{"label": ln.label, "amount_cents": ln.amount_cents} for ln in invoice.lines],
                    "total_cents": invoice.total_cents})
    return _download(json.dumps(out, ensure_ascii=False), "json", "costs.json")


@router.get("/export/prices.csv")
def export_prices(request: Request) -> Response:
    """The participant's plan: import price per quarter, the last 30 days up to tomorrow (as known now)."""
    user, other = participant_only(request)
    if other is not None or user is None:
        return other or to_login()
    engine = request.app.state.engine
    ctx = api.context(engine, user)
    day = api.today(ctx.tz)
    plan = api.participant_plan(ctx, user.participant, day)
    lines = ["interval_start,eur_per_kwh,status"]
    for k in range(-30, 2):
        try:
            q = api.quarters(api.day_table(engine, plan, ctx.zone, day + timedelta(days=k)), plan) if plan else []
        except ValueError:
            continue
        lines += [f"{x['start']},{x['eur_per_kwh']},{x['status']}" for x in q]
    return _download("\n".join(lines) + "\n", "csv", "prices.csv")
