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


# --- the participant's own pages: learn, performance, alerts, export -------------------------------


def _participant(request: Request) -> tuple[User | None, Response | None]:
    """The logged-in participant, or the response to give instead (login, or 404 for other roles)."""
    user = page_user(request)
    if user is None:
        return None, _to_login()
    if user.role != "participant":
        return user, _not_found(request, user)
    return user, None


def _last_settled(engine: Any) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(func.max(schema.settle_runs.c.period))).scalar()


def own_frame(engine: Any, mains: list[str], start: datetime, stop: datetime) -> pl.DataFrame:
    """The household's readings (main connections summed) per interval in [start, stop)."""
    frame = api.readings(engine, mains, start, stop)
    return (frame.group_by("interval_start", "resolution")
            .agg(pl.col("import_wh").sum(), pl.col("export_wh").sum(), pl.lit("actual").alias("status"))
            .sort("interval_start"))


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


def _int_param(request: Request, name: str, default: Decimal, low: int, high: int, scale: int = 1) -> int:
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
    from kwartier.services.prices import stored_prices
    from kwartier.services.settle import parse_period
    from kwartier.tariffs.cost import cost
    from kwartier.tariffs.plan import builtin_ids, load_plan
    from kwartier.timegrid import local_period_bounds

    user, other = _participant(request)
    if other is not None or user is None:
        return other or _to_login()
    lang = language(request)
    try:
        form = {"kwh": _int_param(request, "kwh", Decimal("1.5"), 0, 50, 1000),
                "from_hour": _int_param(request, "from_hour", Decimal(19), 0, 23),
                "to_hour": _int_param(request, "to_hour", Decimal(23), 0, 23),
                "battery_kwh": _int_param(request, "battery_kwh", Decimal(5), 0, 100, 1000),
                "battery_kw": _int_param(request, "battery_kw", Decimal("2.5"), 0, 50, 1000)}
    except ValueError as exc:
        return render(request, "error.j2", user, status=422, message=i18n.t("bad_field", lang, field=str(exc)))
    engine = request.app.state.engine
    ctx = api.context(engine, user)
    period = _last_settled(engine)
    if period is None:
        return render(request, "learn.j2", user, period=None, form=form)
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

    def shown(cents: int | None) -> str:
        return "–" if cents is None else i18n.money(cents, lang)

    now = total(plan, frame) if plan else None
    shifted = total(plan, shift_load(frame, ctx.tz, start, stop, form["kwh"], form["from_hour"],
                                     form["to_hour"])) if plan else None
    hourly = bool((frame.filter(pl.col("interval_start") >= start)["resolution"] == "PT60M").any())
    battery = (total(plan, with_battery(frame, start, stop, form["battery_kwh"], form["battery_kw"]))
               if plan and not hourly else None)
    plans = [{"id": pid, "name": (lp := load_plan(pid)).plan.name, "total": shown(total(lp, frame)),
              "own": plan is not None and lp.plan.name == plan.plan.name} for pid in builtin_ids()]
    results = {"now": shown(now), "shifted": shown(shifted), "battery": shown(battery),
               "shift_diff": shown(None if now is None or shifted is None else shifted - now),
               "battery_diff": shown(None if now is None or battery is None else battery - now)}
    return render(request, "learn.j2", user, period=period, form=form, results=results, plans=plans,
                  hourly=hourly, plan_name=plan.plan.name if plan else None,
                  form_text={"kwh": i18n.number(Decimal(form["kwh"]).scaleb(-3), lang, 1),
                             "battery_kwh": i18n.number(Decimal(form["battery_kwh"]).scaleb(-3), lang, 1),
                             "battery_kw": i18n.number(Decimal(form["battery_kw"]).scaleb(-3), lang, 1)},
                  raw={k: str(Decimal(v).scaleb(-3)) if k in ("kwh", "battery_kwh", "battery_kw") else str(v)
                       for k, v in form.items()})


def _live_documents(engine: Any, participant: str | None) -> list[Any]:
    """The participant's invoices that no credit note cancels, by period."""
    i = schema.invoices
    with engine.connect() as conn:
        rows = conn.execute(select(i.c.number, i.c.kind, i.c.corrects, i.c.period, i.c.content)
                            .where(i.c.participant == participant).order_by(i.c.period, i.c.number)).all()
    credited = {r.corrects for r in rows if r.kind == "credit_note"}
    return [r for r in rows if r.kind == "invoice" and r.number not in credited]


@router.get("/performance")
def performance(request: Request) -> Response:
    user, other = _participant(request)
    if other is not None or user is None:
        return other or _to_login()
    lang = language(request)
    months: dict[str, dict[str, Any]] = {}
    for r in _live_documents(request.app.state.engine, user.participant):
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
    return render(request, "performance.j2", user, rows=rows, chart=chart)


