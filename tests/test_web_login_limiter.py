"""The login limiter: per client, per account across clients, and bounded memory."""

from __future__ import annotations

from kwartier.web import auth
from kwartier.web.auth import ACCOUNT_FACTOR, LoginLimiter


def test_one_client_is_blocked_after_the_limit_and_a_success_clears_only_it():
    lim = LoginLimiter(failures=3, window_s=60)
    for _ in range(3):
        assert lim.retry_after("ann", "1.1.1.1") is None
        lim.failed("ann", "1.1.1.1")
    assert lim.retry_after("ann", "1.1.1.1") is not None and lim.retry_after("ann", "2.2.2.2") is None
    lim.succeeded("ann", "1.1.1.1")
    assert lim.retry_after("ann", "1.1.1.1") is None


def test_guessing_one_account_from_many_addresses_is_limited():
    lim = LoginLimiter(failures=3, window_s=60)
    for k in range(3 * ACCOUNT_FACTOR):  # two tries per address, never enough to block an address
        assert lim.retry_after("ann", f"10.0.0.{k // 2}") is None
        lim.failed("ann", f"10.0.0.{k // 2}")
    assert lim.retry_after("ann", "10.9.9.9") is not None  # a fresh address: the account is blocked
    assert lim.retry_after("bob", "10.9.9.9") is None  # other accounts are not


def test_expired_failures_are_dropped(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(auth, "PRUNE_AT", 10)
    lim = LoginLimiter(failures=3, window_s=60)
    for k in range(50):
        lim.failed(f"user{k}", "1.1.1.1")
    now[0] += 61
    lim.failed("last", "1.1.1.1")
    assert len(lim._seen) <= 12  # the expired keys went; only the newest remain
