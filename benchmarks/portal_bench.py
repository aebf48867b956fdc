"""Portal load benchmark: p50/p95/p99 latency of the main pages with 50 logged-in users, measured with wrk.

It builds the 90-household demo database (``kwartier demo --no-serve --json`` in a temporary folder)
or reuses one (``--db``), adds one participant login per demo household (``bench-<participant>``,
up to ``--users``), starts ``kwartier serve`` (``--workers``, default 2 uvicorn worker processes) on
a free loopback port, logs every user in through the login form (CSRF and all), times each user's
first visit of each page (the cold page cache), and then, page by page, runs wrk with one thread
and one connection per user, each connection sending its own user's session cookie, for a fixed
time. A Lua script counts every response that is not 200, and every page that does not show the
connection's own user (``<span>user</span>`` on the pages, ``"participant":"id"`` in the invoice
list). It prints requests/s and p50/p95/p99 per page, first for one connection alone (the service
time) and then for all users at once, fails when any response was wrong, and stops the server.
With ``--profile`` it profiles one request of each page whose p95 is over the target in process
(cProfile around the app through Starlette's TestClient) and prints where the time goes.

    apt-get install -y wrk
    .venv/bin/python benchmarks/portal_bench.py
    .venv/bin/python benchmarks/portal_bench.py --db /tmp/demo/kwartier.db --seconds 10 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import json
import os
import pstats
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KWARTIER = [sys.executable, "-m", "kwartier.cli"]
PASSWORD = "bench-password-2026"
TARGET_P95_MS = 200.0
#: The main pages; optional ones are measured only when the server has them.
PAGES = ["/", "/invoices", "/performance", "/learn", "/alerts", "/api/v1/prices", "/api/v1/invoices"]
OPTIONAL = {"/performance", "/learn", "/alerts"}

LUA = r"""
local sessions = {SESSIONS}
local path = "{PATH}"
local count = 0
local threads = {}

function setup(thread)
  count = count + 1
  local s = sessions[(count - 1) % #sessions + 1]
  thread:set("cookie", s[1])
  thread:set("needle", s[2])
  table.insert(threads, thread)
end

function init(args)
  req = wrk.format("GET", path, {["Cookie"] = cookie, ["Accept-Language"] = "en"})
  responses, bad_status, wrong_user, last_bad = 0, 0, 0, 0
end

function request()
  return req
end

function response(status, headers, body)
  responses = responses + 1
  if status ~= 200 then
    bad_status = bad_status + 1
    last_bad = status
  elseif needle ~= "" and not string.find(body, needle, 1, true) then
    wrong_user = wrong_user + 1
  end
end

function done(summary, latency, requests)
  local n, bad, wrong, status = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    if t:get("last_bad") ~= 0 then status = t:get("last_bad") end
    n = n + t:get("responses")
    bad = bad + t:get("bad_status")
    wrong = wrong + t:get("wrong_user")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"responses": %d, "bad_status": %d, "wrong_user": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "bad_code": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, n, bad, wrong, e.connect, e.read, e.write, e.timeout, status))
