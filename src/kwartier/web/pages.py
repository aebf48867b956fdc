"""The portal's pages: login and logout here; the pages themselves live in the ``pages_*`` modules."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from kwartier.web import (
    api,
    i18n,
    pages_community,
    pages_export,
    pages_household,
    pages_invoices,
    pages_learn,
    pages_operator,
)
from kwartier.web.auth import SESSION_SECONDS, authenticate
from kwartier.web.page import (
    CSRF_COOKIE,
    language,
    page_user,
    render,
    secure,
    to_login,
)

router = APIRouter(include_in_schema=False)


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
                        httponly=True, samesite="lax", secure=secure(request))
    response.set_cookie(CSRF_COOKIE, app.state.signer.new_csrf(), max_age=SESSION_SECONDS, httponly=True,
                        samesite="lax", secure=secure(request))  # a new token for the new session
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    if not request.app.state.signer.csrf_ok(request.cookies.get(CSRF_COOKIE), csrf):
        return render(request, "error.j2", page_user(request), status=400,
                      message=i18n.t("bad_csrf", language(request)))
    response = to_login()
    response.delete_cookie(api.SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response



PAGE_MODULES = (pages_household, pages_invoices, pages_learn, pages_export, pages_operator, pages_community)


def routes() -> list[Any]:
    """Every page route, this module's and the page modules' (tests and benchmarks walk them)."""
    return [*router.routes, *(r for m in PAGE_MODULES for r in m.router.routes)]


def include(app: Any) -> None:
    """Add the login/logout routes and every page module's routes to ``app``."""
    app.include_router(router)
    for module in PAGE_MODULES:
        app.include_router(module.router)
