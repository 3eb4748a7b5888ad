"""Login guessing is limited: per email and per client address, on Redis and on the database,
with the clock under the test's control; a TOTP code works once even when logins race."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pyotp
import pytest
from sqlalchemy import create_engine, select, update

from provisioning.access import limits
from provisioning.access.codes import seal_secret
from provisioning.access.models import LimitHit
from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.core.errors import NotAuthenticated, RateLimited
from provisioning.members.models import Identity
from tests.conftest import AdminAccount, Clock, Stack, activate, deactivate
from tests.support.servers import PostgresServer, RedisServer

PASSWORD = "correct horse battery"
WINDOW = 900


# --- the stores on their own ---------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> limits.Store:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return limits.RedisStore(server.url(0))
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'limits.sqlite3'}"
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres")
        url = postgres.create_database(f"t_limits_{uuid.uuid4().hex[:6]}")
    LimitHit.__table__.create(create_engine(url))  # type: ignore[attr-defined]
    return limits.DatabaseStore(url)


def test_a_key_is_refused_while_its_limit_lies_within_the_window(store: limits.Store,
                                                                 clock: Clock):
    limit = limits.Limit(3, 60)
    key, other = uuid.uuid4().hex, uuid.uuid4().hex
    for _ in range(2):
        limits.hit(store, key, limit)
        clock.advance(10)
    assert limits.retry_after(store, key, limit) is None
    limits.hit(store, key, limit)  # hits at 0, 10 and 20; now 20
    assert limits.retry_after(store, key, limit) == 40  # the first leaves at 60
    assert limits.retry_after(store, other, limit) is None
    clock.advance(40)
    assert limits.retry_after(store, key, limit) is None  # one more may try
    limits.hit(store, key, limit)
    assert limits.retry_after(store, key, limit) == 10  # now the hit at 10 must leave
    store.clear(key)
    assert limits.retry_after(store, key, limit) is None


def test_stored_keys_name_no_email_or_address() -> None:
    key = limits.limit_key("login-email", "ana@example.com")
    assert "ana" not in key and "example" not in key and len(key) == 40
    assert key != limits.limit_key("login-address", "ana@example.com")


# --- login over the API, on Redis (the stack's broker) and on the embedded default ------


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(worker=False)


def _login(api: falcon.testing.TestClient, email: str, password: str, *,
           remote: str = "198.51.100.1", forwarded: str | None = None,
           code: str | None = None) -> Any:
    body = {"email": email, "password": password} | ({"totp_code": code} if code else {})
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return api.simulate_post("/v1/auth/login", json=body, remote_addr=remote, headers=headers)


def _locks_after_five_failures(api: falcon.testing.TestClient, email: str, clock: Clock,
                               *, then: Any = None) -> None:
    for _ in range(5):
        assert _login(api, email, "wrong password").status_code == 401
    if then is not None:
        then()
    locked = _login(api, email, PASSWORD)
    assert locked.status_code == 429, locked.text
    assert locked.headers["content-type"].startswith("application/problem+json")
    assert 0 < int(locked.headers["retry-after"]) <= WINDOW
    assert locked.json["code"] == "rate_limited"
    clock.advance(WINDOW - 1)
    assert _login(api, email, PASSWORD).status_code == 429, "still within the window"
    clock.advance(2)
    assert _login(api, email, PASSWORD).status_code == 200


def test_five_failures_lock_an_email_even_for_the_right_password(stack: Stack, clock: Clock):
    assert isinstance(limits.store(), limits.RedisStore)
    admin = stack.create_account()
    _locks_after_five_failures(stack.api, admin.email, clock)


def test_a_success_forgets_the_failures_before_it(stack: Stack, clock: Clock):
    admin = stack.create_account()
    for _ in range(4):
        assert _login(stack.api, admin.email, "wrong password").status_code == 401
    assert _login(stack.api, admin.email, PASSWORD).status_code == 200
    for _ in range(4):
        assert _login(stack.api, admin.email, "wrong password").status_code == 401
    assert _login(stack.api, admin.email, PASSWORD).status_code == 200


def test_unknown_emails_are_limited_alike_and_answer_alike(stack: Stack, clock: Clock):
    nobody = f"nobody.{uuid.uuid4().hex[:8]}@example.com"
    answers = [_login(stack.api, nobody, "guess") for _ in range(6)]
    assert [a.status_code for a in answers] == [401] * 5 + [429]
    assert answers[0].json["code"] == "invalid_credentials"


def test_an_unknown_email_costs_a_password_check(stack: Stack, clock: Clock):
    admin = stack.create_account()

    def seconds(email: str) -> float:
        started = time.perf_counter()
        assert _login(stack.api, email, "wrong password", remote=uuid.uuid4().hex).status_code \
            == 401
        return time.perf_counter() - started

    known = min(seconds(admin.email) for _ in range(3))
    unknown = min(seconds(f"nobody.{uuid.uuid4().hex[:8]}@example.com") for _ in range(3))
    assert unknown > known / 3, (known, unknown)  # argon2 runs for both


def test_an_overlong_password_is_refused_without_hashing_it(stack: Stack, clock: Clock):
    admin = stack.create_account()
    answer = _login(stack.api, admin.email, "x" * 100_000)
    assert answer.status_code == 401 and answer.json["code"] == "invalid_credentials"


def test_one_address_has_a_larger_budget_across_emails(stack: Stack, clock: Clock,
                                                       monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PROVISIONING_LOGIN_FAILURES_PER_ADDRESS", "8")
    settings.cache_clear()
    try:
        office, elsewhere = "203.0.113.10", "203.0.113.99"
        for _ in range(8):  # eight people, one wrong password each
            email = f"guess.{uuid.uuid4().hex[:8]}@example.com"
            assert _login(stack.api, email, "wrong", remote=office).status_code == 401
        admin = stack.create_account()
        assert _login(stack.api, admin.email, PASSWORD, remote=office).status_code == 429
        assert _login(stack.api, admin.email, PASSWORD, remote=elsewhere).status_code == 200
    finally:
        settings.cache_clear()


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(stack: Stack, clock: Clock,
                                                            monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PROVISIONING_LOGIN_FAILURES_PER_ADDRESS", "3")
    settings.cache_clear()
    try:
        # Untrusted: a client rotating its own X-Forwarded-For is still one address.
        attacker = "192.0.2.50"
        for n in range(3):
            email = f"guess.{uuid.uuid4().hex[:8]}@example.com"
            assert _login(stack.api, email, "wrong", remote=attacker,
                          forwarded=f"10.9.9.{n}").status_code == 401
        admin = stack.create_account()
        assert _login(stack.api, admin.email, PASSWORD, remote=attacker,
                      forwarded="10.9.9.200").status_code == 429

        # Behind a trusted proxy each client has its own budget, whatever it prepends.
        monkeypatch.setenv("PROVISIONING_TRUSTED_PROXIES", "10.0.0.0/8")
        settings.cache_clear()
        proxy = "10.1.1.1"
        for _ in range(3):
            email = f"guess.{uuid.uuid4().hex[:8]}@example.com"
            assert _login(stack.api, email, "wrong", remote=proxy,
                          forwarded="1.2.3.4, 198.51.100.7").status_code == 401
        assert _login(stack.api, admin.email, PASSWORD, remote=proxy,
                      forwarded="5.6.7.8, 198.51.100.7").status_code == 429
        assert _login(stack.api, admin.email, PASSWORD, remote=proxy,
                      forwarded="198.51.100.8").status_code == 200
    finally:
        settings.cache_clear()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[falcon.testing.TestClient, AdminAccount]]:
    """The embedded default: a SQLite file and the filesystem broker, no Redis."""
    from api.app import create_app
    from provisioning.accounts.workspaces import create_account
    from provisioning.core.migrate import upgrade

    previous = activate({"PROVISIONING_DATABASE_URL": f"sqlite:///{tmp_path / 'p.sqlite3'}",
                         "PROVISIONING_BROKER_URL": "filesystem://",
                         "PROVISIONING_VAR_DIR": str(tmp_path)})
    try:
        upgrade()
        email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
        with session_scope() as session:
            created = create_account(session, name="Embedded", admin_email=email,
                                     admin_password=PASSWORD, plan="base", seats=5)
        yield falcon.testing.TestClient(create_app()), AdminAccount(
            created.account_id, created.admin_token, email)
    finally:
        deactivate(previous)


def test_on_the_embedded_default_the_database_keeps_the_count(embedded: Any, clock: Clock):
    api, admin = embedded
    assert isinstance(limits.store(), limits.DatabaseStore)

    def stored_without_names() -> None:
        with session_scope() as session:
            stored = session.scalars(select(LimitHit.key)).all()
        assert len(stored) == 10, stored  # five per email, five per address
        assert not any("@" in key or "198.51" in key for key in stored)

    _locks_after_five_failures(api, admin.email, clock, then=stored_without_names)


# --- a code works once, even for logins racing with it (PostgreSQL) ---------------------


def test_twenty_logins_racing_with_one_code_let_one_in(stack: Stack, clock: Clock):
    from provisioning.access.auth import login

    admin = stack.create_account()
    secret = pyotp.random_base32()
    with session_scope() as session:
        session.execute(update(Identity).where(Identity.email == admin.email)
                        .values(totp_secret=seal_secret(secret), totp_enabled=True))
    code = pyotp.TOTP(secret).now()
    start = threading.Barrier(20)
    outcomes: list[str] = []

    def attempt(n: int) -> None:
        start.wait()
        try:
            with session_scope() as session:
                login(session, admin.email, PASSWORD, code, client=f"198.51.100.{n}")
            outcomes.append("in")
        except (NotAuthenticated, RateLimited) as refused:
            outcomes.append(refused.code)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("in") == 1, outcomes
    assert set(outcomes) - {"in"} <= {"totp_invalid", "rate_limited"}, outcomes