end
"""


@dataclass(frozen=True)
class Session:
    username: str
    participant: str
    cookie: str  # the Cookie header a browser would send after logging in


@dataclass(frozen=True)
class Result:
    page: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    wrong: int  # responses that were not 200, did not show their own user, or failed (timeouts, resets)

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_demo(folder: Path) -> Path:
    """The demo database built by ``kwartier demo`` in ``folder`` (about 30 s)."""
    t0 = time.perf_counter()
    run = subprocess.run([*KWARTIER, "demo", "--no-serve", "--json", "--out", str(folder / "demo")], cwd=folder,
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        sys.exit(f"kwartier demo failed ({run.returncode}): {run.stderr[-2000:]}")
    print(f"demo database built in {time.perf_counter() - t0:.0f} s")
    return folder / "kwartier.db"


def add_users(db_url: str, count: int) -> list[tuple[str, str]]:
    """One participant login per demo household (the first ``count``): (username, participant)."""
    from kwartier.services.community import current_definition
    from kwartier.store import open_store
    from kwartier.web.auth import create_user, get_user

    engine = open_store(db_url)
    participants = [p.id for p in current_definition(engine).spec.participants][:count]
    if len(participants) < count:
        sys.exit(f"the demo community has {len(participants)} participants, fewer than --users {count}")
    users = []
    for pid in participants:
        name = f"bench-{pid}"
        if get_user(engine, name) is None:
            create_user(engine, name, PASSWORD, "participant", pid)
        users.append((name, pid))
    engine.dispose()
    return users


def wait_for(base: str, server: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"kwartier serve stopped with {server.returncode}")
        try:
            with urllib.request.urlopen(base + "/login", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    sys.exit(f"the portal did not answer at {base} within {timeout_s:.0f} s")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def log_in(base: str, username: str, participant: str) -> Session:
    """Log in through the form as a browser does: get the CSRF token, post it with the password."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())
    with opener.open(base + "/login", timeout=30) as r:
        token = re.search(r'name="csrf" value="([^"]+)"', r.read().decode()).group(1)  # type: ignore[union-attr]
    form = urllib.parse.urlencode({"username": username, "password": PASSWORD, "csrf": token}).encode()
    try:
        opener.open(base + "/login", data=form, timeout=30)
        sys.exit(f"login of {username} did not redirect")
    except urllib.error.HTTPError as exc:
        if exc.code != 303:
            sys.exit(f"login of {username} answered {exc.code}")
    cookies = {c.name: c.value for c in jar}
    if "kw_session" not in cookies:
        sys.exit(f"login of {username} set no session cookie")
    return Session(username, participant, "; ".join(f"{k}={v}" for k, v in cookies.items()))


def needle(page: str, s: Session) -> str:
    """What the page must contain to be this user's own."""
    if page.startswith("/api/v1/invoices"):
        return f'"participant":"{s.participant}"'
    if page.startswith("/api/"):
        return ""
    return f"<span>{s.username}</span>"


