"""The JSON API under /api/v1: token, me, intervals, prices, invoices; each participant sees only its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import polars as pl
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel
from sqlalchemy import Engine, select

from kwartier.billing.documents import invoice_from_json, invoice_to_json
from kwartier.community.definition import Definition, DefinitionError
from kwartier.money import format_eur
from kwartier.services.community import current_definition
from kwartier.store import schema
from kwartier.tariffs.plan import LoadedPlan, PlanError, builtin_ids, load_plan
from kwartier.timegrid import DEFAULT_TZ, floor_to_grid, local_date_of
from kwartier.web.auth import User, authenticate, get_user

PREFIX = "/api/v1"
MAX_DAYS = 93
SESSION_COOKIE = "kw_session"

FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)  # days the API answers about


class Problem(BaseModel):
    """An error answer: what is wrong (FastAPI's own 422 gives a list of field errors instead)."""

    detail: str | list[dict[str, Any]]


#: Every API route may answer these; documented so that clients (and schemathesis) know them.
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "not authenticated (no, a wrong or an expired token)"},
    404: {"model": Problem, "description": "not found, or not yours"},
    422: {"model": Problem, "description": "a parameter is malformed or out of range"},
}
oauth2 = OAuth2PasswordBearer(tokenUrl=f"{PREFIX}/auth/token", auto_error=False)
router = APIRouter(prefix=PREFIX, tags=["api"], responses=ERRORS)


