"""The community page: rules in force, the month's sharing (own row only for a member), proposals and voting."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from kwartier.services import governance
from kwartier.services.sharing import compute_sharing
from kwartier.store import open_store
from kwartier.timegrid import floor_to_grid
from kwartier.web import i18n
from kwartier.web.app import create_app
from test_web_api import build_world
from test_web_isolation import login


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("community")
    engine = open_store(f"sqlite:///{folder / 'kwartier.db'}")
    w = build_world(engine, folder)
    governance.found(engine)
    ahead = floor_to_grid(datetime.now(UTC)) + timedelta(days=10)
    change = {"price": {"rule": "uniform", "uniform_eur_per_kwh": "0.15"}}
    governance.propose(engine, "p0", "One community price", change, ahead)
    yield w
    engine.dispose()


def client_of(world, user: str) -> TestClient:
    c = TestClient(create_app(world.engine, secret=b"s"))
    login(c, user)
    return c


def _rows(html: str) -> list[str]:
    return re.findall(r"<tr><td>(p\d+)</td>", html)


def test_a_member_sees_the_rules_the_totals_and_only_its_own_sharing(world):
    page = client_of(world, "user1").get("/community?lang=en")
    assert page.status_code == 200
    assert "in proportion to consumption" in page.text and "halfway between feed-in and supply price" in page.text
    expected = compute_sharing(world.engine, world.period).to_json()
    assert _rows(page.text) == ["p1"]  # never another member's energy
    assert f"Shared energy, {world.period}" in page.text
    mine = next(m for m in expected["members"] if m["participant"] == "p1")
    row = re.search(r"<tr><td>p1</td>(.*?)</tr>", page.text, re.S).group(1)
    shown = re.findall(r'<td class="num">([^<]*)</td>', row)
    fields = ("production", "surplus", "consumption", "community", "complement")
    assert shown == [i18n.number(Decimal(mine[f + "_kwh"]), "en", 1) for f in fields]  # the member's own figures
    assert "One community price" in page.text


def test_the_operator_sees_every_member(world):
    page = client_of(world, "olga").get("/community?lang=en")
    expected = compute_sharing(world.engine, world.period).to_json()
    assert sorted(_rows(page.text)) == sorted(m["participant"] for m in expected["members"])


def test_a_member_votes_once_through_the_page(world):
    c = client_of(world, "user0")
    page = c.get("/community?lang=en").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert c.post("/community/vote", data={"proposal": 1, "choice": "no"}).status_code == 400  # no CSRF token
    r = c.post("/community/vote", data={"proposal": 1, "choice": "yes", "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    state = governance.show(world.engine)
    assert state["proposals"][0]["votes"] == {"p0": "yes"}
    after = c.get("/community?lang=en").text
    assert "You voted: yes." in after and "Yes 1, no 0, abstain 0." in after
    again = c.post("/community/vote", data={"proposal": 1, "choice": "no", "csrf": csrf})
    assert again.status_code == 409 and "a vote is final" in again.text
    assert governance.show(world.engine)["proposals"][0]["votes"] == {"p0": "yes"}


def test_the_grid_operator_has_no_community_page_and_cannot_vote(world):
    c = client_of(world, "greta")
    assert c.get("/community").status_code == 404
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/grid").text).group(1)
    assert c.post("/community/vote", data={"proposal": 1, "choice": "yes", "csrf": csrf}).status_code == 404
