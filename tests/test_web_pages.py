"""The pages: login with CSRF and rate limit, cookie flags, insight charts, language switch, invoices, grid."""

from __future__ import annotations

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from kwartier.web.app import create_app
from test_web_api import PASSWORD, build_world


@pytest.fixture
def world(engine, tmp_path):
    return build_world(engine, tmp_path)


def csrf_of(client: TestClient) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    return re.search(r'<input type="hidden" name="csrf" value="([^"]+)">', page.text).group(1)


def login(client: TestClient, username: str, password: str = PASSWORD):
    return client.post("/login", data={"username": username, "password": password, "csrf": csrf_of(client)},
                       follow_redirects=False)


def set_cookie(response, name: str) -> str:
    return next(h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}="))


def test_login_needs_the_csrf_token_and_sets_a_safe_cookie(world):
    client = TestClient(create_app(world.engine, secret=b"s"))
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    token = csrf_of(client)
    assert len(token) > 20
    forged = client.post("/login", data={"username": "user0", "password": PASSWORD, "csrf": token + "x"},
                         follow_redirects=False)
    assert forged.status_code == 400 and "kw_session" not in forged.headers.get("set-cookie", "")
    fresh = TestClient(create_app(world.engine, secret=b"s"))  # a token without its cookie is refused too
    assert fresh.post("/login", data={"username": "user0", "password": PASSWORD, "csrf": token},
                      follow_redirects=False).status_code == 400
    ok = login(client, "user0")
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    cookie = set_cookie(ok, "kw_session").lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    https = TestClient(create_app(world.engine, secret=b"s"), base_url="https://testserver")
    assert "secure" in set_cookie(login(https, "user0"), "kw_session").lower()
    assert client.post("/logout", data={"csrf": "wrong"}, follow_redirects=False).status_code == 400
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)
    out = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303 and client.get("/", follow_redirects=False).status_code == 303


def test_the_sixth_wrong_password_is_429(world):
    client = TestClient(create_app(world.engine, secret=b"s"))
    for _ in range(5):
        assert login(client, "user0", "wrong password").status_code == 401
    blocked = login(client, "user0", "wrong password")
    assert blocked.status_code == 429 and 0 < int(blocked.headers["retry-after"]) <= 300
    assert login(client, "user0").status_code == 429  # even the right password waits
    assert login(client, "user1").status_code == 303  # another user is not blocked
    api = client.post("/api/v1/auth/token", data={"username": "user0", "password": PASSWORD})
    assert api.status_code == 429 and "retry-after" in api.headers  # the API shares the limit


def test_insight_shows_the_charts_with_local_plotly(world):
    client = TestClient(create_app(world.engine, secret=b"s"))
    login(client, "user0")
    page = client.get("/")
    assert page.status_code == 200 and 'id="prices-chart"' in page.text and 'id="usage-chart"' in page.text
    assert '<script src="/static/plotly.min.js"' in page.text and "cdn" not in page.text.lower()
    data = json.loads(re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page.text,
                                re.S).group(1))
    statuses = {p["status"] for p in data["prices"]}
    assert statuses <= {"fixed", "forecast"} and len(data["prices"]) >= 92
    local = datetime.now(ZoneInfo("Europe/Amsterdam"))
    published = (local.hour, local.minute) >= (12, 45)  # tomorrow's day-ahead prices are known from 12:45
    assert ("forecast" in statuses) == (not published)
    assert len(data["usage"]["x"]) >= 600 and data["plan"] == "nl-dynamic-2026"
    assert world.period in page.text  # the last billed month's costs ...
    assert "nl-fixed-2026" in page.text  # ... compared with a fixed plan
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and b"plotly" in js.content[:2000].lower()
    assert "max-age=31536000" in js.headers["cache-control"] and "javascript" in js.headers["content-type"]
    assert client.get("/static/insight.js").status_code == 200 and client.get("/static/kwartier.css").status_code == 200
    assert client.get("/static/nope.js").status_code == 404


def test_the_language_switch_changes_the_headings(world):
    client = TestClient(create_app(world.engine, secret=b"s"), headers={"Accept-Language": "nl-NL,nl;q=0.9,en;q=0.5"})
    assert "<h1>Inloggen</h1>" in client.get("/login").text  # the browser's language by default
    login(client, "user0")
    assert "<h1>Inzicht</h1>" in client.get("/").text
    assert "<h1>Aperçu</h1>" in client.get("/?lang=fr").text
    assert "<h1>Aperçu</h1>" in client.get("/").text  # the choice is kept in a cookie
    assert "<h1>Invoices</h1>" in client.get("/invoices?lang=en").text
    assert client.get("/?lang=de").status_code == 200  # an unknown language is ignored


def test_invoice_downloads_are_ones_own(world):
    client = TestClient(create_app(world.engine, secret=b"s"))
    login(client, "user0")
    mine, theirs = world.invoices["p0"][0], world.invoices["p1"][0]
    listing = client.get("/invoices").text
    assert f'href="/invoices/{mine}.pdf"' in listing and f'href="/invoices/{mine}.xml"' in listing
    assert theirs not in listing
    html = client.get(f"/invoices/{mine}")
    assert html.status_code == 200 and mine in html.text and "Household 0" in html.text
    pdf = client.get(f"/invoices/{mine}.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    xml = client.get(f"/invoices/{mine}.xml")
    assert xml.status_code == 200 and b"urn:oasis:names:specification:ubl" in xml.content
    for suffix in ("", ".pdf", ".xml"):
        assert client.get(f"/invoices/{theirs}{suffix}").status_code == 404


def test_operator_sees_the_community(world):
    client = TestClient(create_app(world.engine, secret=b"s"))
    login(client, "olga")
    page = client.get("/operator")
    assert page.status_code == 200
    assert "Household 0" in page.text and "Household 1" in page.text and world.period in page.text
    listing = client.get("/invoices").text
    assert all(n in listing for ns in world.invoices.values() for n in ns)
    assert client.get("/", follow_redirects=False).headers["location"] == "/operator"


def test_grid_page_aggregates_only(engine, tmp_path):
    from kwartier.services.privacy import set_consent

    world = build_world(engine, tmp_path, n=5)
    client = TestClient(create_app(world.engine, secret=b"s"))
    login(client, "greta")
    assert client.get("/operator").status_code == 404 and client.get("/invoices").text.count("<tr>") == 0
    for i in range(4):
        set_consent(world.engine, f"p{i}", "grid", True, by=f"p{i}")
    assert 'id="grid-chart"' not in client.get("/grid").text  # four households agreed: not enough for a sum
    set_consent(world.engine, "p4", "grid", True, by="p4")
    page = client.get("/grid")
    assert page.status_code == 200 and 'id="grid-chart"' in page.text
    assert not any(ean in page.text for ean in world.eans) and "Household" not in page.text
    data = json.loads(re.search(r'id="grid-data">(.*?)</script>', page.text, re.S).group(1))
    last = len(data["x"]) - 1  # the last shown quarter is the sum over the five households
    expected = sum(int(f.filter(f["interval_start"] == f["interval_start"].max())["import_wh"][0])
                   for f in world.readings.values())
    assert round(data["import"][last] * 1000) == expected


def test_grid_page_hides_fewer_than_five_households(world):
    client = TestClient(create_app(world.engine, secret=b"s"))
    login(client, "greta")
    page = client.get("/grid")
    assert page.status_code == 200 and 'id="grid-chart"' not in page.text
    assert not any(ean in page.text for ean in world.eans)
