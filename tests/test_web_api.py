"""The JSON API: token flow, /me, intervals, prices, invoices (one, list, PDF), 401 and 422."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import BytesIO
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import Engine, select

from communities import HEAD
from communities import member as shared_member
from kwartier.ids import make_ean18
from kwartier.services.billing import bill
from kwartier.services.community import load_community
from kwartier.services.imports import import_prices, import_readings
from kwartier.services.settle import settle
from kwartier.store import schema
from kwartier.timegrid import floor_to_grid, interval_starts, local_period_bounds
from kwartier.web.app import create_app
from kwartier.web.auth import create_user

PASSWORD = "correct horse battery"


def member(i: int, ean: str) -> str:
    return shared_member(i, ean, valid_from="2020-01-01")


@dataclass
class World:
    engine: Engine
    eans: list[str]
    period: str
    invoices: dict[str, list[str]]  # participant -> its invoice numbers
    readings: dict[str, pl.DataFrame]  # EAN -> what was imported (interval_start, import_wh, export_wh)


def build_world(engine: Engine, tmp_path: Path, n: int = 2) -> World:
    """A community of ``n`` households with a settled, billed last month and readings up to now."""
    eans = [make_ean18(f"871000{i:011d}") for i in range(n)]
    (tmp_path / "c.toml").write_text(HEAD + "".join(member(i, e) for i, e in enumerate(eans)))
    load_community(engine, tmp_path / "c.toml")
    now = datetime.now(UTC)
    this_month = now.astimezone().date().replace(day=1)
    first = (this_month - timedelta(days=1)).replace(day=1)
    start, _ = local_period_bounds(first - timedelta(days=10), this_month)
    _, price_end = local_period_bounds(now.date(), now.date() + timedelta(days=3))
    starts = interval_starts(start, price_end)
    hours = starts.dt.hour().to_numpy().astype(float)
    pl.DataFrame({"timestamp": starts.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "price_eur_per_mwh": [f"{p:.2f}" for p in 90 + 50 * np.sin(hours / 24 * 6.28)]}
                 ).write_csv(tmp_path / "prices.csv")
    import_prices(engine, tmp_path / "prices.csv")
    rng = np.random.default_rng(7)
    upto = starts.filter(starts < floor_to_grid(now))
    readings = {}
    for k, ean in enumerate(eans):
        frame = pl.DataFrame({"interval_start": upto, "import_wh": rng.integers(20, 400 + 100 * k, upto.len()),
                              "export_wh": rng.integers(0, 50, upto.len())})
        frame.select(pl.col("interval_start").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("timestamp"), "import_wh",
                     "export_wh").write_csv(tmp_path / f"{ean}.csv")
        import_readings(engine, tmp_path / f"{ean}.csv", ean)
        readings[ean] = frame
    period = first.strftime("%Y-%m")
    settle(engine, period)
    bill(engine, period, None, today=this_month)
    with engine.connect() as conn:
        rows = conn.execute(select(schema.invoices.c.participant, schema.invoices.c.number)).all()
    invoices: dict[str, list[str]] = {}
    for participant, number in rows:
        invoices.setdefault(participant, []).append(number)
    for i in range(n):
        create_user(engine, f"user{i}", PASSWORD, "participant", f"p{i}")
    create_user(engine, "olga", PASSWORD, "operator")
    create_user(engine, "greta", PASSWORD, "grid", party="net")
    return World(engine, eans, period, invoices, readings)


def token_of(client: TestClient, username: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["access_token"]
    return {"Authorization": f"Bearer {body['access_token']}"}


@pytest.fixture
def world(engine, tmp_path) -> World:
    return build_world(engine, tmp_path)


@pytest.fixture
def client(world) -> TestClient:
    return TestClient(create_app(world.engine, secret=b"test-secret"))


def test_token_flow_me_and_401(client, world):
    assert client.post("/api/v1/auth/token", data={"username": "user0", "password": "wrong"}).status_code == 401
    assert client.post("/api/v1/auth/token", data={"username": "nobody", "password": PASSWORD}).status_code == 401
    assert client.get("/api/v1/me").status_code == 401
    bad = client.get("/api/v1/me", headers={"Authorization": "Bearer forged.token.value"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    me = client.get("/api/v1/me", headers=token_of(client, "user0")).json()
    assert me == {"username": "user0", "role": "participant", "participant": "p0", "name": "Household 0",
                  "connections": [world.eans[0]]}
    other_secret = TestClient(create_app(world.engine, secret=b"another"))  # a token is bound to its secret
    assert other_secret.get("/api/v1/me", headers=token_of(client, "user0")).status_code == 401


def test_intervals_are_the_stored_readings(client, world):
    auth = token_of(client, "user0")
    ean = world.eans[0]
    day = world.readings[ean]["interval_start"][200].date()
    r = client.get(f"/api/v1/connections/{ean}/intervals", params={"from": f"{day}T00:00:00Z",
                                                                   "to": f"{day}T06:00:00+00:00"}, headers=auth)
    assert r.status_code == 200, r.text
    got = r.json()
    expected = world.readings[ean].filter(
        (pl.col("interval_start") >= datetime(day.year, day.month, day.day, tzinfo=UTC))
        & (pl.col("interval_start") < datetime(day.year, day.month, day.day, 6, tzinfo=UTC)))
    assert len(got) == 24 == expected.height
    assert [g["start"] for g in got] == [ts.strftime("%Y-%m-%dT%H:%M:%SZ") for ts in expected["interval_start"]]
    assert [Decimal(str(g["import_kwh"])) for g in got] == [Decimal(w) / 1000 for w in expected["import_wh"]]
    assert [Decimal(str(g["export_kwh"])) for g in got] == [Decimal(w) / 1000 for w in expected["export_wh"]]
    assert {g["resolution"] for g in got} == {"PT15M"} and {g["status"] for g in got} == {"actual"}
    recent = client.get(f"/api/v1/connections/{ean}/intervals", headers=auth).json()  # default: the last 7 days
    assert 600 <= len(recent) <= 7 * 96 + 4


@pytest.mark.parametrize("params", [{"from": "yesterday"}, {"from": "2026-13-01"}, {"to": "2026-03-01T00:00"},
                                    {"from": "2026-01-01", "to": "2026-06-01"}, {"from": "2026-03-02",
                                                                                "to": "2026-03-01"}])
def test_bad_dates_are_422(client, world, params):
    r = client.get(f"/api/v1/connections/{world.eans[0]}/intervals", params=params,
                   headers=token_of(client, "user0"))
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_prices_of_a_day(client, world):
    auth = token_of(client, "user1")
    day = datetime.now(UTC).date() - timedelta(days=3)
    r = client.get("/api/v1/prices", params={"plan": "nl-dynamic-2026", "day": day.isoformat()}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["plan"] == "nl-dynamic-2026" and body["day"] == day.isoformat()
    assert len(body["quarters"]) in (92, 96, 100)
    assert {q["status"] for q in body["quarters"]} == {"fixed"}  # the day-ahead prices of 3 days ago are known
    assert all(Decimal(q["eur_per_kwh"]) > 0 for q in body["quarters"])
    default = client.get("/api/v1/prices", headers=auth).json()  # today, the user's own plan
    assert default["plan"] == "nl-dynamic-2026" and default["day"] == datetime.now(UTC).astimezone().date().isoformat()
    other = client.get("/api/v1/prices", params={"plan": "nl-dynamic-2027", "day": day.isoformat()},
                       headers=auth)  # a built-in plan that is nobody's contract is public too
    assert other.status_code == 200 and other.json()["plan"] == "nl-dynamic-2027"
    assert client.get("/api/v1/prices", params={"plan": "no-such-plan"}, headers=auth).status_code == 404
    assert client.get("/api/v1/prices").status_code == 401
    at = f"{day}T10:00:00Z"
    why = client.get("/api/v1/prices/explain", params={"plan": "nl-dynamic-2026", "at": at, "lang": "nl"},
                     headers=auth)
    assert why.status_code == 200 and why.json() and all(e["sentence"] for e in why.json())


def test_invoices_list_one_and_pdf(client, world):
    auth = token_of(client, "user0")
    listing = client.get("/api/v1/invoices", headers=auth).json()
    assert [i["number"] for i in listing] == world.invoices["p0"] and {i["participant"] for i in listing} == {"p0"}
    assert listing[0]["period"] == world.period and listing[0]["kind"] == "invoice"
    number = listing[0]["number"]
    one = client.get(f"/api/v1/invoices/{number}", headers=auth)
    assert one.status_code == 200
    doc = one.json()["invoice"]
    with world.engine.connect() as conn:
        stored = conn.execute(select(schema.invoices.c.total_cents).where(schema.invoices.c.number == number)).one()
    assert doc["number"] == number and doc["buyer"]["id"] == "p0"
    total = sum(int(ln["amount_cents"]) for ln in doc["lines"]) + sum(int(v["vat_cents"]) for v in doc["vat"])
    assert total == stored[0] == round(Decimal(listing[0]["total"]) * 100) and doc["lines"]
    pdf = client.get(f"/api/v1/invoices/{number}.pdf", headers=auth)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and "factur-x.xml" in PdfReader(BytesIO(pdf.content)).attachments
    xml = client.get(f"/api/v1/invoices/{number}.xml", headers=auth)
    assert xml.status_code == 200 and number.encode() in xml.content
    operator = client.get("/api/v1/invoices", headers=token_of(client, "olga")).json()
    assert sorted(i["number"] for i in operator) == sorted(n for ns in world.invoices.values() for n in ns)
    assert client.get("/api/v1/invoices", headers=token_of(client, "greta")).json() == []
    assert client.get("/api/v1/invoices/NO-SUCH-1", headers=auth).status_code == 404


def test_openapi_docs_are_served(client):
    assert client.get("/api/v1/docs").status_code == 200
    spec = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/auth/token" in spec["paths"] and "/login" not in spec["paths"]


def test_a_day_without_prices_is_empty_not_an_error(client, world):
    auth = token_of(client, "user1")
    long_ago = "2001-06-01"  # nothing published then and no history to forecast from
    r = client.get("/api/v1/prices", params={"plan": "nl-dynamic-2026", "day": long_ago}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["quarters"] == []
    far = (datetime.now(UTC).date() + timedelta(days=5)).isoformat()  # beyond a forecast's 48 h
    assert client.get("/api/v1/prices", params={"plan": "nl-dynamic-2026", "day": far}, headers=auth).status_code == 422
