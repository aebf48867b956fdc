"""Login rate limiting, and no secrets or personal data in the logs of a login, API calls, an import and a bill.

The log test runs the real server (uvicorn in a thread, its loggers left to propagate to pytest's
caplog) with the root logger, uvicorn's and kwartier's at DEBUG, over real HTTP: the page login, the
token flow, API calls, an invoice PDF; before that an import, a settle and a bill run in the same
capture. Nothing logged may hold a password, a password hash, a bearer token, a session or CSRF
cookie, the signing secret, a participant's e-mail address or name.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import select

from kwartier.store import open_store
from kwartier.store import schema as s
from kwartier.web.app import create_app
from kwartier.web.auth import LOGIN_FAILURES, LoginLimiter
from test_web_api import PASSWORD, build_world

PERSONAL = ["p0@example.org", "p1@example.org", "Household 0", "Household 1"]
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "kwartier", "fastapi", "starlette")


# --- login rate limiting -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ratelimit")
    engine = open_store(f"sqlite:///{folder / 'k.db'}")
    world = build_world(engine, folder)
    yield world
    engine.dispose()


def _token(client: TestClient, username: str, password: str):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/auth/token", data={"username": username, "password": password})


def _page_login(client: TestClient, username: str, password: str):  # type: ignore[no-untyped-def]
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
    return client.post("/login", data={"username": username, "password": password, "csrf": csrf},
                       follow_redirects=False)


def test_failed_logins_are_limited_even_with_the_right_password_after(portal):
    app = create_app(portal.engine, secret=b"rl")
    client = TestClient(app)
    for _ in range(LOGIN_FAILURES):
        assert _token(client, "user0", "wrong-password").status_code == 401
    blocked = _token(client, "user0", PASSWORD)  # the right password does not get through: no oracle
    assert blocked.status_code == 429 and "access_token" not in blocked.text
    assert 1 <= int(blocked.headers["retry-after"]) <= 300
    page = _page_login(client, "user0", PASSWORD)  # the page and the API share the count
    assert page.status_code == 429 and "kw_session" not in page.headers.get("set-cookie", "")
    assert page.headers["retry-after"]
    assert _token(client, "user1", PASSWORD).status_code == 200  # another account is not locked out


def test_page_failures_count_and_a_success_resets(portal):
    app = create_app(portal.engine, secret=b"rl")
    client = TestClient(app)
    for _ in range(LOGIN_FAILURES - 1):
        assert _page_login(client, "user1", "nope-nope").status_code == 401
    assert _page_login(client, "user1", PASSWORD).status_code == 303  # a success clears the failures
    for _ in range(LOGIN_FAILURES - 1):
        assert _token(client, "user1", "nope-nope").status_code == 401
    assert _token(client, "user1", PASSWORD).status_code == 200
    for _ in range(LOGIN_FAILURES):
        _token(client, "nobody", "whatever1")  # an unknown user is limited the same way (no user oracle)
    assert _token(client, "nobody", "whatever1").status_code == 429


def test_the_block_ends_after_the_window(portal, monkeypatch):
    from kwartier.web import auth

    now = [1000.0]  # the limiter's monotonic clock, moved by hand (a password check takes ~0.1-1 s)
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    app = create_app(portal.engine, secret=b"rl")
    app.state.limiter = LoginLimiter(failures=2, window_s=60)
    client = TestClient(app)
    assert [_token(client, "user0", "bad-password").status_code for _ in range(3)] == [401, 401, 429]
    now[0] += 59
    blocked = _token(client, "user0", PASSWORD)
    assert blocked.status_code == 429 and blocked.headers["retry-after"] == "2"
    now[0] += 1.5
    assert _token(client, "user0", PASSWORD).status_code == 200


# --- no secrets or personal data in the logs --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """uvicorn serving ``app`` in a thread, logging through the standard loggers (no config of its own)."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, log_level="debug",
                                access_log=True, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _everything_logged(caplog) -> str:  # type: ignore[no-untyped-def]
    """All records as text: formatted messages, raw arguments, exception text."""
    parts = []
    for r in caplog.records:
        parts += [r.name, r.getMessage(), repr(r.args), r.exc_text or "", str(getattr(r, "scope", ""))]
    return "\n".join(parts)


