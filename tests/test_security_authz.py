"""Authorisation matrix: every role x every route of the app, enumerated from ``app.routes``.

Roles: anonymous, participant A (the owner of the data in the path), participant B, the community
operator and a grid user. Every route the app has is requested as each role, pages with the role's
session cookie and API routes with its bearer token (and, for API routes, once more with the cookie:
the API accepts both). Known routes have an exact expected status per role; a route this file does
not know yet is still covered by the rules that hold for every route:

- no role ever gets a 5xx;
- anonymous gets no 2xx that carries anyone's data, and a page sends it to /login;
- nobody but A and the operator sees A's EAN, invoice number, name or e-mail;
- a POST without a CSRF token or credentials never succeeds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from kwartier.store import open_store
from kwartier.web.app import create_app
from test_web_api import PASSWORD, World, build_world

pytestmark = pytest.mark.slow  # a billed world and ~250 requests, PDFs included
ROLES = ("anonymous", "A", "B", "operator", "grid")
USERS = {"A": "user0", "B": "user1", "operator": "olga", "grid": "greta"}
PLAN = "nl-dynamic-2026"
AT = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT12:00:00Z")
QUERY = {"/api/v1/prices": {"plan": PLAN}, "/api/v1/prices/explain": {"plan": PLAN, "at": AT}}


def _row(anonymous: int, a: int, b: int, operator: int, grid: int) -> dict[str, int]:
    return dict(zip(ROLES, (anonymous, a, b, operator, grid), strict=True))


#: Expected status per role of the routes known today; a route not listed gets the generic rules only.
API_ANY_USER = _row(401, 200, 200, 200, 200)
API_OWNER = _row(401, 200, 404, 200, 404)  # A's data: A and the operator; B and grid get "not found"
PAGE_PARTICIPANT = _row(303, 200, 200, 404, 404)  # one's own household pages
PAGE_OWNER = _row(303, 200, 404, 200, 404)
PUBLIC = _row(200, 200, 200, 200, 200)
EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("POST", "/api/v1/auth/token"): _row(422, 422, 422, 422, 422),  # no form: rejected before any check
    ("GET", "/api/v1/me"): API_ANY_USER,
    ("GET", "/api/v1/connections/{ean}/intervals"): API_OWNER,
    ("GET", "/api/v1/prices"): API_ANY_USER,
    ("GET", "/api/v1/prices/explain"): API_ANY_USER,
    ("GET", "/api/v1/invoices"): API_ANY_USER,
    ("GET", "/api/v1/invoices/{number}"): API_OWNER,
    ("GET", "/api/v1/invoices/{number}.pdf"): API_OWNER,
    ("GET", "/api/v1/invoices/{number}.xml"): API_OWNER,
    ("GET", "/api/v1/docs"): PUBLIC,
    ("GET", "/api/v1/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/api/v1/openapi.json"): PUBLIC,
    ("GET", "/static/plotly.min.js"): PUBLIC,
    ("GET", "/static/{name}"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): _row(422, 422, 422, 422, 422),  # no username/password
    ("POST", "/logout"): _row(400, 400, 400, 400, 400),  # no CSRF token: refused, the session stays
    ("GET", "/"): _row(303, 200, 200, 303, 303),  # operator -> /operator, grid -> /grid
    ("GET", "/invoices"): _row(303, 200, 200, 200, 200),  # a list of what one may see (grid: empty)
    ("GET", "/invoices/{number}"): PAGE_OWNER,
    ("GET", "/invoices/{number}.pdf"): PAGE_OWNER,
    ("GET", "/invoices/{number}.xml"): PAGE_OWNER,
    ("GET", "/operator"): _row(303, 404, 404, 200, 404),
    ("GET", "/grid"): _row(303, 404, 404, 200, 200),
    **{("GET", p): PAGE_PARTICIPANT for p in ("/learn", "/performance", "/alerts", "/export",
                                               "/export/readings.csv", "/export/readings.json",
                                               "/export/invoices.json", "/export/costs.json",
                                               "/export/prices.csv")},
}
#: Public feeds (prices only, no personal data): any /api/v1/tariff/... route.
PUBLIC_PREFIXES = ("/api/v1/tariff/",)


@dataclass
class Matrix:
    world: World
    app: object
    clients: dict[str, TestClient]  # role -> client with the role's session cookie (anonymous: none)
    tokens: dict[str, dict[str, str]]  # role -> Authorization header (anonymous: none)
    fill: dict[str, str]  # path parameter -> value

    def marks_of_a(self) -> list[str]:
        return [self.world.eans[0], self.world.invoices["p0"][0], "Household 0", "p0@example.org"]

    def marks_of_anyone(self) -> list[str]:
        return [*self.marks_of_a(), self.world.eans[1], self.world.invoices["p1"][0], "Household 1",
                "p1@example.org"]


def _login(client: TestClient, username: str) -> None:
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf": csrf},
                    follow_redirects=False)
    assert r.status_code == 303, r.text


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Matrix:
    folder = tmp_path_factory.mktemp("authz")
    engine = open_store(f"sqlite:///{folder / 'k.db'}")
    world = build_world(engine, folder)
    app = create_app(engine, secret=b"authz-secret")
    clients = {"anonymous": TestClient(app)}
    tokens: dict[str, dict[str, str]] = {"anonymous": {}}
    for role, username in USERS.items():
        clients[role] = TestClient(app)
        _login(clients[role], username)
        r = TestClient(app).post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
        tokens[role] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    fill = {"ean": world.eans[0], "number": world.invoices["p0"][0], "plan": PLAN, "name": "kwartier.css"}
    yield Matrix(world, app, clients, tokens, fill)
    engine.dispose()


def _walk(items) -> Iterator[tuple[str, set[str]]]:  # type: ignore[no-untyped-def]
    """(path, methods) of every route, through included routers (FastAPI >= 0.165 includes lazily) and mounts."""
    for r in items:
        if hasattr(r, "effective_candidates"):  # an included router
            yield from _walk(r.effective_candidates())
        elif hasattr(r, "original_route"):  # a route of an included router, with its full path
            yield r.path, set(getattr(r.original_route, "methods", None) or {"GET"})
        elif isinstance(r, Mount):
            yield r.path + "/{path}", {"GET"}
        elif isinstance(r, Route):
            yield r.path, set(r.methods or ())


def routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Every (method, path) the app answers, HEAD aside."""
    found = sorted({(m, path) for path, methods in _walk(app.routes) for m in methods if m != "HEAD"})
    assert len(found) > 20, f"the route walk found only {found}: has FastAPI changed how routers are included?"
    return found


