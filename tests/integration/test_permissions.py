"""R1 through the permission policy, over the real API and PostgreSQL: what a role holds decides
what its members may do; another account stays invisible."""

from __future__ import annotations

from typing import Any

import pytest

from provisioning.access.policy import CATALOG, MEMBER_PERMISSIONS
from provisioning.members.models import MemberStatus
from tests.conftest import AdminAccount, Stack
from tests.support.members import active_member, fresh_email, set_status

SPEC_PERMISSIONS = {"users.manage", "billing.view", "leads.view", "leads.edit", "leads.delete",
                    "tasks.view", "tasks.edit"}


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(worker=False)  # nothing here needs an email delivered


def refused(result: Any, status: int) -> dict[str, Any]:
    assert result.status_code == status, result.text
    assert result.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = result.json
    return problem


def make_role(stack: Stack, admin: AdminAccount, name: str, permissions: list[str]) -> None:
    made = stack.api.simulate_post(f"/v1/accounts/{admin.id}/roles", headers=admin.headers,
                                   json={"name": name, "permissions": permissions})
    assert made.status_code == 201, made.json


def test_the_permission_catalog_lists_every_name_with_its_meaning(stack: Stack):
    admin = stack.create_account()
    listed = stack.api.simulate_get(f"/v1/accounts/{admin.id}/permissions",
                                    headers=admin.headers)
    assert listed.status_code == 200, listed.json
    assert listed.json["next_cursor"] is None
    names = [item["name"] for item in listed.json["items"]]
    assert names == [permission.value for permission in CATALOG]
    assert set(names) >= SPEC_PERMISSIONS
    assert all(item["description"] for item in listed.json["items"])


def test_the_admin_role_holds_every_permission_and_the_member_role_its_defaults(stack: Stack):
    admin = stack.create_account()
    roles = stack.api.simulate_get(f"/v1/accounts/{admin.id}/roles", headers=admin.headers)
    by_name = {role["name"]: role for role in roles.json["items"]}
    assert by_name["admin"]["permissions"] == [permission.value for permission in CATALOG]
    assert set(by_name["member"]["permissions"]) == {p.value for p in MEMBER_PERMISSIONS}
    assert by_name["admin"]["builtin"] and by_name["member"]["builtin"]


def test_a_custom_role_holding_users_manage_does_what_r1_gives_admins(stack: Stack):
    admin = stack.create_account(seats=10)
    # What a role holding users.manage may give is what it holds itself (no escalation).
    make_role(stack, admin, "People ops", ["users.manage", *MEMBER_PERMISSIONS])
    _, _, as_lead = active_member(stack, admin, role="People ops")
    account = f"/v1/accounts/{admin.id}"

    invited = stack.api.simulate_post(f"{account}/users", json={"email": fresh_email()},
                                      headers=as_lead)
    assert invited.status_code == 201, invited.json
    for url in ("users", "audit", "roles", "groups", "permissions", "api-keys",
                f"users/{invited.json['id']}"):
        seen = stack.api.simulate_get(f"{account}/{url}", headers=as_lead)
        assert seen.status_code == 200, (url, seen.json)
    revoked = stack.api.simulate_delete(f"{account}/users/{invited.json['id']}/invitation",
                                        headers=as_lead)
    assert revoked.status_code == 200, revoked.json


def test_a_role_without_users_manage_is_refused_as_not_an_admin(stack: Stack):
    admin = stack.create_account(seats=10)
    make_role(stack, admin, "Sales", ["leads.view", "leads.edit", "billing.view"])
    account = f"/v1/accounts/{admin.id}"
    for role in ("Sales", "member"):
        _, _, as_member = active_member(stack, admin, role=role)
        problem = refused(stack.api.simulate_post(f"{account}/users",
                                                  json={"email": fresh_email()},
                                                  headers=as_member), 403)
        assert problem["code"] == "admin_required"
        for url in ("users", "audit", "roles", "permissions", "api-keys"):
            problem = refused(stack.api.simulate_get(f"{account}/{url}", headers=as_member), 403)
            assert problem["code"] == "admin_required", url


def test_an_admin_of_another_account_finds_no_such_account(stack: Stack):
    mine, theirs = stack.create_account(), stack.create_account()
    _, _, their_admin = active_member(stack, theirs, role="admin")  # a session, not a key
    account = f"/v1/accounts/{mine.id}"
    for answer in (
        stack.api.simulate_post(f"{account}/users", json={"email": fresh_email()},
                                headers=their_admin),
        stack.api.simulate_get(f"{account}/users", headers=their_admin),
        stack.api.simulate_get(f"{account}/permissions", headers=their_admin),
        stack.api.simulate_get(f"{account}/roles", headers=theirs.headers),
    ):
        assert refused(answer, 404)["detail"] == "No such account."


def test_an_api_key_of_another_account_finds_no_such_account_even_for_a_member_of_both(
        stack: Stack):
    home, other = stack.create_account(), stack.create_account()
    # home's admin is also a free member of the other account (R2 allows only free there)
    invited = stack.invite(other, email=home.email, user_type="free")
    assert invited.status_code == 201, invited.json
    set_status(invited.json["id"], MemberStatus.ACTIVE)
    login = stack.api.simulate_post("/v1/auth/login", json={
        "email": home.email, "password": "correct horse battery"})
    session = {"Authorization": f"Bearer {login.json['token']}"}
    leads = f"/v1/accounts/{other.id}/leads"
    mine = stack.api.simulate_get(leads, headers=session)
    assert mine.status_code == 200 and mine.json["items"] == []  # it takes part in none yet
    # a free user manages nobody there, whatever its role (R9)
    assert refused(stack.api.simulate_get(f"/v1/accounts/{other.id}/users", headers=session),
                   403)["code"] == "free_user"

    # home.token is the API key made with the home account: it acts there and nowhere else
    assert refused(stack.api.simulate_get(leads, headers=home.headers), 404)["detail"] == (
        "No such account.")
    refused(stack.api.simulate_post(f"/v1/accounts/{other.id}/users",
                                    json={"email": fresh_email()}, headers=home.headers), 404)


def test_an_inactive_member_is_refused_whatever_its_role_holds(stack: Stack):
    admin = stack.create_account()
    member_id, _, as_second_admin = active_member(stack, admin, role="admin")
    users = f"/v1/accounts/{admin.id}/users"
    assert stack.api.simulate_get(users, headers=as_second_admin).status_code == 200
    set_status(member_id, MemberStatus.INACTIVE)
    problem = refused(stack.api.simulate_get(users, headers=as_second_admin), 403)
    assert "not active" in problem["detail"]