def in_range(day: date, param: str) -> date:
    """``day`` when the API answers about it, else 422 (a year 1 or 9999 would overflow the time grid)."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise HTTPException(422, f"{param}: {day.isoformat()} is outside {FIRST_DAY} .. {LAST_DAY}")
    return day


def not_found(what: str) -> HTTPException:
    """404 for ``what``; the answer does not repeat what was asked (nor tells whether it exists)."""
    return HTTPException(status_code=404, detail=f"{what.split()[0]} not found")


def current_user(request: Request, token: Annotated[str | None, Depends(oauth2)]) -> User:
    """The user of a bearer token, else of the page session cookie; 401 otherwise."""
    app = request.app
    name = app.state.signer.token_user(token) if token else app.state.signer.session_user(
        request.cookies.get(SESSION_COOKIE))
    user = get_user(app.state.engine, name) if name else None
    if user is None:
        raise HTTPException(status_code=401, detail="not authenticated", headers={"WWW-Authenticate": "Bearer"})
    return user


CurrentUser = Annotated[User, Depends(current_user)]


class Token(BaseModel):
    access_token: str
    token_type: str


class Me(BaseModel):
    username: str
    role: str
    participant: str | None
    name: str | None
    connections: list[str]


class Interval(BaseModel):
    start: str
    resolution: str
    import_kwh: float | None
    export_kwh: float | None
    status: str


class Component(BaseModel):
    component: str
    eur_per_kwh: str
    status: str


class QuarterPrice(BaseModel):
    start: str
    eur_per_kwh: str
    status: str
    components: list[Component]


class DayPrices(BaseModel):
    plan: str
    day: date
    timezone: str
    quarters: list[QuarterPrice]


class Explanation(BaseModel):
    component: str
    label: str
    payee: str
    eur_per_kwh: str
    status: str
    known_at: str | None
    formula: str
    sentence: str


class InvoiceSummary(BaseModel):
    number: str
    kind: str
    participant: str
    period: str
    issue_date: date
    total: str
    corrects: str | None


@router.post("/auth/token", response_model=Token, responses={
    429: {"model": Problem, "description": "too many failed logins; see Retry-After",
          "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}}})
def token(request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()]) -> Any:
    """OAuth2 password flow: a bearer token for one hour."""
    app = request.app
    client = request.client.host if request.client else "-"
    wait = app.state.limiter.retry_after(username, client)
    if wait is not None:
        raise HTTPException(status_code=429, detail="too many failed logins; try again later",
                            headers={"Retry-After": str(wait)})
    user = authenticate(app.state.engine, username, password)
    if user is None:
        app.state.limiter.failed(username, client)
        raise HTTPException(status_code=401, detail="wrong username or password",
                            headers={"WWW-Authenticate": "Bearer"})
    app.state.limiter.succeeded(username, client)
    return {"access_token": app.state.signer.token(user.username), "token_type": "bearer"}


@router.get("/me", response_model=Me)
def me(request: Request, user: CurrentUser) -> Any:
    ctx = context(request.app.state.engine, user)
    name = ctx.defn.participant(user.participant).name if ctx.defn and user.participant else None
    return {"username": user.username, "role": user.role, "participant": user.participant, "name": name,
            "connections": sorted(ctx.eans)}


def parse_when(text: str, param: str, tz: str) -> datetime:
    """An ISO date (local midnight in ``tz``) or an aware ISO datetime; 422 otherwise."""
    from zoneinfo import ZoneInfo

    try:
        if len(text) == 10:
            d = in_range(date.fromisoformat(text), param)
            return datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz)).astimezone(UTC)
        ts = datetime.fromisoformat(text)
        in_range(ts.date(), param)
    except ValueError:
        raise HTTPException(422, f"{param}={text!r} is not an ISO date (2026-03-01) or datetime "
                                 "(2026-03-01T00:00:00Z)") from None
    if ts.tzinfo is None:
        raise HTTPException(422, f"{param}={text!r} has no time zone; add Z or an offset such as +01:00")
    return ts.astimezone(UTC)


@router.get("/connections/{ean}/intervals", response_model=list[Interval])
def intervals(request: Request, user: CurrentUser, ean: str,
              from_: Annotated[str | None, Query(alias="from")] = None, to: str | None = None) -> Any:
    """Current readings of one of your connections in [from, to) (default: the last 7 days, at most 93 days)."""
    ctx = context(request.app.state.engine, user)
    if ean not in ctx.eans:
        raise not_found(f"connection {ean}")
    end = parse_when(to, "to", ctx.tz) if to else now_quarter()
    start = parse_when(from_, "from", ctx.tz) if from_ else end - timedelta(days=7)
    if start >= end:
        raise HTTPException(422, "from must be before to")
    if end - start > timedelta(days=MAX_DAYS):
        raise HTTPException(422, f"at most {MAX_DAYS} days per request")
    frame = readings(request.app.state.engine, [ean], start, end)
    return [{"start": r["interval_start"].strftime("%Y-%m-%dT%H:%M:%SZ"), "resolution": r["resolution"],
             "import_kwh": None if r["import_wh"] is None else r["import_wh"] / 1000,
             "export_kwh": None if r["export_wh"] is None else r["export_wh"] / 1000, "status": r["status"]}
            for r in frame.iter_rows(named=True)]


@router.get("/prices", response_model=DayPrices)
def prices(request: Request, user: CurrentUser, plan: str | None = None, day: date | None = None) -> Any:
    """A plan's energy prices per quarter of a local day, as known now (fixed or forecast)."""
    ctx = context(request.app.state.engine, user)
    loaded = find_plan(ctx, plan, user.participant)
    if loaded is None:
        raise not_found(f"plan {plan}")
    when = in_range(day or today(loaded.plan.timezone), "day")
    from kwartier.tariffs.compose import MissingData
    from kwartier.tariffs.lifecycle import BeyondHorizon

    try:
        found = day_quarters(request, loaded, ctx.zone, when)
    except BeyondHorizon as exc:  # asked further ahead than a forecast reaches
        raise HTTPException(422, str(exc)) from None
    except MissingData:  # nothing published and nothing to forecast from: a day without prices
        found = []

    def body() -> bytes:  # validated against the response model once, then served as it is
        return DayPrices(plan=loaded.id, day=when, timezone=loaded.plan.timezone,
                         quarters=found).model_dump_json().encode()

    return Response(request.app.state.views.get("prices_json", (loaded.id, loaded.where, ctx.zone, when), body),
                    media_type="application/json")


