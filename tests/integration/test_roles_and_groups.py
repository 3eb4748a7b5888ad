"""Roles and groups as an admin manages them (R1, R14, SPEC §10), over the real API and
PostgreSQL: custom roles edited and deleted, built-in ones kept; groups created, renamed and
deleted (their members moved first); the "Free users" group kept; the last admin kept, also
when two admins demote each other at once; a users.manage role makes and changes no admin."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from provisioning.access.policy import MEMBER_PERMISSIONS
from provisioning.core.db import session_scope
from provisioning.mail.models import OutboxEmail
from provisioning.members.models import Invitation, MemberStatus
from tests.conftest import AdminAccount, Stack
from tests.support.members import active_member, fresh_email, set_status
from tests.support.processes import wait_until


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(worker=False)  # nothing here needs an email delivered


def problem(result: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert result.status_code == status, result.text
    assert result.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = result.json
    if code is not None:
        assert body["code"] == code, body
    return body


def audit_actions(stack: Stack, admin: AdminAccount, target_type: str) -> list[str]:
    listed = stack.api.simulate_get(f"/v1/accounts/{admin.id}/audit", headers=admin.headers,
                                    params={"limit": 200})
    return [entry["action"] for entry in reversed(listed.json["items"])
            if entry["target_type"] == target_type]


def roles_by_name(stack: Stack, admin: AdminAccount) -> dict[str, dict[str, Any]]:
    listed = stack.api.simulate_get(f"/v1/accounts/{admin.id}/roles", headers=admin.headers)
    return {role["name"]: role for role in listed.json["items"]}


def test_a_custom_role_is_edited_and_deleted_once_nobody_holds_it(stack: Stack):
    admin = stack.create_account()
    roles = f"/v1/accounts/{admin.id}/roles"
    made = stack.api.simulate_post(roles, headers=admin.headers,
                                   json={"name": "Sales", "permissions": ["leads.view"]})
    assert made.status_code == 201, made.text
    role = f"{roles}/{made.json['id']}"

    edited = stack.api.simulate_patch(role, headers=admin.headers, json={
        "name": "Sales team", "permissions": ["leads.view", "leads.edit"]})
    assert edited.status_code == 200, edited.text
    assert edited.json["name"] == "Sales team"
    assert edited.json["permissions"] == ["leads.view", "leads.edit"]
    assert roles_by_name(stack, admin)["Sales team"]["permissions"] == ["leads.view",
                                                                        "leads.edit"]
    problem(stack.api.simulate_patch(role, headers=admin.headers, json={"name": "MEMBER"}),
            409, "role_exists")
    bad = problem(stack.api.simulate_patch(role, headers=admin.headers,
                                           json={"permissions": ["fly"], "colour": "red"}), 422)
    assert {error["field"] for error in bad["errors"]} == {"permissions", "colour"}

    # Its holder acts with the new set at its next request (no grant is cached).
    member_id, _, as_seller = active_member(stack, admin, role="Sales team")
    leads = f"/v1/accounts/{admin.id}/leads"
    assert stack.api.simulate_get(leads, headers=as_seller).status_code == 200
    assert stack.api.simulate_patch(role, headers=admin.headers,
                                    json={"permissions": ["tasks.view"]}).status_code == 200
    problem(stack.api.simulate_get(leads, headers=as_seller), 403, "permission_required")

    held = problem(stack.api.simulate_delete(role, headers=admin.headers), 409, "role_in_use")
    assert "1 member" in held["detail"]
    changed = stack.api.simulate_patch(f"/v1/accounts/{admin.id}/users/{member_id}",
                                       headers=admin.headers, json={"role": "member"})
    assert changed.status_code == 200, changed.text
    assert stack.api.simulate_delete(role, headers=admin.headers).status_code == 204
    assert "Sales team" not in roles_by_name(stack, admin)
    problem(stack.api.simulate_delete(role, headers=admin.headers), 404)
    assert audit_actions(stack, admin, "role") == [
        "role.create", "role.update", "role.update", "role.delete"]


def test_the_built_in_roles_are_neither_edited_nor_deleted(stack: Stack):
    admin = stack.create_account()
    for name, role in roles_by_name(stack, admin).items():
        url = f"/v1/accounts/{admin.id}/roles/{role['id']}"
        problem(stack.api.simulate_patch(url, headers=admin.headers,
                                         json={"permissions": ["leads.view"]}),
                409, "builtin_role")
        problem(stack.api.simulate_delete(url, headers=admin.headers), 409, "builtin_role")
        assert roles_by_name(stack, admin)[name] == role
    # Another account's role is not found.
    other = stack.create_account()
    theirs = roles_by_name(stack, other)["member"]["id"]
    problem(stack.api.simulate_delete(f"/v1/accounts/{admin.id}/roles/{theirs}",
                                      headers=admin.headers), 404)


def test_a_users_manage_role_neither_makes_nor_changes_admins_nor_widens_a_role(stack: Stack):
    admin = stack.create_account(seats=20)
    roles = f"/v1/accounts/{admin.id}/roles"
    stack.api.simulate_post(roles, headers=admin.headers, json={
        "name": "People ops", "permissions": ["users.manage", *MEMBER_PERMISSIONS]})
    stack.api.simulate_post(roles, headers=admin.headers, json={
        "name": "Only users", "permissions": ["users.manage"]})
    _, _, as_ops = active_member(stack, admin, role="People ops")
    _, _, as_only_users = active_member(stack, admin, role="Only users")
    second_admin, _, _ = active_member(stack, admin, role="admin")
    plain, _, _ = active_member(stack, admin)
    users = f"/v1/accounts/{admin.id}/users"

    # It does what R1 gives admins to a plain member ...
    assert stack.api.simulate_patch(f"{users}/{plain}", headers=as_ops,
                                    json={"group": "Sales"}).status_code == 200
    # ... but makes no admin, and changes, disables or removes none.
    problem(stack.api.simulate_patch(f"{users}/{plain}", headers=as_ops,
                                     json={"role": "admin"}), 403, "cannot_grant")
    for answer in (
        stack.api.simulate_patch(f"{users}/{second_admin}", headers=as_ops,
                                 json={"role": "member"}),
        stack.api.simulate_patch(f"{users}/{second_admin}", headers=as_ops,
                                 json={"note": "hi"}),
        stack.api.simulate_post(f"{users}/{second_admin}/disable", headers=as_ops),
        stack.api.simulate_delete(f"{users}/{second_admin}", headers=as_ops),
    ):
        problem(answer, 403, "cannot_change_admin")
    pending_admin = stack.invite(admin, email=fresh_email(), role="admin").json["id"]
    problem(stack.api.simulate_delete(f"{users}/{pending_admin}/invitation", headers=as_ops),
            403, "cannot_change_admin")
    # Nobody gives permissions they do not hold: users.manage alone cannot give "member".
    problem(stack.api.simulate_post(users, headers=as_only_users,
                                    json={"email": fresh_email()}), 403, "cannot_grant")
    stack.api.simulate_post(roles, headers=admin.headers, json={
        "name": "Readers", "permissions": ["leads.view"]})
    reader, _, _ = active_member(stack, admin, role="Readers")
    problem(stack.api.simulate_patch(f"{users}/{reader}", headers=as_only_users,
                                     json={"role": "member"}), 403, "cannot_grant")
    # Nor edits a role beyond what it holds, nor deletes one.
    integrator = stack.api.simulate_post(roles, headers=admin.headers, json={
        "name": "Integrator", "permissions": ["integrations.edit"]}).json["id"]
    problem(stack.api.simulate_patch(f"{roles}/{integrator}", headers=as_ops,
                                     json={"name": "Mine"}), 403, "cannot_grant")
    problem(stack.api.simulate_delete(f"{roles}/{integrator}", headers=as_ops), 403,
            "cannot_grant")
    viewer = stack.api.simulate_post(roles, headers=as_ops, json={
        "name": "Viewer", "permissions": ["leads.view"]}).json["id"]
    problem(stack.api.simulate_patch(f"{roles}/{viewer}", headers=as_ops,
                                     json={"permissions": ["integrations.edit"]}),
            403, "cannot_grant")
    assert stack.api.simulate_patch(f"{roles}/{viewer}", headers=as_ops, json={
        "permissions": ["leads.view", "tasks.view"]}).status_code == 200
    # The admin does all of it.
    assert stack.api.simulate_patch(f"{users}/{second_admin}", headers=admin.headers,
                                    json={"role": "member"}).status_code == 200


def _invitation_and_emails(member_id: int, email: str) -> tuple[tuple[Any, ...], int]:
    """The member's invitation as a resend would change it, and the emails queued to them."""
    with session_scope() as session:
        invitation = session.scalars(select(Invitation).where(
            Invitation.membership_id == member_id)).one()
        emails = session.scalar(select(func.count()).select_from(OutboxEmail)
                                .where(OutboxEmail.recipient == email))
        return ((invitation.token_hash, invitation.sends, invitation.last_sent_at,
                 invitation.resends_in_window), emails or 0)


