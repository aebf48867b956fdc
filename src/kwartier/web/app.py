"""The portal's FastAPI application: the JSON API, the pages and the static files, around one engine."""

from __future__ import annotations

import os
from functools import cache
from importlib.resources import files

import jinja2
from fastapi import FastAPI
from fastapi.responses import Response
from sqlalchemy import Engine

from kwartier.web import api, feeds, pages
from kwartier.web.auth import LoginLimiter, Signer, web_secret
from kwartier.web.cache import ViewCache

STATIC_TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8"}
LONG_CACHE = "public, max-age=31536000, immutable"
SERVE_CACHE_TTL_S = 1.0  # a served portal shows a write within this time


def create_app(engine: Engine, *, secret: bytes | None = None, cache_ttl_s: float = 0.0) -> FastAPI:
    """The portal over ``engine``. ``secret`` signs sessions and tokens; without one, the store's is used.

    The store's secret is generated on first use and kept in the ``settings`` table, so a restart
    keeps everyone logged in; `kwartier serve` passes ``$KWARTIER_SECRET`` when it is set.
    ``cache_ttl_s``: how long the pages trust their last look at the store's data version (see
    web/cache.py); 0 looks on every request, `kwartier serve` allows a write 1 s to show.
    """
    app = FastAPI(title="kwartier", version="1", docs_url="/api/v1/docs", redoc_url=None,
                  openapi_url="/api/v1/openapi.json", swagger_ui_oauth2_redirect_url="/api/v1/docs/oauth2-redirect",
                  description="Prices, readings and invoices of a kwartier energy community.")
    app.state.engine = engine
    app.state.signer = Signer(secret if secret is not None else web_secret(engine))
    app.state.limiter = LoginLimiter()
    app.state.views = ViewCache(engine, ttl_s=cache_ttl_s)
    app.state.templates = jinja2.Environment(loader=jinja2.PackageLoader("kwartier.web", "templates"),
                                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    app.include_router(api.router)
    app.include_router(feeds.router)
    pages.include(app)

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> Response:
        return Response(_plotly(), media_type=STATIC_TYPES["js"], headers={"Cache-Control": LONG_CACHE})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        data = _own_static().get(name)
        if data is None:
            return Response("not found", status_code=404, media_type="text/plain")
        kind = STATIC_TYPES[name.rsplit(".", 1)[-1]]
        return Response(data, media_type=kind, headers={"Cache-Control": "public, max-age=3600"})

    return app


def app_from_env() -> FastAPI:
    """The portal of a uvicorn worker process: the store at $KWARTIER_DATABASE_URL, signed with
    $KWARTIER_SECRET when set, else with the store's secret (`kwartier serve --workers N` starts these)."""
    from kwartier.store import open_store

    secret = os.environ.get("KWARTIER_SECRET")
    return create_app(open_store(os.environ.get("KWARTIER_DATABASE_URL"), upgrade=False),
                      secret=secret.encode() if secret else None, cache_ttl_s=SERVE_CACHE_TTL_S)


@cache
def _plotly() -> bytes:
    """Plotly's JavaScript from the installed plotly package: no CDN, works offline."""
    return files("plotly").joinpath("package_data", "plotly.min.js").read_bytes()


@cache
def _own_static() -> dict[str, bytes]:
    folder = files("kwartier.web").joinpath("static")
    return {p.name: p.read_bytes() for p in folder.iterdir()
            if p.is_file() and p.name.rsplit(".", 1)[-1] in STATIC_TYPES}