def _url(path: str, fill: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: fill.get(m.group(1), "x"), path)


def call(m: Matrix, role: str, method: str, path: str, *, by_cookie: bool = False):  # type: ignore[no-untyped-def]
    """The response to ``role`` for the route: API by bearer token (or cookie), pages by cookie."""
    api = path.startswith("/api/")
    client = m.clients[role] if (by_cookie or not api) else m.clients["anonymous"]
    headers = m.tokens[role] if api and not by_cookie else {}
    url = _url(path, m.fill)
    if method == "GET":
        return client.get(url, params=QUERY.get(path), headers=headers, follow_redirects=False)
    return client.request(method, url, headers=headers, data={}, follow_redirects=False)


def generic_rules(m: Matrix, role: str, method: str, path: str, r) -> list[str]:  # type: ignore[no-untyped-def]
    """What every route must keep, known or not; the list of broken rules."""
    broken = []
    body = r.text if "pdf" not in r.headers.get("content-type", "") else ""
    for asked in re.findall(r"[\w.@-]+", str(r.request.url)):  # what the caller typed may be echoed back
        body = body.replace(asked, "")
    if r.status_code >= 500:
        broken.append(f"{r.status_code} server error")
    if role == "anonymous":
        if 200 <= r.status_code < 300 and any(x in body for x in m.marks_of_anyone()):
            broken.append("anonymous got someone's data")
        if r.status_code in (301, 302, 303, 307) and not r.headers.get("location", "").endswith("/login"):
            broken.append(f"anonymous redirected to {r.headers.get('location')}, not /login")
    if role not in ("A", "operator") and any(x in body for x in m.marks_of_a()):
        broken.append(f"{role} sees A's data")
    if method != "GET" and 200 <= r.status_code < 300:
        broken.append("a POST without form or CSRF token succeeded")
    return broken