def _resend_allowed_now(member_id: int) -> None:
    """As if the least interval between two sends had passed."""
    with session_scope() as session:
        session.execute(update(Invitation).where(Invitation.membership_id == member_id)
                        .values(last_sent_at=None))


def test_a_users_manage_role_resends_no_admin_s_invitation(stack: Stack):
    admin = stack.create_account(seats=20)
    stack.api.simulate_post(f"/v1/accounts/{admin.id}/roles", headers=admin.headers, json={
        "name": "Resenders", "permissions": ["users.manage", *MEMBER_PERMISSIONS]})
    _, _, as_ops = active_member(stack, admin, role="Resenders")
    users = f"/v1/accounts/{admin.id}/users"
    admin_email, member_email = fresh_email("admin"), fresh_email()
    pending_admin = stack.invite(admin, email=admin_email, role="admin").json["id"]
    pending_member = stack.invite(admin, email=member_email).json["id"]
    for member_id in (pending_admin, pending_member):
        _resend_allowed_now(member_id)
    before = _invitation_and_emails(pending_admin, admin_email)

    refused = problem(stack.api.simulate_post(f"{users}/{pending_admin}/invitation/resend",
                                              headers=as_ops), 403, "cannot_change_admin")
    assert "administrator" in refused["detail"]
    # Nothing changed: the same link, no send counted, no email queued, no audit entry.
    assert _invitation_and_emails(pending_admin, admin_email) == before
    assert "member.invitation_resend" not in audit_actions(stack, admin, "member")
    # A plain member's invitation it resends; an admin resends an admin's.
    assert stack.api.simulate_post(f"{users}/{pending_member}/invitation/resend",
                                   headers=as_ops).status_code == 200
    resent = stack.api.simulate_post(f"{users}/{pending_admin}/invitation/resend",
                                     headers=admin.headers)
    assert resent.status_code == 200, resent.text
    (token_hash, sends, _, _), emails = _invitation_and_emails(pending_admin, admin_email)
    assert token_hash != before[0][0] and sends == before[0][1] + 1 and emails == before[1] + 1