@router.get("/prices/explain", response_model=list[Explanation])
def explain_quarter(request: Request, user: CurrentUser, at: datetime, plan: str | None = None,
                    lang: str = "en") -> Any:
    """Why a quarter costs what it costs: each energy component, its source and whether it is final."""
    from kwartier.services.prices import stored_prices
    from kwartier.tariffs.explain import LOCALES, explain

    ctx = context(request.app.state.engine, user)
    loaded = find_plan(ctx, plan, user.participant)
    if loaded is None:
        raise not_found(f"plan {plan}")
    if at.tzinfo is None or lang not in LOCALES:
        raise HTTPException(422, "at needs a time zone (Z or +01:00); lang is nl, en or fr")
    in_range(at.date(), "at")
    market = stored_prices(request.app.state.engine, ctx.zone, at - timedelta(days=9), at + timedelta(days=2))
    try:
        return [e.to_json() for e in explain(loaded, market, at, datetime.now(UTC), lang)]
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/invoices", response_model=list[InvoiceSummary])
def invoices(request: Request, user: CurrentUser) -> Any:
    """Your invoices and credit notes (an operator: everyone's; a grid user: none)."""
    return [{**r, "total": format_eur(r.pop("total_cents"))} for r in invoice_rows(request.app.state.engine,
                                                                                         user)]


def own_invoice(request: Request, user: User, number: str) -> dict[str, Any]:
    """The stored document when the user may see it; 404 otherwise (also for someone else's)."""
    if not may_see_invoices(user):
        raise not_found(f"invoice {number}")
    i = schema.invoices
    stmt = select(i.c.content).where(i.c.number == number)
    if user.role == "participant":
        stmt = stmt.where(i.c.participant == user.participant)
    with request.app.state.engine.connect() as conn:
        row = conn.execute(stmt).first()
    if row is None:
        raise not_found(f"invoice {number}")
    return dict(row[0])


def invoice_pdf_bytes(content: dict[str, Any]) -> bytes:
    from kwartier.billing.einvoice import facturx_pdf
    from kwartier.billing.render import render_html, render_pdf

    invoice, info = invoice_from_json(content)
    return facturx_pdf(render_pdf(render_html(invoice, info)), invoice)