def expected_status(method: str, path: str, role: str) -> int | None:
    if (method, path) in EXPECTED:
        return EXPECTED[(method, path)][role]
    if method == "GET" and path.startswith(PUBLIC_PREFIXES):
        return 200
    return None


def test_the_matrix_knows_the_routes_of_today(matrix):
    """The routes listed above exist (a renamed route must be renamed here too)."""
    have = set(routes(matrix.app))
    gone = sorted(k for k in EXPECTED if k not in have)
    assert not gone, f"routes in the matrix that the app no longer has: {gone}"


def test_every_role_on_every_route(matrix):
    failures = []
    table = []
    for method, path in routes(matrix.app):
        row = []
        for role in ROLES:
            r = call(matrix, role, method, path)
            row.append(r.status_code)
            want = expected_status(method, path, role)
            if want is not None and r.status_code != want:
                failures.append(f"{method} {path} as {role}: {r.status_code}, expected {want}")
            failures += [f"{method} {path} as {role}: {b}" for b in generic_rules(matrix, role, method, path, r)]
        table.append(f"{method:4} {path:45} " + " ".join(f"{s:3}" for s in row))
    assert not failures, "\n".join(failures) + "\n\n" + " " * 51 + " ".join(ROLES) + "\n" + "\n".join(table)


def test_api_routes_answer_the_same_to_the_session_cookie(matrix):
    """The API takes the page session too: the same answer per role as with the bearer token."""
    failures = []
    for method, path in routes(matrix.app):
        if not path.startswith("/api/") or method != "GET" or "docs" in path or path.endswith("openapi.json"):
            continue
        for role in ROLES:
            by_token = call(matrix, role, method, path).status_code
            by_cookie = call(matrix, role, method, path, by_cookie=True)
            if by_cookie.status_code != by_token:
                failures.append(f"{path} as {role}: token {by_token}, cookie {by_cookie.status_code}")
            failures += [f"{path} as {role} (cookie): {b}"
                         for b in generic_rules(matrix, role, method, path, by_cookie)]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("forged", ["Bearer x.y.z", "Bearer ", "Basic dXNlcjA6cGFzcw==", "bearer forged"])
def test_a_forged_or_foreign_credential_is_anonymous(matrix, forged):
    """A token signed with another secret, or garbage, gives what anonymous gets (never A's data)."""
    other = create_app(matrix.world.engine, secret=b"another-secret")
    foreign = TestClient(other).post("/api/v1/auth/token", data={"username": "user0", "password": PASSWORD})
    client = matrix.clients["anonymous"]
    for header in (forged, f"Bearer {foreign.json()['access_token']}"):
        for method, path in routes(matrix.app):
            if method != "GET" or not path.startswith("/api/") or expected_status(method, path, "anonymous") == 200:
                continue
            r = client.get(_url(path, matrix.fill), params=QUERY.get(path), headers={"Authorization": header})
            assert r.status_code == 401, (header, path, r.status_code)
    cookie = TestClient(matrix.app, cookies={"kw_session": "forged.session.cookie"})
    assert cookie.get("/", follow_redirects=False).status_code == 303
    assert cookie.get("/api/v1/me").status_code == 401