def test_groups_are_created_renamed_and_deleted_moving_their_members(stack: Stack):
    admin = stack.create_account(seats=10)
    groups = f"/v1/accounts/{admin.id}/groups"
    made = stack.api.simulate_post(groups, headers=admin.headers, json={"name": " Partners "})
    assert made.status_code == 201, made.text
    assert made.json == {"id": made.json["id"], "name": "Partners", "builtin": False}
    group = f"{groups}/{made.json['id']}"
    problem(stack.api.simulate_post(groups, headers=admin.headers, json={"name": "partners"}),
            409, "group_exists")
    problem(stack.api.simulate_post(groups, headers=admin.headers, json={"name": "SALES"}),
            409, "group_exists")
    assert problem(stack.api.simulate_post(groups, headers=admin.headers, json={}),
                   422)["errors"][0]["field"] == "name"

    renamed = stack.api.simulate_patch(group, headers=admin.headers, json={"name": "Resellers"})
    assert renamed.status_code == 200 and renamed.json["name"] == "Resellers"
    problem(stack.api.simulate_patch(group, headers=admin.headers, json={"name": "support"}),
            409, "group_exists")

    member, _, _ = active_member(stack, admin, group="Resellers")
    problem(stack.api.simulate_delete(group, headers=admin.headers), 409, "group_in_use")
    listed = {g["name"]: g["id"] for g in stack.api.simulate_get(
        groups, headers=admin.headers).json["items"]}
    for bad, code in ((listed["Free users"], "invalid_group"), (made.json["id"], "same_group"),
                      ("999999999", "unknown_group"), ("sales", "invalid_type")):
        refused = problem(stack.api.simulate_delete(group, headers=admin.headers,
                                                    params={"move_to": bad}), 422)
        assert refused["errors"][0] == {**refused["errors"][0], "field": "move_to", "code": code}
    moved = stack.api.simulate_delete(group, headers=admin.headers,
                                      params={"move_to": listed["Sales"]})
    assert moved.status_code == 204, moved.text
    seen = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users/{member}",
                                  headers=admin.headers)
    assert seen.json["group"] == "Sales"
    assert "Resellers" not in {g["name"] for g in stack.api.simulate_get(
        groups, headers=admin.headers).json["items"]}
    assert audit_actions(stack, admin, "group") == ["group.create", "group.update",
                                                    "group.delete"]
    # An empty group goes without move_to.
    empty = stack.api.simulate_post(groups, headers=admin.headers, json={"name": "Empty"})
    assert stack.api.simulate_delete(f"{groups}/{empty.json['id']}",
                                     headers=admin.headers).status_code == 204


