"""Server-rendered pages: login, insight, invoices, the operator's community and the grid operator's load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import polars as pl
from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select

from kwartier.billing.documents import invoice_from_json
from kwartier.money import nano_to_cents
from kwartier.services.billing import REFERENCE_PLAN
from kwartier.store import schema
from kwartier.web import api, i18n
from kwartier.web.auth import SESSION_SECONDS, User, authenticate, get_user

router = APIRouter(include_in_schema=False)
CSRF_COOKIE = "kw_csrf"
MIN_HOUSEHOLDS = 5  # the grid page shows a quarter only when at least this many households add up to it


def language(request: Request) -> str:
    asked = request.query_params.get("lang")
    if asked in i18n.LANGS:
        return asked
    cookie = request.cookies.get(i18n.LANG_COOKIE)
    return cookie if cookie in i18n.LANGS else i18n.from_accept_language(request.headers.get("accept-language"))


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def render(request: Request, name: str, user: User | None, status: int = 200, **data: Any) -> HTMLResponse:
    """A page in the user's language, with a CSRF token for its forms and safe headers."""
    lang = language(request)
    csrf = request.cookies.get(CSRF_COOKIE)
    signer = request.app.state.signer
    fresh = not signer.csrf_ok(csrf, csrf)
    if fresh:
        csrf = signer.new_csrf()
    html = request.app.state.templates.get_template(name).render(
        lang=lang, t=i18n.texts(lang), tr=lambda key, **f: i18n.t(key, lang, **f), user=user, csrf=csrf,
        path=request.url.path, langs=i18n.LANGS, **data)
    response = HTMLResponse(html, status_code=status, headers={
        "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store"})
    if fresh:
        response.set_cookie(CSRF_COOKIE, csrf, max_age=SESSION_SECONDS, httponly=True, samesite="lax",
                            secure=_secure(request))
    if request.query_params.get("lang") in i18n.LANGS:
        response.set_cookie(i18n.LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="lax",
                            secure=_secure(request))
    return response


def page_user(request: Request) -> User | None:
    name = request.app.state.signer.session_user(request.cookies.get(api.SESSION_COOKIE))
    return get_user(request.app.state.engine, name) if name else None


def _to_login() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


def _not_found(request: Request, user: User | None) -> HTMLResponse:
    return render(request, "error.j2", user, status=404, message=i18n.t("not_found", language(request)))


@router.get("/login")
def login_form(request: Request) -> Response:
    return render(request, "login.j2", None)