@pytest.mark.slow
def test_no_secret_or_personal_data_in_the_logs(tmp_path, caplog):
    for name in ("httpx", "httpcore"):  # the test's own HTTP client, not the server: it logs the headers it gets
        caplog.set_level(logging.WARNING, logger=name)
    for name in LOGGERS:  # last: set_level sets the capture handler's level too
        caplog.set_level(logging.DEBUG, logger=name)
    engine = open_store(f"sqlite:///{tmp_path / 'k.db'}")
    world = build_world(engine, tmp_path)  # a community load, imports, a settle and a bill run, logged
    app = create_app(engine)  # the store's own secret
    secrets_seen: list[str] = [PASSWORD]
    with Server(app) as base, httpx.Client(base_url=base, follow_redirects=True) as http:
        page = http.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert http.post("/login", data={"username": "user0", "password": "wrong password!", "csrf": csrf}
                         ).status_code == 401
        done = http.post("/login", data={"username": "user0", "password": PASSWORD, "csrf": csrf})
        assert done.status_code == 200 and done.url.path == "/"  # followed to the household page
        assert http.get("/api/v1/me").json()["name"] == "Household 0"  # the session works for the API too
        secrets_seen += [http.cookies["kw_session"], http.cookies["kw_csrf"], csrf]
        token = http.post("/api/v1/auth/token", data={"username": "user1", "password": PASSWORD}).json()
        secrets_seen.append(token["access_token"])
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        me = http.get("/api/v1/me", headers=auth)
        assert me.status_code == 200 and me.json()["name"] == "Household 1"
        number = world.invoices["p1"][0]
        assert http.get(f"/api/v1/invoices/{number}.pdf", headers=auth).status_code == 200
        assert http.get("/api/v1/me", headers={"Authorization": "Bearer forged.token"}).status_code == 401
    with engine.connect() as conn:
        secrets_seen += list(conn.execute(select(s.users.c.password_hash)).scalars())
        secrets_seen += [str(v) for v in conn.execute(select(s.settings.c.value)
                                                      .where(s.settings.c.key == "web_secret")).scalars()]
    engine.dispose()
    logged = _everything_logged(caplog)
    assert "GET /api/v1/me" in logged and "POST /login" in logged, "the capture did not see uvicorn's log"
    leaked = [x for x in secrets_seen if x and x in logged]
    where = sorted({r.name for r in caplog.records for x in leaked if x in r.getMessage() + repr(r.args)})
    assert not leaked, f"secrets in the log of {where}: {[x[:12] + '...' for x in leaked]}"
    personal = [x for x in PERSONAL if x in logged]
    assert not personal, f"personal data in the log: {personal}"


def test_sql_echo_does_not_log_parameters(tmp_path, caplog):
    """Turning on SQLAlchemy's statement log (INFO, what ``echo=True`` shows) must not put personal data in it.

    Statements are fine to log; their bound parameters (names, e-mail addresses, password hashes
    of ``users add`` and ``community load``) are not. The engine has to hide them.
    """
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    from communities import HEAD, member
    from kwartier.services.community import load_community
    from kwartier.web.auth import create_user

    engine = open_store(f"sqlite:///{tmp_path / 'k.db'}")
    (tmp_path / "c.toml").write_text(HEAD + member(0, "871687120058657526"))
    load_community(engine, tmp_path / "c.toml")
    create_user(engine, "user0", PASSWORD, "participant", "p0")
    with engine.connect() as conn:
        hashed = conn.execute(select(s.users.c.password_hash)).scalar_one()
    engine.dispose()
    logged = _everything_logged(caplog)
    assert "INSERT INTO users" in logged, "the capture did not see the statement log"
    assert hashed not in logged and "p0@example.org" not in logged and "Household 0" not in logged
