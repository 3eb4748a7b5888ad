"""No escalation: nobody gives a permission they do not hold, only admins make admins, and an
account never loses its last admin through an import."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from provisioning.accounts.models import Role
from provisioning.core.db import session_scope
from provisioning.members.models import Membership
from tests.conftest import AdminAccount, Stack
from tests.support.imports import error_keys, run_import
from tests.support.members import active_member, fresh_email

MEMBER_SET = ["contacts.edit", "contacts.view", "leads.edit", "leads.view", "pipelines.view",
              "tasks.edit", "tasks.view"]


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack()  # imports need the worker


def _recruiter(stack: Stack, admin: AdminAccount) -> tuple[int, dict[str, str]]:
    """A member whose custom role manages users and holds what the member role holds."""
    created = stack.api.simulate_post(f"/v1/accounts/{admin.id}/roles", headers=admin.headers,
                                      json={"name": "Recruiter",
                                            "permissions": ["users.manage", *MEMBER_SET]})
    assert created.status_code == 201, created.text
    member_id, _, headers = active_member(stack, admin, role="Recruiter")
    return member_id, headers


def test_a_users_manage_holder_invites_members_but_makes_no_admin(stack: Stack):
    admin = stack.create_account()
    _, recruiter = _recruiter(stack, admin)
    users = f"/v1/accounts/{admin.id}/users"
    member = stack.api.simulate_post(users, json={"email": fresh_email()}, headers=recruiter)
    assert member.status_code == 201, member.text
    refused = stack.api.simulate_post(users, json={"email": fresh_email(), "role": "Admin"},
                                      headers=recruiter)
    assert refused.status_code == 403 and refused.json["code"] == "cannot_grant"
    assert refused.json["errors"][0]["field"] == "role"
    # An admin does.
    assert stack.invite(admin, email=fresh_email(), role="admin").status_code == 201


def test_a_role_holds_only_what_its_maker_holds(stack: Stack):
    admin = stack.create_account()
    _, recruiter = _recruiter(stack, admin)
    roles = f"/v1/accounts/{admin.id}/roles"
    wider = stack.api.simulate_post(roles, headers=recruiter, json={
        "name": "Integrator", "permissions": ["leads.view", "integrations.edit"]})
    assert wider.status_code == 403 and wider.json["code"] == "cannot_grant"
    assert "integrations.edit" in wider.json["detail"]
    assert wider.json["errors"][0]["field"] == "permissions"
    within = stack.api.simulate_post(roles, headers=recruiter, json={
        "name": "Viewer", "permissions": ["leads.view", "billing.view"]})
    assert within.status_code == 201, within.text
    # A role wider than the recruiter's own cannot be given either, even made by an admin.
    assert stack.api.simulate_post(roles, headers=admin.headers, json={
        "name": "Integrator", "permissions": ["integrations.edit"]}).status_code == 201
    given = stack.api.simulate_post(f"/v1/accounts/{admin.id}/users", headers=recruiter,
                                    json={"email": fresh_email(), "role": "integrator"})
    assert given.status_code == 403 and given.json["code"] == "cannot_grant"


def test_an_import_by_a_users_manage_holder_makes_no_admin(stack: Stack):
    admin = stack.create_account()
    _, recruiter = _recruiter(stack, admin)
    as_recruiter = AdminAccount(admin.id, recruiter["Authorization"].split()[1], "")
    wanted, plain = fresh_email("boss"), fresh_email("plain")
    body = f"email,role\n{wanted},admin\n{plain},member\n".encode()
    done = run_import(stack, as_recruiter, body, invite="false")
    assert done["summary"]["created"] == 1 and done["summary"]["failed"] == 1, done
    assert error_keys(stack, as_recruiter, done["id"]) == {(2, "role", "cannot_grant")}


def _role_of(member_id: int) -> str:
    with session_scope() as session:
        return session.scalars(select(Role.name).join(Membership, Membership.role_id == Role.id)
                               .where(Membership.id == member_id)).one()


def test_an_import_never_demotes_the_last_admin(stack: Stack):
    admin = stack.create_account()
    first = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users",
                                   headers=admin.headers).json["items"][0]
    assert first["email"] == admin.email and first["role"] == "admin"
    body = f"email,role\n{admin.email},member\n".encode()
    done = run_import(stack, admin, body, on_existing="update", invite="false")
    assert error_keys(stack, admin, done["id"]) == {(2, "role", "last_admin")}
    assert _role_of(first["id"]) == "admin"

    second_id, second_email, _ = active_member(stack, admin, role="admin")
    body = f"email,role\n{second_email},member\n{admin.email},member\n".encode()
    done = run_import(stack, admin, body, on_existing="update", invite="false")
    assert done["summary"]["updated"] == 1, done
    assert error_keys(stack, admin, done["id"]) == {(3, "role", "last_admin")}
    assert (_role_of(second_id), _role_of(first["id"])) == ("member", "admin")


def test_an_import_by_a_users_manage_holder_changes_no_admin(stack: Stack):
    admin = stack.create_account()
    _, recruiter = _recruiter(stack, admin)
    as_recruiter = AdminAccount(admin.id, recruiter["Authorization"].split()[1], "")
    second_id, second_email, _ = active_member(stack, admin, role="admin")
    plain_id, plain_email, _ = active_member(stack, admin)
    body = f"email,role,group\n{second_email},member,\n{plain_email},,Sales\n".encode()
    done = run_import(stack, as_recruiter, body, on_existing="update", invite="false")
    assert done["summary"]["updated"] == 1 and done["summary"]["failed"] == 1, done
    assert error_keys(stack, as_recruiter, done["id"]) == {(2, "role", "cannot_change_admin")}
    assert (_role_of(second_id), _role_of(plain_id)) == ("admin", "member")


def test_each_member_an_import_changes_has_its_own_audit_entry(stack: Stack):
    admin = stack.create_account()
    first, _, _ = active_member(stack, admin, name="First Person")
    second, second_email, _ = active_member(stack, admin)
    with session_scope() as session:
        first_email = session.scalars(select(Membership).where(Membership.id == first)
                                      ).one().identity.email
    body = (f"email,name,role,group\n{first_email},Renamed,admin,\n"
            f"{second_email},,,Sales\n").encode()
    done = run_import(stack, admin, body, on_existing="update", invite="false")
    assert done["summary"]["updated"] == 2, done
    entries = stack.api.simulate_get(f"/v1/accounts/{admin.id}/audit", headers=admin.headers,
                                     params={"limit": "100"}).json["items"]
    updates = {entry["target_id"]: entry for entry in entries
               if entry["action"] == "member.update"}
    assert set(updates) == {str(first), str(second)}
    assert updates[str(first)]["before"] == {"email": first_email, "name": "First Person",
                                             "role": "member"}
    assert updates[str(first)]["after"] == {"email": first_email, "name": "Renamed",
                                            "role": "admin"}
    assert (updates[str(second)]["before"]["group"], updates[str(second)]["after"]["group"]) \
        == (None, "Sales")


def test_an_import_gives_the_default_role_only_to_whom_it_may(stack: Stack):
    admin = stack.create_account()
    roles = f"/v1/accounts/{admin.id}/roles"
    for name, permissions in (("People ops", ["users.manage", "leads.view"]),
                              ("Viewer", ["leads.view"])):
        assert stack.api.simulate_post(roles, headers=admin.headers, json={
            "name": name, "permissions": permissions}).status_code == 201
    _, _, headers = active_member(stack, admin, role="People ops")
    as_people_ops = AdminAccount(admin.id, headers["Authorization"].split()[1], "")
    body = f"email,role\n{fresh_email()},\n{fresh_email()},viewer\n".encode()
    done = run_import(stack, as_people_ops, body, invite="false")
    assert (done["summary"]["created"], done["summary"]["failed"]) == (1, 1), done
    # The member role holds more than People ops does: a blank role would give it.
    assert error_keys(stack, as_people_ops, done["id"]) == {(2, "role", "cannot_grant")}

    dry = run_import(stack, as_people_ops, body, invite="false", dry_run="true")
    assert error_keys(stack, as_people_ops, dry["id"]) == {(2, "role", "cannot_grant")}
