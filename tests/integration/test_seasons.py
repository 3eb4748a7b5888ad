"""Seasonal users (R10) over PostgreSQL, with a clock the test moves: the schedule flips them
at their window's edges in every account, once, whatever runs at the same time; a member
disabled by hand stays disabled; outside the window nobody logs in and no seat is taken."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from provisioning.billing.seats import seats_in_use
from provisioning.core.db import session_scope
from provisioning.core.models import AuditEntry
from provisioning.members.models import Membership
from provisioning.members.seasons import SeasonRun, apply_seasons, season_today
from tests.conftest import AdminAccount, Clock, Stack
from tests.support.members import PASSWORD, accept, fresh_email

DAY = 86400


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(worker=False)  # the schedule runs in the test, on its clock


def seasonal_account(seasonal_seats: int = 5) -> AdminAccount:
    from provisioning.accounts.workspaces import create_account

    email = f"admin-{uuid.uuid4().hex[:10]}@example.com"
    with session_scope() as session:
        made = create_account(session, name="Ski school", admin_email=email,
                              admin_password="correct horse battery", plan="base", seats=10,
                              seasonal_seats=seasonal_seats)
    return AdminAccount(made.account_id, made.admin_token, email)


def seasonal_member(stack: Stack, admin: AdminAccount, start: int, end: int, *,
                    joins: bool = True) -> tuple[int, str]:
    """A seasonal member whose window runs from ``start`` to ``end`` days from today."""
    today = season_today()
    email = fresh_email("season")
    invited = stack.invite(admin, email=email, user_type="seasonal", initial_password=PASSWORD,
                           seasonal_start=(today + timedelta(days=start)).isoformat(),
                           seasonal_end=(today + timedelta(days=end)).isoformat())
    assert invited.status_code == 201, invited.json
    if joins:
        assert accept(stack, invited.json["id"]).status_code == 200
    return invited.json["id"], email


def run_schedule() -> SeasonRun:
    with session_scope() as session:
        return apply_seasons(session)


def status_of(member_id: int) -> tuple[str, str | None]:
    with session_scope() as session:
        member = session.get_one(Membership, member_id)
        return member.status, member.inactive_reason


def seats(account_id: int) -> int:
    with session_scope() as session:
        return seats_in_use(session, account_id, season_today())


def season_audits(member_ids: list[int]) -> list[tuple[str, str]]:
    with session_scope() as session:
        rows = session.execute(
            select(AuditEntry.target_id, AuditEntry.action).where(
                AuditEntry.target_id.in_([str(m) for m in member_ids]),
                AuditEntry.action.like("member.season%"))).all()
        return sorted((str(target), action) for target, action in rows)


def login(stack: Stack, email: str) -> Any:
    return stack.api.simulate_post("/v1/auth/login", json={"email": email, "password": PASSWORD})


def test_the_window_s_start_activates_and_its_end_deactivates(stack: Stack, clock: Clock):
    admin = seasonal_account()
    member_id, email = seasonal_member(stack, admin, start=2, end=5)
    # joined before the season: waiting for it, no seat, no login
    assert status_of(member_id) == ("inactive", "season")
    assert seats(admin.id) == 1  # the admin
    refused = login(stack, email)
    assert refused.status_code == 403 and refused.json["code"] == "outside_season"
    start = (season_today() + timedelta(days=2)).isoformat()
    assert start in refused.json["detail"]
    assert run_schedule() == SeasonRun(0, 0)

    clock.advance(2 * DAY)
    first = run_schedule()
    assert first.activated >= 1
    assert status_of(member_id) == ("active", None)
    assert seats(admin.id) == 2
    session = login(stack, email)
    assert session.status_code == 200, session.json
    headers = {"Authorization": f"Bearer {session.json['token']}"}
    leads = f"/v1/accounts/{admin.id}/leads"
    assert stack.api.simulate_get(leads, headers=headers).status_code == 200

    clock.advance(4 * DAY)  # the day after the last one
    # refused at once, before the schedule has run
    answer = stack.api.simulate_get(leads, headers=headers)
    assert answer.status_code == 403 and answer.json["code"] == "outside_season"
    assert run_schedule().deactivated >= 1
    assert status_of(member_id) == ("inactive", "season")
    assert seats(admin.id) == 1
    assert run_schedule() == SeasonRun(0, 0)  # idempotent
    assert login(stack, email).json["code"] == "outside_season"
    assert season_audits([member_id]) == [(str(member_id), "member.season_end"),
                                          (str(member_id), "member.season_start")]
    with session_scope() as session:
        actor = session.scalars(select(AuditEntry.actor_label).where(
            AuditEntry.target_id == str(member_id),
            AuditEntry.action == "member.season_end")).one()
    assert actor.startswith("system")


def test_two_runs_at_once_flip_each_member_once(stack: Stack, clock: Clock):
    accounts = [seasonal_account(), seasonal_account()]
    members = [seasonal_member(stack, admin, start=1, end=3)[0]
               for admin in accounts for _ in range(6)]
    waiting = seasonal_member(stack, accounts[0], start=1, end=3, joins=False)[0]
    assert {status_of(m) for m in members} == {("inactive", "season")}
    clock.advance(DAY)
    barrier = threading.Barrier(2)
    runs: list[SeasonRun] = []

    def run() -> None:
        barrier.wait()
        runs.append(run_schedule())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(runs) == 2
    assert {status_of(m) for m in members} == {("active", None)}
    assert status_of(waiting) == ("invited", None)  # never accepted: stays invited
    audits = season_audits(members)
    assert audits == sorted((str(m), "member.season_start") for m in members)
    assert [seats(admin.id) for admin in accounts] == [1 + 6 + 1, 1 + 6]  # invited holds one
    assert run_schedule() == SeasonRun(0, 0)
    assert season_audits(members) == audits


def test_a_member_disabled_by_hand_stays_disabled(stack: Stack, clock: Clock):
    admin = seasonal_account()
    inside, _ = seasonal_member(stack, admin, start=0, end=10)
    waiting, _ = seasonal_member(stack, admin, start=3, end=10)
    assert status_of(inside) == ("active", None)
    for member_id in (inside, waiting):
        answer = stack.api.simulate_post(f"/v1/accounts/{admin.id}/users/{member_id}/disable",
                                         headers=admin.headers)
        assert answer.status_code == 200, answer.json
        assert status_of(member_id) == ("inactive", "disabled")
    clock.advance(4 * DAY)  # both windows cover today
    run_schedule()
    assert status_of(inside) == ("inactive", "disabled")
    assert status_of(waiting) == ("inactive", "disabled")
    assert seats(admin.id) == 1
    # an admin brings one back
    answer = stack.api.simulate_post(f"/v1/accounts/{admin.id}/users/{waiting}/activate",
                                     headers=admin.headers)
    assert answer.status_code == 200, answer.json
    assert status_of(waiting) == ("active", None)
    assert seats(admin.id) == 2


def test_seasonal_users_only_with_seasonal_seats(stack: Stack):
    admin = seasonal_account(seasonal_seats=0)
    today = season_today().isoformat()
    refused = stack.invite(admin, email=fresh_email(), user_type="seasonal",
                           seasonal_start=today, seasonal_end=today)
    assert refused.status_code == 409 and refused.json["code"] == "no_seasonal_seats"
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Membership).where(
            Membership.account_id == admin.id)) == 1


def test_beat_runs_the_schedule():
    from provisioning.core.config import settings
    from worker.celery_app import create_app

    entry = create_app(settings()).conf.beat_schedule["apply-seasons"]
    assert entry["task"] == "provisioning.apply_seasons"
