"""One identity that no other account can take over, and single-use invitations under races.

An identity is the person's, across accounts. An admin-set initial password belongs to the
one invitation it came with; whether the invitee has a login is decided when they accept;
of many accepts (or resends) racing with one invitation, one goes through.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete, select

from provisioning.core.db import session_scope
from provisioning.members.models import Identity, Membership
from tests.conftest import Stack
from tests.support.members import accept, fresh_email, token_of


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(worker=False)


def _login(stack: Stack, email: str, password: str) -> Any:
    return stack.api.simulate_post("/v1/auth/login",
                                   json={"email": email, "password": password})


def test_an_initial_password_set_by_another_account_never_becomes_the_login(stack: Stack):
    theirs, ours = stack.create_account(), stack.create_account()
    email = fresh_email("person")
    planted = stack.invite(theirs, email=email, user_type="free", initial_password="planted pw")
    assert planted.status_code == 201
    assert _login(stack, email, "planted pw").json["code"] == "invalid_credentials"
    with session_scope() as session:  # and even once that account lets them go
        session.execute(delete(Membership).where(Membership.id == planted.json["id"]))
    assert _login(stack, email, "planted pw").json["code"] == "invalid_credentials"

    mine = stack.invite(ours, email=email)
    assert mine.status_code == 201
    with session_scope() as session:
        assert session.scalars(select(Identity.password_hash)
                               .where(Identity.email == email)).one() is None
    assert accept(stack, mine.json["id"], password="my own password").status_code == 200
    assert _login(stack, email, "my own password").status_code == 200
    assert _login(stack, email, "planted pw").status_code == 401


def test_a_stale_new_identity_link_cannot_reset_a_password_set_since(stack: Stack):
    first, second = stack.create_account(), stack.create_account()
    email = fresh_email("person")
    stale = stack.invite(first, email=email, user_type="free")  # sent as "set a password"
    fresh = stack.invite(second, email=email)
    assert accept(stack, fresh.json["id"], password="the real password").status_code == 200

    takeover = accept(stack, stale.json["id"], password="an attacker's password")
    assert takeover.status_code == 401 and takeover.json["code"] == "login_required"
    assert _login(stack, email, "an attacker's password").status_code == 401
    assert accept(stack, stale.json["id"], password="the real password").status_code == 200
    assert _login(stack, email, "the real password").status_code == 200


def test_an_admin_set_password_becomes_the_login_when_its_invitation_is_accepted(stack: Stack):
    admin = stack.create_account()
    email = fresh_email("person")
    invited = stack.invite(admin, email=email, initial_password="chosen by admin")
    assert _login(stack, email, "chosen by admin").status_code == 401  # not before
    assert accept(stack, invited.json["id"]).status_code == 200
    assert _login(stack, email, "chosen by admin").status_code == 200


def test_a_login_that_belongs_to_no_account_any_more_is_refused(stack: Stack):
    admin = stack.create_account()
    email = fresh_email("person")
    invited = stack.invite(admin, email=email)
    assert accept(stack, invited.json["id"], password="a good password").status_code == 200
    with session_scope() as session:
        session.execute(delete(Membership).where(Membership.id == invited.json["id"]))
    refused = _login(stack, email, "a good password")
    assert refused.status_code == 401 and refused.json["code"] == "no_membership"


def _race(count: int, attempt: Callable[[], Any]) -> list[int]:
    start = threading.Barrier(count)
    statuses: list[int] = []

    def run() -> None:
        start.wait()
        statuses.append(attempt().status_code)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(statuses)


def test_of_twenty_accepts_racing_with_one_link_one_succeeds(stack: Stack):
    admin = stack.create_account()
    invited = stack.invite(admin, email=fresh_email("racer"))
    token = token_of(invited.json["id"])
    statuses = _race(20, lambda: stack.api.simulate_post(
        f"/v1/invitations/{token}/accept", json={"password": "racing password"}))
    assert statuses.count(200) == 1, statuses
    assert set(statuses) - {200} == {410}, statuses


def test_of_twenty_resends_racing_one_goes_out(stack: Stack):
    admin = stack.create_account()
    invited = stack.invite(admin, email=fresh_email("racer"))
    with session_scope() as session:  # its first send was long ago
        from provisioning.members.models import Invitation

        invitation = session.scalars(select(Invitation).where(
            Invitation.membership_id == invited.json["id"])).one()
        invitation.last_sent_at = invitation.last_sent_at.replace(year=2020)
    url = f"/v1/accounts/{admin.id}/users/{invited.json['id']}/invitation/resend"
    statuses = _race(20, lambda: stack.api.simulate_post(url, headers=admin.headers))
    assert statuses.count(200) == 1, statuses
    assert set(statuses) - {200} == {429}, statuses