def available(base: str, pages: list[str], s: Session) -> list[str]:
    """The pages the server has (optional ones may be missing); each checked once for this user."""
    found = []
    for page in pages:
        req = urllib.request.Request(base + page, headers={"Cookie": s.cookie, "Accept-Language": "en"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                body = r.read().decode()
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and page in OPTIONAL:
                print(f"{page}: not in this portal (404), skipped")
                continue
            sys.exit(f"{page} answered {exc.code} for {s.username}")
        if needle(page, s) not in body:
            sys.exit(f"{page} does not show {needle(page, s)!r} for {s.username}")
        found.append(page)
    return found


def first_visits(base: str, pages: list[str], sessions: list[Session]) -> dict[str, list[float]]:
    """Each user's first request of each page, one at a time: the latency of a cold page cache (ms)."""
    times: dict[str, list[float]] = {p: [] for p in pages}
    for s in sessions:
        for page in pages:
            req = urllib.request.Request(base + page, headers={"Cookie": s.cookie, "Accept-Language": "en"})
            t0 = time.perf_counter()
            with urllib.request.urlopen(req, timeout=60) as r:
                r.read()
            times[page].append((time.perf_counter() - t0) * 1000)
    return times


def lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_wrk(wrk: str, base: str, page: str, sessions: list[Session], seconds: float, work: Path) -> Result:
    """wrk with one thread and one connection per session, for ``seconds``, against one page."""
    table = "{" + ", ".join(f"{{{lua_string(s.cookie)}, {lua_string(needle(page, s))}}}" for s in sessions) + "}"
    script = work / f"page-{len(sessions)}.lua"
    script.write_text(LUA.replace("{SESSIONS}", table).replace("{PATH}", page))
    n = len(sessions)
    run = subprocess.run([wrk, f"-t{n}", f"-c{n}", f"-d{seconds:g}s", "--timeout", "30s", "--latency", "-s",
                          str(script), base], capture_output=True, text=True, check=False,
                         timeout=seconds + 120)
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if run.returncode != 0 or line is None:
        sys.exit(f"wrk failed on {page}: {run.stdout[-1500:]}{run.stderr[-1500:]}")
    d = json.loads(line[len("BENCH "):])
    failed = d["connect"] + d["read"] + d["write"] + d["timeout"]
    if failed:
        print(f"  {page}: {failed} socket errors/timeouts ({d})")
    wrong = d["bad_status"] + d["wrong_user"] + failed
    if d["requests"] == 0:
        print(f"  {page}: no response completed within {seconds:g} s")
    if d["bad_status"] or d["wrong_user"]:
        print(f"  {page}: {d['bad_status']} responses not 200 (e.g. {d['bad_code']}), "
              f"{d['wrong_user']} not showing their own user")
    return Result(page, n, d["requests"], d["duration_us"] / 1e6, d["p50_us"] / 1e3, d["p95_us"] / 1e3,
                  d["p99_us"] / 1e3, d["max_us"] / 1e3, wrong)


def print_table(title: str, results: list[Result]) -> None:
    print(f"\n{title}")
    print(f"{'page':<20}{'conns':>6}{'requests':>10}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'max ms':>9}{'wrong':>7}")
    for r in results:
        print(f"{r.page:<20}{r.connections:>6}{r.requests:>10}{r.per_s:>9.1f}{r.p50_ms:>9.1f}{r.p95_ms:>9.1f}"
              f"{r.p99_ms:>9.1f}{r.max_ms:>9.1f}{r.wrong:>7}")


def profile(db_url: str, page: str, username: str, top: int) -> None:
    """cProfile around the page's handler, called directly in this thread (after one warm-up call).

    The handler runs outside the ASGI stack (Starlette would run it in a worker thread, out of the
    profiler's sight): no routing, no cookies parsing, no response-model validation for the API.
    """
    from starlette.requests import Request

    from kwartier.store import open_store
    from kwartier.web.app import create_app
    from kwartier.web.auth import get_user

    app = create_app(open_store(db_url))
    user = get_user(app.state.engine, username)
    cookie = f"kw_session={app.state.signer.session(username)}".encode()
    from kwartier.web import api, pages

    route = next(r for r in [*api.router.routes, *pages.routes()]
                 if getattr(r, "path", None) == page and "GET" in (getattr(r, "methods", None) or ()))
    endpoint = route.endpoint  # type: ignore[attr-defined]

    def call() -> int:
        scope = {"type": "http", "method": "GET", "path": page, "raw_path": page.encode(), "query_string": b"",
                 "headers": [(b"cookie", cookie), (b"accept-language", b"en")], "app": app, "scheme": "http",
                 "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "root_path": ""}
        kwargs = {"request": Request(scope)}
        if "user" in inspect.signature(endpoint).parameters:
            kwargs["user"] = user
        out = endpoint(**kwargs)
        return int(getattr(out, "status_code", 200))

    call()  # warm-up: caches, lazy imports, templates
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    status = call()
    prof.disable()
    total_ms = (time.perf_counter() - t0) * 1e3
    print(f"\nprofile of {page} ({endpoint.__module__}.{endpoint.__name__}) as {username}: {status}, "
          f"{total_ms:.0f} ms; cumulative ms per function:")
    rows = []
    for (file, line, func), (_, calls, _tt, ct, _) in pstats.Stats(prof).stats.items():  # type: ignore[attr-defined]
        own = "/kwartier/" in file
        where = file.split("/kwartier/", 1)[1] if own else Path(file).name
        rows.append((ct * 1e3, calls, f"{where}:{line}:{func}", own))
    for label, keep in (("kwartier", True), ("libraries", False)):
        print(f"  {label}:")
        for ms, calls, where, _own in sorted((r for r in rows if r[3] == keep), reverse=True)[:top]:
            print(f"    {ms:8.1f} ms {calls:>7} calls  {where}")


def drain(base: str, limit_s: float = 300) -> None:
    """Wait until the server has worked off the requests still queued when wrk stopped."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        with urllib.request.urlopen(base + "/login", timeout=limit_s) as r:
            r.read()
        if time.perf_counter() - t0 < 0.05:
            return
        time.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", type=Path, help="an existing demo database (SQLite file); default: build one")
    ap.add_argument("--users", type=int, default=50, help="concurrent users, one connection each")
    ap.add_argument("--seconds", type=float, default=30.0, help="load time per page with all users")
    ap.add_argument("--alone-seconds", type=float, default=3.0, help="time per page with one connection")
    ap.add_argument("--warm-seconds", type=float, default=5.0,
                    help="unmeasured load per page before the measured run (fills every worker's page cache)")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (kwartier serve --workers)")
    ap.add_argument("--pages", nargs="+", help="only these pages (default: all main pages)")
    ap.add_argument("--profile", action="store_true", help=f"profile pages with p95 > {TARGET_P95_MS:.0f} ms")
    args = ap.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    with tempfile.TemporaryDirectory(prefix="kwartier-portal-bench-") as tmp:
        work = Path(tmp)
        db = args.db.resolve() if args.db else build_demo(work)
        db_url = f"sqlite:///{db}"
        users = add_users(db_url, args.users)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "KWARTIER_DATABASE_URL": db_url}
        log = (work / "serve.log").open("wb")
        server = subprocess.Popen([*KWARTIER, "--db", db_url, "serve", "--host", "127.0.0.1", "--port", str(port),
                                   "--workers", str(args.workers)],
                                  cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(base, server)
            t0 = time.perf_counter()
            sessions = [log_in(base, name, pid) for name, pid in users]
            print(f"{len(sessions)} users logged in through the form in {time.perf_counter() - t0:.1f} s")
            pages = available(base, args.pages or PAGES, sessions[0])
            cold = first_visits(base, pages, sessions)
            alone, loaded = [], []
            for p in pages:
                alone.append(run_wrk(wrk, base, p, sessions[:1], args.alone_seconds, work))
                drain(base)
            for p in pages:
                if args.warm_seconds > 0:  # every worker sees every user before the measured run
                    run_wrk(wrk, base, p, sessions, args.warm_seconds, work)
                    drain(base)
                loaded.append(run_wrk(wrk, base, p, sessions, args.seconds, work))
                drain(base)
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()
            errors = (work / "serve.log").read_text(errors="replace")
            if "Traceback" in errors:
                print(f"the server logged errors:\n{errors[-3000:]}")
        print("\nfirst visit of each user (cold page cache, one request at a time):")
        for page, times in cold.items():
            times.sort()
            print(f"  {page:20s} median {times[len(times) // 2]:7.1f} ms   max {times[-1]:7.1f} ms")
        print_table("one connection alone (service time, warm):", alone)
        print_table(f"{len(sessions)} users at once, {args.seconds:g} s per page after {args.warm_seconds:g} s warm-up "
                    f"({args.workers} uvicorn worker{'s' if args.workers > 1 else ''}):", loaded)
        slow = [r.page for r in loaded if r.p95_ms > TARGET_P95_MS or r.requests == 0]
        print(f"\np95 target {TARGET_P95_MS:.0f} ms: " + (f"missed by {', '.join(slow)}" if slow else "met by all"))
        if args.profile:
            for page in slow:
                profile(db_url, page, sessions[0].username, top=14)
        wrong = sum(r.wrong for r in alone + loaded)
        if wrong:
            print(f"FAILED: {wrong} wrong or failed responses")
            return 1
        print("all responses 200 and showing their own user")
    return 0


if __name__ == "__main__":
    sys.exit(main())
