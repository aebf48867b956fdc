"""What every page shares: the language, rendering with a CSRF token, the logged-in user, redirects."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select

from kwartier.store import schema
from kwartier.web import api, i18n
from kwartier.web.auth import SESSION_SECONDS, User, get_user

CSRF_COOKIE = "kw_csrf"
MIN_HOUSEHOLDS = 5  # the grid page shows a quarter only when at least this many households add up to it


def language(request: Request) -> str:
    asked = request.query_params.get("lang")
    if asked in i18n.LANGS:
        return asked
    cookie = request.cookies.get(i18n.LANG_COOKIE)
    return cookie if cookie in i18n.LANGS else i18n.from_accept_language(request.headers.get("accept-language"))


def secure(request: Request) -> bool:
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
                            secure=secure(request))
    if request.query_params.get("lang") in i18n.LANGS:
        response.set_cookie(i18n.LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="lax",
                            secure=secure(request))
    return response


def page_user(request: Request) -> User | None:
    name = request.app.state.signer.session_user(request.cookies.get(api.SESSION_COOKIE))
    return get_user(request.app.state.engine, name) if name else None


def to_login() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


def not_found(request: Request, user: User | None) -> HTMLResponse:
    return render(request, "error.j2", user, status=404, message=i18n.t("not_found", language(request)))



def local_time(ts: datetime, tz: str) -> str:
    return ts.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def participant_only(request: Request) -> tuple[User | None, Response | None]:
    """The logged-in participant, or the response to give instead (login, or 404 for other roles)."""
    user = page_user(request)
    if user is None:
        return None, to_login()
    if user.role != "participant":
        return user, not_found(request, user)
    return user, None


def last_settled(engine: Any) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(func.max(schema.settle_runs.c.period))).scalar()


def live_documents(engine: Any, participant: str | None) -> list[Any]:
    """The participant's invoices that no credit note cancels, by period."""
    i = schema.invoices
    with engine.connect() as conn:
        rows = conn.execute(select(i.c.number, i.c.kind, i.c.corrects, i.c.period, i.c.content)
                            .where(i.c.participant == participant).order_by(i.c.period, i.c.number)).all()
    credited = {r.corrects for r in rows if r.kind == "credit_note"}
    return [r for r in rows if r.kind == "invoice" and r.number not in credited]


def own_frame(engine: Any, mains: list[str], start: datetime, stop: datetime) -> pl.DataFrame:
    """The household's readings (main connections summed) per interval in [start, stop)."""
    frame = api.readings(engine, mains, start, stop)
    return (frame.group_by("interval_start", "resolution")
            .agg(pl.col("import_wh").sum(), pl.col("export_wh").sum(), pl.lit("actual").alias("status"))
            .sort("interval_start"))