@router.get("/invoices/{number}.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}})
def invoice_pdf(request: Request, user: CurrentUser, number: str) -> Response:
    """The invoice as a Factur-X PDF (PDF/A-3 with the EN 16931 XML inside)."""
    pdf = invoice_pdf_bytes(own_invoice(request, user, number))
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{number}.pdf"'})


@router.get("/invoices/{number}.xml", response_class=Response,
            responses={200: {"content": {"application/xml": {}}}})
def invoice_ubl(request: Request, user: CurrentUser, number: str) -> Response:
    """The invoice as a UBL 2.1 e-invoice (EN 16931)."""
    from kwartier.billing.einvoice import to_ubl

    invoice, _ = invoice_from_json(own_invoice(request, user, number))
    return Response(to_ubl(invoice), media_type="application/xml",
                    headers={"Content-Disposition": f'attachment; filename="{number}.ubl.xml"'})


@router.get("/invoices/{number}")
def invoice(request: Request, user: CurrentUser, number: str) -> dict[str, Any]:
    """The stored invoice document: seller, buyer, lines, VAT, totals and the informative part."""
    inv, info = invoice_from_json(own_invoice(request, user, number))
    return invoice_to_json(inv, info)


# --- what a user may see ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """The community as a user sees it: the definition (None before one is loaded) and the visible meters."""

    defn: Definition | None
    eans: frozenset[str]  # connections and metering points the user may read intervals of
    mains: tuple[str, ...]  # of those, the main connections (whose readings add up to the household)
    tz: str
    zone: str


def context(engine: Engine, user: User) -> Context:
    try:
        defn = current_definition(engine)
    except (DefinitionError, PlanError):
        return Context(None, frozenset(), (), DEFAULT_TZ, "NL")
    spec = defn.spec
    if user.role == "participant":
        mains = tuple(c.ean for c in spec.connections if c.participant == user.participant)
    elif user.role == "operator":
        mains = tuple(c.ean for c in spec.connections)
    else:  # grid: aggregates only, never one household's meter
        mains = ()
    subs = [m.ean for m in spec.metering_points if m.connection in mains]
    return Context(defn, frozenset((*mains, *subs)), mains, defn.community.timezone, defn.community.zone)


def may_see_invoices(user: User) -> bool:
    return user.role in ("participant", "operator")


def now_quarter() -> datetime:
    return floor_to_grid(datetime.now(UTC))


def today(tz: str) -> date:
    return local_date_of(datetime.now(UTC), tz)


def participant_plan(ctx: Context, participant: str | None, day: date) -> LoadedPlan | None:
    """The plan of the participant's main connection contract in force on ``day`` (else its first one)."""
    if ctx.defn is None or participant is None:
        return None
    contracts = [c for c in ctx.defn.spec.contracts if c.target in ctx.mains]
    live = [c for c in contracts if c.valid_from <= day and (c.valid_to is None or day < c.valid_to)]
    chosen = (live or contracts)[:1]
    return ctx.defn.plans[chosen[0].id] if chosen else None


def find_plan(ctx: Context, plan_id: str | None, participant: str | None = None) -> LoadedPlan | None:
    """A plan of the community's contracts (as loaded) or a built-in one; the user's own when not named."""
    if plan_id is None:
        return participant_plan(ctx, participant, today(ctx.tz))
    if ctx.defn is not None:
        for loaded in ctx.defn.plans.values():
            if loaded.id == plan_id:
                return loaded
    if plan_id in builtin_ids():
        return load_plan(plan_id)
    return None


def day_table(engine: Engine, plan: LoadedPlan, zone: str, day: date) -> pl.DataFrame:
    from kwartier.services.prices import day_prices

    return day_prices(engine, plan, zone, day, datetime.now(UTC))


def day_quarters(request: Request, plan: LoadedPlan, zone: str, day: date) -> list[dict[str, Any]]:
    """``quarters(day_table(...))`` as known now, computed once per data version and quarter-hour.

    Raises what ``day_table`` raises (``BeyondHorizon``, ``MissingData``), from the cache too.
    """
    def compute() -> list[dict[str, Any]] | ValueError:
        try:
            return quarters(day_table(request.app.state.engine, plan, zone, day), plan)
        except ValueError as exc:
            return exc

    out = request.app.state.views.get("day_quarters", (plan.id, plan.where, zone, day), compute)
    if isinstance(out, ValueError):
        raise out.with_traceback(None)
    return out  # type: ignore[no-any-return]


def quarters(table: pl.DataFrame, plan: LoadedPlan) -> list[dict[str, Any]]:
    """Per quarter: the import price (sum of the import components), fixed only when all its parts are."""
    if table.is_empty():
        return []
    imports = [c.spec.id for c in plan.components if c.spec.basis == "import_kwh"]
    per = (table.sort("interval_start", "component").group_by("interval_start", maintain_order=True)
           .agg(pl.col("price_ueur_per_kwh").filter(pl.col("component").is_in(imports)).sum().alias("micro"),
                (pl.col("status") == "forecast").any().alias("forecast"),
                pl.struct("component", "price_ueur_per_kwh", "status").alias("parts")))
    return [{"start": r["interval_start"].strftime("%Y-%m-%dT%H:%M:%SZ"),
             "eur_per_kwh": str(Decimal(int(r["micro"])).scaleb(-6)),
             "status": "forecast" if r["forecast"] else "fixed",
             "components": [{"component": p["component"], "eur_per_kwh": str(Decimal(p["price_ueur_per_kwh"])
                                                                             .scaleb(-6)),
                             "status": p["status"]} for p in r["parts"]]}
            for r in per.iter_rows(named=True)]


def readings(engine: Engine, eans: list[str], start: datetime, end: datetime) -> pl.DataFrame:
    """Current readings of ``eans`` with interval start in [start, end), one row per meter and interval."""
    r = schema.readings
    with engine.connect() as conn:
        rows = conn.execute(select(r.c.connection, r.c.interval_start, r.c.resolution, r.c.import_wh,
                                   r.c.export_wh, r.c.status)
                            .where(r.c.connection.in_(eans), r.c.is_current.is_(True),
                                   r.c.interval_start >= start, r.c.interval_start < end)
                            .order_by(r.c.interval_start, r.c.connection)).all()
    return pl.DataFrame([tuple(x) for x in rows], orient="row", schema={
        "connection": pl.String, "interval_start": pl.Datetime("us", "UTC"), "resolution": pl.String,
        "import_wh": pl.Int64, "export_wh": pl.Int64, "status": pl.String})


def invoice_rows(engine: Engine, user: User) -> list[dict[str, Any]]:
    if not may_see_invoices(user):
        return []
    i = schema.invoices
    stmt = select(i.c.number, i.c.kind, i.c.participant, i.c.period, i.c.issue_date, i.c.total_cents,
                  i.c.corrects).order_by(i.c.number)
    if user.role == "participant":
        stmt = stmt.where(i.c.participant == user.participant)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]
