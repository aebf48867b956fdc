"""A participant never sees another's data: every API route and every page with a parameter, walked as B."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from kwartier.web import pages as pages_module
from kwartier.web.app import create_app
from test_web_api import PASSWORD, build_world, token_of

#: Query parameters a route needs to answer at all.
QUERY = {"/api/v1/prices/explain": {"at": (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT12:00:00Z")}}
#: Routes that hold no one's data, or only one's own (token: checked below).
PUBLIC_OR_OWN = {"/api/v1/auth/token", "/api/v1/prices", "/api/v1/prices/explain"}
#: Public tariff feeds: a plan's prices only, served without a login (evcc reads them).
PUBLIC = {"/api/v1/tariff/{plan}/evcc"}
#: Every API path of the spec, by how it is checked.
WITH_PARAMS = {"/api/v1/connections/{ean}/intervals", "/api/v1/invoices/{number}", "/api/v1/invoices/{number}.pdf",
               "/api/v1/invoices/{number}.xml"}
LISTS = {"/api/v1/me", "/api/v1/invoices"}
PAGES_WITH_PARAMS = {"/invoices/{number}", "/invoices/{number}.pdf", "/invoices/{number}.xml"}
OPERATOR_PAGES = {"/operator", "/grid"}
#: Pages of one's own data only, without a parameter: what B gets there holds nothing of A's.
OWN_PAGES = {"/", "/invoices", "/learn", "/performance", "/alerts", "/community", "/export", "/export/readings.csv",
             "/export/readings.json", "/export/invoices.json", "/export/costs.json", "/export/prices.csv"}
OPEN_PAGES = {"/login"}


@pytest.fixture
def world(engine, tmp_path):
    return build_world(engine, tmp_path)


def _fill(path: str, ean: str, number: str) -> str:
    return path.replace("{ean}", ean).replace("{number}", number)


def login(client: TestClient, username: str) -> None:
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf": csrf},
                    follow_redirects=False)
    assert r.status_code == 303, r.text


def test_every_api_route_is_covered_and_isolated(world):
    app = create_app(world.engine, secret=b"s")
    paths = app.openapi()["paths"]
    assert set(paths) == WITH_PARAMS | LISTS | PUBLIC_OR_OWN | PUBLIC, "a new route: add it to this walk"
    client = TestClient(app)
    a, b = token_of(client, "user0"), token_of(client, "user1")
    a_ean, a_number = world.eans[0], world.invoices["p0"][0]
    a_marks = [a_ean, a_number, '"p0"', "Household 0", "p0@example.org"]
    for path, ops in paths.items():
        if "get" not in ops:
            assert set(ops) == {"post"} and path == "/api/v1/auth/token"
            continue
        url = _fill(path, a_ean, a_number)
        if path in PUBLIC:  # no login, and nothing of anyone's in it
            public = client.get(url.replace("{plan}", "nl-dynamic-2026"))
            assert public.status_code == 200 and not any(m in public.text for m in a_marks), path
            continue
        mine = client.get(url, params=QUERY.get(path), headers=a)
        assert mine.status_code == 200, (path, mine.text)  # the route works for its owner ...
        theirs = client.get(url, params=QUERY.get(path), headers=b)
        if path in WITH_PARAMS:
            assert theirs.status_code == 404, (path, theirs.status_code)  # ... and is not there for B
            assert a_ean not in theirs.text and a_number not in theirs.text
        else:
            assert theirs.status_code == 200, path
            assert not any(m in theirs.text for m in a_marks), (path, theirs.text[:300])
        assert client.get(url, params=QUERY.get(path)).status_code == 401  # and nobody's without a login
    as_b = client.post("/api/v1/auth/token", data={"username": "user1", "password": PASSWORD}).json()
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {as_b['access_token']}"}).json()
    assert me["participant"] == "p1" and me["connections"] == [world.eans[1]]
    grid = token_of(client, "greta")  # a grid user gets no household's intervals or invoices
    for path in WITH_PARAMS:
        assert client.get(_fill(path, a_ean, a_number), headers=grid).status_code == 404, path


def test_every_page_with_a_parameter_is_isolated(world):
    app = create_app(world.engine, secret=b"s")
    routes = [getattr(r, "path", "") for r in (*pages_module.routes(), *app.routes)]  # every page module's
    assert "/invoices/{number}" in routes and "/static/{name}" in routes
    pages = {p for p in routes if "{" in p and not p.startswith(("/api/", "/static/"))}
    assert pages == PAGES_WITH_PARAMS, "a new page with a parameter: add it to this walk"
    a_number = world.invoices["p0"][0]
    owner, other = TestClient(app), TestClient(app)
    login(owner, "user0")
    login(other, "user1")
    for path in sorted(pages):
        url = _fill(path, "", a_number)
        assert owner.get(url).status_code == 200, path
        theirs = other.get(url)
        assert theirs.status_code == 404 and "Household 0" not in theirs.text, path
    for path in OPERATOR_PAGES:  # community-wide pages are not a participant's
        assert other.get(path).status_code == 404, path
    listing = other.get("/invoices").text
    assert a_number not in listing and world.invoices["p1"][0] in listing
    insight = other.get("/").text
    assert "Household 0" not in insight and world.eans[0] not in insight


def test_every_page_of_ones_own_data_is_isolated(world):
    app = create_app(world.engine, secret=b"s")
    gets = {r.path for r in pages_module.routes() if "GET" in getattr(r, "methods", set()) and "{" not in r.path}
    assert gets == OWN_PAGES | OPERATOR_PAGES | OPEN_PAGES, "a new page: add it to this walk"
    a_ean, a_number = world.eans[0], world.invoices["p0"][0]
    a_marks = [a_ean, a_number, "Household 0", "p0@example.org"]
    owner, other, grid = TestClient(app), TestClient(app), TestClient(app)
    login(owner, "user0")
    login(other, "user1")
    login(grid, "greta")
    for path in sorted(OWN_PAGES):
        assert owner.get(path).status_code == 200, path
        theirs = other.get(path)
        assert theirs.status_code == 200 and not any(m in theirs.text for m in a_marks), path
        assert TestClient(app).get(path, follow_redirects=False).status_code == 303, path  # nobody's without a login
        if path != "/":  # the grid user's home redirects to /grid
            assert grid.get(path).status_code in (200, 404) and a_ean not in grid.get(path).text, path
    assert a_ean in owner.get("/export/readings.csv").text
