"""Seats (R7/R8) over PostgreSQL while the subscription keeps count of full members' seats.

An invite reads that counter instead of counting the account's members, so the
counter must equal the real count after every path that adds or frees a seat,
the last seat must still go to exactly one of two racing admins, and a counter
that ran high must never make anyone pay.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text, update

from provisioning.accounts.models import Account
from provisioning.billing.models import BillingEvent, Subscription
from provisioning.billing.seats import seats_in_use
from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.core.migrate import upgrade
from provisioning.core.models import utcnow
from provisioning.core.security import invitation_token
from provisioning.members.models import Invitation, Membership
from tests.conftest import AdminAccount, Stack, activate, deactivate
from tests.support.imports import people_csv, run_import
from tests.support.servers import PostgresServer

TODAY = utcnow().date()


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack()  # the import needs a worker


def fresh_email(prefix: str = "seat") -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}@example.com"


def counted_and_real(account_id: int) -> tuple[int, int]:
    """The subscription's counter, and the full members invited or active, counted."""
    with session_scope() as session:
        counter = session.scalars(select(Subscription.full_seats_taken)
                                  .where(Subscription.account_id == account_id)).one()
        real = session.scalar(select(func.count()).select_from(Membership).where(
            Membership.account_id == account_id, Membership.user_type == "full",
            Membership.status.in_(("invited", "active")))) or 0
    return counter, real


def assert_counter_true(account: AdminAccount, expected: int) -> None:
    assert counted_and_real(account.id) == (expected, expected)


def subscription_of(account_id: int) -> tuple[int, list[int]]:
    """Purchased seats, and the quantity of each seat purchase, oldest first."""
    with session_scope() as session:
        purchased = session.scalars(select(Subscription.seats_purchased)
                                    .where(Subscription.account_id == account_id)).one()
        bought = session.scalars(select(BillingEvent.quantity).where(
            BillingEvent.account_id == account_id, BillingEvent.kind == "seats_added")
            .order_by(BillingEvent.id)).all()
    return purchased, list(bought)


def invited(stack: Stack, admin: AdminAccount, **payload: Any) -> int:
    answer = stack.invite(admin, **payload)
    assert answer.status_code == 201, answer.json
    return int(answer.json["id"])


def accept(stack: Stack, member_id: int) -> None:
    with session_scope() as session:
        nonce = session.scalars(select(Invitation.token_nonce)
                                .where(Invitation.membership_id == member_id)).one()
    token = invitation_token(settings().secret_key, nonce)
    accepted = stack.api.simulate_post(f"/v1/invitations/{token}/accept",
                                       json={"password": "a good password"})
    assert accepted.status_code == 200, accepted.json


def revoke(stack: Stack, admin: AdminAccount, member_id: int) -> None:
    revoked = stack.api.simulate_delete(f"/v1/accounts/{admin.id}/users/{member_id}/invitation",
                                        headers=admin.headers)
    assert revoked.status_code == 200, revoked.json


def allow_seasonal_users(account: AdminAccount) -> None:
    with session_scope() as session:
        session.execute(update(Account).where(Account.id == account.id).values(seasonal_seats=5))