@router.post("/login")
def login(request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()],
          csrf: Annotated[str, Form()] = "") -> Response:
    lang = language(request)
    app = request.app
    if not app.state.signer.csrf_ok(request.cookies.get(CSRF_COOKIE), csrf):
        return render(request, "login.j2", None, status=400, error=i18n.t("bad_csrf", lang))
    client = request.client.host if request.client else "-"
    wait = app.state.limiter.retry_after(username, client)
    if wait is not None:
        response = render(request, "login.j2", None, status=429, error=i18n.t("too_many", lang, n=wait))
        response.headers["Retry-After"] = str(wait)
        return response
    user = authenticate(app.state.engine, username, password)
    if user is None:
        app.state.limiter.failed(username, client)
        return render(request, "login.j2", None, status=401, error=i18n.t("bad_login", lang))
    app.state.limiter.succeeded(username, client)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(api.SESSION_COOKIE, app.state.signer.session(user.username), max_age=SESSION_SECONDS,
                        httponly=True, samesite="lax", secure=_secure(request))
    response.set_cookie(CSRF_COOKIE, app.state.signer.new_csrf(), max_age=SESSION_SECONDS, httponly=True,
                        samesite="lax", secure=_secure(request))  # a new token for the new session
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    if not request.app.state.signer.csrf_ok(request.cookies.get(CSRF_COOKIE), csrf):
        return render(request, "error.j2", page_user(request), status=400,
                      message=i18n.t("bad_csrf", language(request)))
    response = _to_login()
    response.delete_cookie(api.SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response


def _local(ts: datetime, tz: str) -> str:
    return ts.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


@router.get("/")
def insight(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return _to_login()
    if user.role != "participant":
        return RedirectResponse("/operator" if user.role == "operator" else "/grid", status_code=303)
    engine = request.app.state.engine
    ctx = api.context(engine, user)
    today = api.today(ctx.tz)
    plan = api.participant_plan(ctx, user.participant, today)
    price_points: list[dict[str, Any]] = []
    if plan is not None:
        for day in (today, today + timedelta(days=1)):
            try:
                table = api.day_table(engine, plan, ctx.zone, day)
            except ValueError:  # beyond the forecast horizon or nothing to forecast from
                continue
            price_points += [{"at": q["start"], "x": _local(datetime.fromisoformat(q["start"]), ctx.tz),
                              "y": float(q["eur_per_kwh"]), "status": q["status"]} for q in api.quarters(table, plan)]
    end = api.now_quarter()
    use = api.readings(engine, list(ctx.mains), end - timedelta(days=7), end)
    use = (use.group_by("interval_start").agg(pl.col("import_wh").sum(), pl.col("export_wh").sum())
           .sort("interval_start"))
    usage = {"x": [_local(ts, ctx.tz) for ts in use["interval_start"]],
             "import": [w / 1000 for w in use["import_wh"]], "export": [w / 1000 for w in use["export_wh"]]}
    lang = language(request)
    charts = {"prices": price_points, "usage": usage, "plan": plan.id if plan else None, "lang": lang,
              "labels": {k: i18n.t(k, lang) for k in ("fixed", "forecast", "import", "export")}}
    return render(request, "insight.j2", user, charts=charts, costs=_last_costs(engine, user, lang),
                  plan_name=plan.plan.name if plan else None)


def _last_costs(engine: Any, user: User, lang: str) -> dict[str, Any] | None:
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
        for ln in invoice.lines:
            lines[ln.label] = lines.get(ln.label, 0) + ln.amount_cents
        total += invoice.total_cents
        ref = info.reference_total_cents if info is not None else None
        reference = None if reference is None or ref is None else reference + ref
    return {"period": period, "lines": [(label, i18n.money(c, lang)) for label, c in lines.items()],
            "total": i18n.money(total, lang), "reference_plan": REFERENCE_PLAN,
            "reference": i18n.money(reference, lang) if reference is not None else None}


@router.get("/invoices")
def invoices(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return _to_login()
    lang = language(request)
    rows = [{**r, "total": i18n.money(int(r["total_cents"]), lang), "issued": i18n.day(r["issue_date"], lang),
             "kind": i18n.t(r["kind"], lang) if r["kind"] in i18n.TEXT else r["kind"]}
            for r in api.invoice_rows(request.app.state.engine, user)]
    return render(request, "invoices.j2", user, rows=rows)


def _own(request: Request, number: str) -> tuple[User | None, dict[str, Any] | None]:
    user = page_user(request)
    if user is None:
        return None, None
    try:
        return user, api.own_invoice(request, user, number)
    except HTTPException:
        return user, None


@router.get("/invoices/{number}.pdf")
def invoice_pdf(request: Request, number: str) -> Response:
    user, content = _own(request, number)
    if user is None:
        return _to_login()
    if content is None:
        return _not_found(request, user)
    return Response(api.invoice_pdf_bytes(content), media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{number}.pdf"'})


@router.get("/invoices/{number}.xml")
def invoice_xml(request: Request, number: str) -> Response:
    from kwartier.billing.einvoice import to_ubl

    user, content = _own(request, number)
    if user is None:
        return _to_login()
    if content is None:
        return _not_found(request, user)
    return Response(to_ubl(invoice_from_json(content)[0]), media_type="application/xml",
                    headers={"Content-Disposition": f'attachment; filename="{number}.ubl.xml"'})


@router.get("/invoices/{number}")
def invoice_html(request: Request, number: str) -> Response:
    from kwartier.billing.render import render_html

    user, content = _own(request, number)
    if user is None:
        return _to_login()
    if content is None:
        return _not_found(request, user)
    invoice, info = invoice_from_json(content)
    return HTMLResponse(render_html(invoice, info, language(request)),
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})


@router.get("/operator")
def operator(request: Request) -> Response:
    user = page_user(request)
    if user is None:
        return _to_login()
    if user.role != "operator":
        return _not_found(request, user)
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
        settled = sorted(set(conn.execute(select(runs.c.period)).scalars()))
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
    totals = [{"id": m["id"], "name": m["name"],
               "owed": i18n.money(nano_to_cents(owed.get(f"participant:{m['id']}", 0)), lang)} for m in members]
    kpis = _period_energy(engine, list(ctx.mains), period, ctx.tz, lang) if period else None
    status = [{"period": p, "settled": p in settled,
               "documents": ", ".join(f"{n} × {i18n.t(k, lang) if k in i18n.TEXT else k}" for pp, k, n, _ in docs
                                      if pp == p)}
              for p in sorted(set(settled) | {d[0] for d in docs})]
    return render(request, "operator.j2", user, members=members, period=period, totals=totals, kpis=kpis,
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
        return _to_login()
    if user.role not in ("grid", "operator"):
        return _not_found(request, user)
    engine = request.app.state.engine
    ctx = api.context(engine, user)
    owner: dict[str, str] = {}
    if ctx.defn is not None:
        owner = {c.ean: c.participant for c in ctx.defn.spec.connections
                 if user.party is None or c.grid == user.party}
    end = api.now_quarter()
    frame = api.readings(engine, list(owner), end - timedelta(days=7), end)
    load = (frame.with_columns(household=pl.col("connection").replace_strict(owner, default=None))
            .group_by("interval_start")
            .agg(pl.col("import_wh").sum(), pl.col("export_wh").sum(), pl.col("household").n_unique().alias("n"))
            .filter(pl.col("n") >= MIN_HOUSEHOLDS).sort("interval_start"))
    lang = language(request)
    chart = {"x": [_local(ts, ctx.tz) for ts in load["interval_start"]],
             "import": [w / 1000 for w in load["import_wh"]], "export": [w / 1000 for w in load["export_wh"]],
             "labels": {k: i18n.t(k, lang) for k in ("import", "export")}}
    return render(request, "grid.j2", user, chart=chart, households=len(set(owner.values())),
                  min_households=MIN_HOUSEHOLDS, generated=_local(datetime.now(UTC), ctx.tz))