def test_the_free_users_group_is_neither_renamed_nor_deleted(stack: Stack):
    admin = stack.create_account()
    groups = f"/v1/accounts/{admin.id}/groups"
    free = next(g for g in stack.api.simulate_get(groups, headers=admin.headers).json["items"]
                if g["builtin"])
    assert free["name"] == "Free users"
    problem(stack.api.simulate_patch(f"{groups}/{free['id']}", headers=admin.headers,
                                     json={"name": "Guests"}), 409, "builtin_group")
    problem(stack.api.simulate_delete(f"{groups}/{free['id']}", headers=admin.headers,
                                      params={"move_to": free["id"]}), 409, "builtin_group")
    # And no other group takes its name, whatever the case.
    problem(stack.api.simulate_post(groups, headers=admin.headers,
                                    json={"name": "FREE USERS"}), 409, "group_exists")
    _, _, as_member = active_member(stack, admin)
    problem(stack.api.simulate_post(groups, headers=as_member, json={"name": "Mine"}), 403,
            "admin_required")


def test_the_last_admin_is_never_demoted_disabled_or_removed(stack: Stack):
    admin = stack.create_account()
    users = f"/v1/accounts/{admin.id}/users"
    own = stack.api.simulate_get(users, headers=admin.headers,
                                 params={"q": admin.email}).json["items"][0]["id"]
    for answer in (
        stack.api.simulate_patch(f"{users}/{own}", headers=admin.headers, json={"role": "member"}),
        stack.api.simulate_post(f"{users}/{own}/disable", headers=admin.headers),
        stack.api.simulate_delete(f"{users}/{own}", headers=admin.headers),
    ):
        refused = problem(answer, 409, "last_admin")
        assert "administrator" in refused["detail"]
    # A free user holding the admin role is no administrator: it does not count.
    active_member(stack, admin, role="admin", user_type="free")
    problem(stack.api.simulate_patch(f"{users}/{own}", headers=admin.headers,
                                     json={"role": "member"}), 409, "last_admin")


def _admin_session(stack: Stack, admin: AdminAccount) -> tuple[int, dict[str, str]]:
    member_id, _, headers = active_member(stack, admin, role="admin")
    return member_id, headers


def test_two_admins_demoting_each_other_at_once_leave_one_admin(stack: Stack):
    """On PostgreSQL: the first demotion holds the account's lock; the second waits for it,
    then counts the admins left and refuses (409 ``last_admin``)."""
    admin = stack.create_account(seats=10)
    users = f"/v1/accounts/{admin.id}/users"
    first, as_first = _admin_session(stack, admin)
    second, as_second = _admin_session(stack, admin)
    own = stack.api.simulate_get(users, headers=admin.headers,
                                 params={"q": admin.email}).json["items"][0]["id"]
    # The account's own admin steps down first, leaving exactly two.
    assert stack.api.simulate_patch(f"{users}/{own}", headers=as_first,
                                    json={"role": "member"}).status_code == 200

    answers: dict[str, Any] = {}
    with session_scope() as holder:
        # Hold the account's row as a demotion does, so both requests meet at the lock.
        holder.execute(text("SELECT id FROM accounts WHERE id = :id FOR NO KEY UPDATE"),
                       {"id": admin.id})
        threads = [threading.Thread(target=lambda who, target, headers: answers.__setitem__(
            who, stack.api.simulate_patch(f"{users}/{target}", headers=headers,
                                          json={"role": "member"})),
            args=(who, target, headers))
            for who, target, headers in (("first", second, as_first),
                                         ("second", first, as_second))]
        for thread in threads:
            thread.start()
        wait_until(lambda: _waiting_on_a_lock(admin.id) >= 2, timeout=30,
                   message="both demotions wait on the account's lock")
    for thread in threads:
        thread.join(timeout=30)
    statuses = sorted(answer.status_code for answer in answers.values())
    assert statuses == [200, 409], {who: a.text for who, a in answers.items()}
    refused = next(answer for answer in answers.values() if answer.status_code == 409)
    assert refused.json["code"] == "last_admin"
    winner = as_first if answers["first"].status_code == 200 else as_second
    roles = {m["id"]: m["role"] for m in stack.api.simulate_get(
        users, headers=winner).json["items"]}
    assert sorted([roles[first], roles[second]]) == ["admin", "member"]


def _waiting_on_a_lock(account_id: int) -> int:
    with session_scope() as session:
        return int(session.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()")).scalar_one())


def test_a_disabled_admin_does_not_count_as_the_one_left(stack: Stack):
    admin = stack.create_account(seats=10)
    users = f"/v1/accounts/{admin.id}/users"
    other, _, _ = active_member(stack, admin, role="admin")
    set_status(other, MemberStatus.INACTIVE)
    own = stack.api.simulate_get(users, headers=admin.headers,
                                 params={"q": admin.email}).json["items"][0]["id"]
    problem(stack.api.simulate_post(f"{users}/{own}/disable", headers=admin.headers), 409,
            "last_admin")