@router.get("/alerts")
def alerts_page(request: Request) -> Response:
    from kwartier.services.prices import stored_prices
    from kwartier.web import alerts

    user, other = _participant(request)
    if other is not None or user is None:
        return other or _to_login()
    engine, lang = request.app.state.engine, language(request)
    ctx = api.context(engine, user)
    now, day = datetime.now(UTC), api.today(ctx.tz)
    tomorrow = day + timedelta(days=1)
    plan = api.participant_plan(ctx, user.participant, day)
    found: list[alerts.Alert | None] = []
    if plan is not None:
        try:
            q = api.quarters(api.day_table(engine, plan, ctx.zone, tomorrow), plan)
        except ValueError:
            q = []
        table = pl.DataFrame({"interval_start": [datetime.fromisoformat(x["start"]) for x in q],
                              "price_ueur_per_kwh": [int(Decimal(x["eur_per_kwh"]).scaleb(6)) for x in q],
                              "fixed": [x["status"] == "fixed" for x in q]},
                             schema={"interval_start": pl.Datetime("us", "UTC"), "price_ueur_per_kwh": pl.Int64,
                                     "fixed": pl.Boolean})
        found.append(alerts.cheapest_window(table, ctx.tz, tomorrow))
        # congestion: the plan's input series have no stored values yet, so this rule has nothing to read
    found.append(alerts.negative_prices(stored_prices(engine, ctx.zone, now - timedelta(minutes=15),
                                                      now + timedelta(days=2)), now))
    start = api.now_quarter() - timedelta(days=7 * alerts.WEEKS_BACK + 2)
    daily = alerts.daily_import_wh(own_frame(engine, list(ctx.mains), start, api.now_quarter()), ctx.tz)
    from kwartier.timegrid import local_period_bounds

    yesterday = day - timedelta(days=1)
    found.append(alerts.unusual_consumption(daily, yesterday, local_period_bounds(yesterday, day, ctx.tz)[0]))
    shown = [{"kind": i18n.t(a.kind + "_title", lang), "at": _local(a.at_utc, ctx.tz),
              "text": i18n.t(a.kind, lang, **{k: _local(v, ctx.tz)[-5:] if isinstance(v, datetime) else
                                              (i18n.number(v, lang, 4 if k == "eur_per_kwh" else 1)
                                               if isinstance(v, Decimal) else v) for k, v in a.values.items()})}
             for a in found if a is not None]
    return render(request, "alerts.j2", user, alerts=shown)


EXPORTS = ("readings.csv", "readings.json", "invoices.json", "costs.json", "prices.csv")


@router.get("/export")
def export_page(request: Request) -> Response:
    user, other = _participant(request)
    if other is not None or user is None:
        return other or _to_login()
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
    user, other = _participant(request)
    if other is not None or user is None:
        return other or _to_login()
    return _download(_all_readings(request, user).write_csv(), "csv", "readings.csv")


@router.get("/export/readings.json")
def export_readings_json(request: Request) -> Response:
    user, other = _participant(request)
    if other is not None or user is None:
        return other or _to_login()
    return _download(_all_readings(request, user).write_json(), "json", "readings.json")


@router.get("/export/invoices.json")
def export_invoices(request: Request) -> Response:
    import json

    user, other = _participant(request)
    if other is not None or user is None:
        return other or _to_login()
    i = schema.invoices
    with request.app.state.engine.connect() as conn:
        docs = [dict(r[0]) for r in conn.execute(select(i.c.content).where(i.c.participant == user.participant)
                                                 .order_by(i.c.number))]
    return _download(json.dumps(docs, ensure_ascii=False, default=str), "json", "invoices.json")


@router.get("/export/costs.json")
def export_costs(request: Request) -> Response:
    """Per billed month: the cost lines of the participant's live invoices (as billed)."""
    import json

    user, other = _participant(request)
    if other is not None or user is None:
        return other or _to_login()
    out = []
    for r in _live_documents(request.app.state.engine, user.participant):
        invoice, _ = invoice_from_json(r.content)
        out.append({"period": r.period, "invoice": r.number,
                    "lines": [{"label": ln.label, "amount_cents": ln.amount_cents} for ln in invoice.lines],
                    "total_cents": invoice.total_cents})
    return _download(json.dumps(out, ensure_ascii=False), "json", "costs.json")


@router.get("/export/prices.csv")
def export_prices(request: Request) -> Response:
    """The participant's plan: import price per quarter, the last 30 days up to tomorrow (as known now)."""
    user, other = _participant(request)
    if other is not None or user is None:
        return other or _to_login()
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
