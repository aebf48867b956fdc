"""Portal accounts and credentials: argon2id passwords, signed sessions and bearer tokens, CSRF, login rate limit."""

from __future__ import annotations

import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Engine, insert, select

from kwartier.store import schema

ROLES = ("participant", "operator", "grid")
SESSION_SALT = "kwartier.session"
TOKEN_SALT = "kwartier.api-token"
CSRF_SALT = "kwartier.csrf"
SESSION_SECONDS = 12 * 3600
TOKEN_SECONDS = 3600
LOGIN_FAILURES = 5  # allowed failed logins per (username, client) ...
LOGIN_WINDOW_SECONDS = 300  # ... within this window; the next attempt answers 429
SECRET_KEY = "web_secret"

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
#: A hash to verify against when the user does not exist, so both cases take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class UserError(ValueError):
    """A user that cannot be created (bad role, missing participant, taken name)."""


@dataclass(frozen=True)
class User:
    username: str
    role: str
    participant: str | None
    party: str | None


def create_user(engine: Engine, username: str, password: str, role: str, participant: str | None = None,
                *, party: str | None = None) -> User:
    """Store a new portal user with an argon2id hash of ``password``."""
    if role not in ROLES:
        raise UserError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    if role == "participant" and not participant:
        raise UserError("a participant user needs --participant (the participant id in the community file)")
    if role != "participant" and participant:
        raise UserError(f"a {role} user has no participant")
    if not username or len(username) > 80:
        raise UserError("a username has 1 to 80 characters")
    if len(password) < 8:
        raise UserError("a password has at least 8 characters")
    u = schema.users
    with engine.begin() as conn:
        if conn.execute(select(u.c.username).where(u.c.username == username)).first():
            raise UserError(f"user {username!r} exists already")
        conn.execute(insert(u).values(username=username, password_hash=_hasher.hash(password), role=role,
                                      participant=participant, party=party, created_at=datetime.now(UTC)))
    return User(username, role, participant, party)


def get_user(engine: Engine, username: str) -> User | None:
    u = schema.users
    with engine.connect() as conn:
        row = conn.execute(select(u.c.username, u.c.role, u.c.participant, u.c.party)
                           .where(u.c.username == username)).first()
    return User(row.username, row.role, row.participant, row.party) if row else None


def authenticate(engine: Engine, username: str, password: str) -> User | None:
    """The user when ``password`` is right, else None (same work whether the user exists or not)."""
    u = schema.users
    with engine.connect() as conn:
        row = conn.execute(select(u).where(u.c.username == username)).first()
    try:
        _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return User(row.username, row.role, row.participant, row.party) if row else None


def web_secret(engine: Engine) -> bytes:
    """The installation's signing secret: generated once and kept in the ``settings`` table."""
    s = schema.settings
    with engine.begin() as conn:
        row = conn.execute(select(s.c.value).where(s.c.key == SECRET_KEY)).first()
        if row is None:
            value = secrets.token_urlsafe(48)
            conn.execute(insert(s).values(key=SECRET_KEY, value=value))
            return value.encode()
    return str(row[0]).encode()


class Signer:
    """Signs and checks sessions, bearer tokens and CSRF tokens with one secret and separate salts."""

    def __init__(self, secret: bytes):
        self._session = URLSafeTimedSerializer(secret, salt=SESSION_SALT)
        self._token = URLSafeTimedSerializer(secret, salt=TOKEN_SALT)
        self._csrf = URLSafeTimedSerializer(secret, salt=CSRF_SALT)

    def session(self, username: str) -> str:
        return self._session.dumps({"u": username, "n": secrets.token_hex(8)})

    def session_user(self, cookie: str | None) -> str | None:
        return _loads(self._session, cookie, SESSION_SECONDS)

    def token(self, username: str) -> str:
        return self._token.dumps({"u": username})

    def token_user(self, token: str | None) -> str | None:
        return _loads(self._token, token, TOKEN_SECONDS)

    def new_csrf(self) -> str:
        return self._csrf.dumps(secrets.token_hex(16))

    def csrf_ok(self, cookie: str | None, form: str | None) -> bool:
        """Double submit: the form's token equals the cookie's, and the cookie is ours."""
        if not cookie or not form or not secrets.compare_digest(cookie, form):
            return False
        try:
            self._csrf.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:
            return False
        return True


def _loads(serializer: URLSafeTimedSerializer, value: str | None, max_age: int) -> str | None:
    if not value:
        return None
    try:
        data = serializer.loads(value, max_age=max_age)
    except BadSignature:  # includes SignatureExpired
        return None
    return data.get("u") if isinstance(data, dict) else None


ACCOUNT_FACTOR = 4  # failures from all clients together that block one account
ANY_CLIENT = "*"
PRUNE_AT = 10_000  # keys kept before expired ones are dropped


class LoginLimiter:
    """Failed logins in LOGIN_WINDOW_SECONDS, in memory (per server process): at most LOGIN_FAILURES per
    (username, client), and ACCOUNT_FACTOR times that per username from all clients together, so that
    guessing one account's password from many addresses is limited too. Expired entries are dropped,
    so the memory stays bounded by the failures of one window."""

    def __init__(self, failures: int = LOGIN_FAILURES, window_s: float = LOGIN_WINDOW_SECONDS):
        self.failures, self.window_s = failures, window_s
        self._seen: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        q = self._seen.get(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def _keys(self, username: str, client: str) -> tuple[tuple[tuple[str, str], int], ...]:
        return (((username, client), self.failures), ((username, ANY_CLIENT), self.failures * ACCOUNT_FACTOR))

    def retry_after(self, username: str, client: str) -> int | None:
        """Seconds to wait when the client or the account is blocked, else None."""
        now = time.monotonic()
        waits = [max(1, int(q[0] + self.window_s - now) + 1) for key, limit in self._keys(username, client)
                 if len(q := self._recent(key, now)) >= limit]
        return max(waits) if waits else None

    def failed(self, username: str, client: str) -> None:
        now = time.monotonic()
        if len(self._seen) > PRUNE_AT:
            for key in [k for k in self._seen if not self._recent(k, now)]:
                del self._seen[key]
        for key, _ in self._keys(username, client):
            self._seen.setdefault(key, deque()).append(now)

    def succeeded(self, username: str, client: str) -> None:
        """The client's count starts over; the account's (other clients' failures) does not."""
        self._seen.pop((username, client), None)