def race(stack: Stack, admin: AdminAccount, count: int,
         payloads: list[dict[str, Any]] | None = None) -> list[int]:
    """``count`` invitations (of ``payloads``, else plain ones) sent at the same moment;
    their status codes, sorted."""
    payloads = payloads or [{} for _ in range(count)]
    barrier = threading.Barrier(count)
    answers: list[int] = [0] * count

    def invite(index: int) -> None:
        barrier.wait()
        answers[index] = stack.invite(admin, email=fresh_email("race"),
                                      **payloads[index]).status_code

    threads = [threading.Thread(target=invite, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(answers)


def test_the_counter_equals_the_real_count_after_every_path(stack: Stack):
    admin = stack.create_account(seats=50)
    allow_seasonal_users(admin)
    assert_counter_true(admin, 1)  # the first admin

    first, second, third = (invited(stack, admin, email=fresh_email()) for _ in range(3))
    assert_counter_true(admin, 4)
    free = invited(stack, admin, email=fresh_email("free"), user_type="free")
    invited(stack, admin, email=fresh_email("season"), user_type="seasonal",
            seasonal_start=str(TODAY), seasonal_end=str(TODAY + timedelta(days=30)))
    assert_counter_true(admin, 4)  # free never holds a seat; seasonal ones are counted live

    accept(stack, first)  # invited -> active: still one seat
    assert_counter_true(admin, 4)
    revoke(stack, admin, second)
    assert_counter_true(admin, 3)
    revoke(stack, admin, free)
    assert_counter_true(admin, 3)

    with session_scope() as session:  # expiry keeps the member invited, and its seat
        session.execute(update(Invitation).where(Invitation.membership_id == third)
                        .values(expires_at=utcnow()))
    assert_counter_true(admin, 3)

    body, _ = people_csv(5)
    assert run_import(stack, admin, body)["summary"]["created"] == 5
    assert_counter_true(admin, 8)


def test_paid_plan_admins_racing_past_the_purchased_seats_each_buy_what_they_take(
        stack: Stack):
    admin = stack.create_account(plan="base", seats=3)  # the admin and two free seats
    assert race(stack, admin, 6) == [201] * 6
    purchased, bought = subscription_of(admin.id)
    assert purchased == 7 and sum(bought) == 4
    assert_counter_true(admin, 7)


def test_a_seat_freed_by_a_revoke_goes_to_exactly_one_of_the_racing_admins(stack: Stack):
    trial = stack.create_account(plan="trial", seats=3)
    invited(stack, trial, email=fresh_email())
    pending = invited(stack, trial, email=fresh_email())
    revoke(stack, trial, pending)
    assert race(stack, trial, 5) == [201, 402, 402, 402, 402]
    assert_counter_true(trial, 3)


def test_a_seasonal_member_inside_its_window_takes_a_seat_the_counter_does_not_hold(
        stack: Stack):
    trial = stack.create_account(plan="trial", seats=2)
    allow_seasonal_users(trial)
    window = {"seasonal_start": str(TODAY - timedelta(days=1)),
              "seasonal_end": str(TODAY + timedelta(days=1))}
    later = {"seasonal_start": str(TODAY + timedelta(days=10)),
             "seasonal_end": str(TODAY + timedelta(days=20))}
    invited(stack, trial, email=fresh_email("season"), user_type="seasonal", **window)
    refused = stack.invite(trial, email=fresh_email())
    assert refused.status_code == 402 and refused.json["code"] == "seat_limit"
    assert refused.json["errors"][0]["code"] == "seat_limit_trial"
    invited(stack, trial, email=fresh_email("later"), user_type="seasonal", **later)
    assert_counter_true(trial, 1)


def test_the_last_seat_goes_to_one_of_a_seasonal_and_a_full_member_invited_at_once(
        stack: Stack):
    window = {"user_type": "seasonal", "seasonal_start": str(TODAY),
              "seasonal_end": str(TODAY + timedelta(days=1))}
    for _ in range(5):
        trial = stack.create_account(plan="trial", seats=2)  # the admin and one free seat
        allow_seasonal_users(trial)
        assert race(stack, trial, 2, [window, {}]) == [201, 402]
        with session_scope() as session:
            assert seats_in_use(session, trial.id, TODAY) == 2


def test_seasonal_members_keep_their_seats_when_the_contract_drops_its_seasonal_seats(
        stack: Stack):
    trial = stack.create_account(plan="trial", seats=2)
    allow_seasonal_users(trial)
    invited(stack, trial, email=fresh_email("season"), user_type="seasonal",
            seasonal_start=str(TODAY), seasonal_end=str(TODAY + timedelta(days=1)))
    with session_scope() as session:
        session.execute(update(Account).where(Account.id == trial.id).values(seasonal_seats=0))
    refused = stack.invite(trial, email=fresh_email())
    assert refused.status_code == 402 and refused.json["code"] == "seat_limit"
    assert refused.json["errors"][0]["code"] == "seat_limit_trial"


def test_a_counter_that_ran_high_makes_nobody_pay_and_starts_over_from_the_truth(
        stack: Stack):
    admin = stack.create_account(plan="base", seats=5)
    invited(stack, admin, email=fresh_email())
    with session_scope() as session:  # as if a path had freed seats without lowering it
        session.execute(update(Subscription).where(Subscription.account_id == admin.id)
                        .values(full_seats_taken=40))
    invited(stack, admin, email=fresh_email())
    assert subscription_of(admin.id) == (5, [])
    assert_counter_true(admin, 3)


def test_on_sqlite_the_counter_and_the_seat_rules_hold_alike(stack: Stack, tmp_path: Path):
    previous = activate({"PROVISIONING_DATABASE_URL": f"sqlite:///{tmp_path / 'seats.sqlite3'}"})
    try:
        upgrade()
        trial = stack.create_account(plan="trial", seats=2)
        invited(stack, trial, email=fresh_email())
        assert stack.invite(trial, email=fresh_email()).status_code == 402
        invited(stack, trial, email=fresh_email("free"), user_type="free")
        assert_counter_true(trial, 2)
        paid = stack.create_account(plan="base", seats=1)
        member = invited(stack, paid, email=fresh_email())
        assert subscription_of(paid.id) == (2, [1])
        revoke(stack, paid, member)
        assert_counter_true(paid, 1)
    finally:
        deactivate(previous)


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_the_migration_starts_the_counter_from_the_members_already_there(
        database: str, postgres: PostgresServer, tmp_path: Path):
    url = (postgres.create_database(f"seats_{uuid.uuid4().hex[:6]}") if database == "postgresql"
           else f"sqlite:///{tmp_path / 'seats.sqlite3'}")
    upgrade(url, "0004")
    engine = create_engine(url)
    now = utcnow().isoformat()
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO accounts (id, name, default_language, seasonal_seats, created_at) "
            "VALUES (1, 'A', 'en', 1, :now), (2, 'B', 'en', 0, :now)"), {"now": now})
        connection.execute(text(
            "INSERT INTO roles (id, account_id, name, permissions, is_builtin) "
            "VALUES (1, 1, 'member', '[]', true), (2, 2, 'member', '[]', true)"))
        connection.execute(text(
            "INSERT INTO subscriptions (account_id, plan, period, seats_purchased, "
            "current_period_start, current_period_end) "
            "VALUES (1, 'base', 'monthly', 9, :now, :now), (2, 'base', 'monthly', 9, :now, :now)"),
            {"now": now})
        members = [("full", "invited"), ("full", "active"), ("full", "inactive"),
                   ("free", "active"), ("seasonal", "active")]
        for number, (user_type, status) in enumerate(members, start=1):
            connection.execute(text(
                "INSERT INTO identities (id, email, name, totp_enabled, created_at, updated_at) "
                "VALUES (:id, :email, '', false, :now, :now)"),
                {"id": number, "email": f"m{number}@example.com", "now": now})
            connection.execute(text(
                "INSERT INTO memberships (account_id, identity_id, role_id, user_type, status, "
                "language, created_at) VALUES (1, :id, 1, :user_type, :status, 'en', :now)"),
                {"id": number, "user_type": user_type, "status": status, "now": now})
    upgrade(url)
    with engine.connect() as connection:
        counters = dict(connection.execute(text(
            "SELECT account_id, full_seats_taken FROM subscriptions")).all())
    engine.dispose()
    assert counters == {1: 2, 2: 0}
