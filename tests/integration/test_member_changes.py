"""Changing a member (PATCH), the audit trail of every lifecycle action with its filters, and an
account's jobs, over the real API and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from provisioning.core.db import session_scope
from provisioning.members.models import Identity, Membership
from tests.conftest import AdminAccount, Stack
from tests.support.members import PASSWORD, accept, active_member, fresh_email
from tests.support.processes import wait_until


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(worker=False)  # nothing here waits for a job or an email


def member_url(admin: AdminAccount, member_id: int) -> str:
    return f"/v1/accounts/{admin.id}/users/{member_id}"


def own_id(admin: AdminAccount) -> int:
    with session_scope() as session:
        member_id: int = session.scalars(select(Membership.id).join(Identity).where(
            Identity.email == admin.email)).one()
    return member_id


def audit(stack: Stack, admin: AdminAccount, **params: Any) -> Any:
    return stack.api.simulate_get(f"/v1/accounts/{admin.id}/audit", params=params,
                                  headers=admin.headers)


def test_patch_changes_role_group_name_and_note_by_name_and_records_what_changed(stack: Stack):
    admin = stack.create_account(seats=10)
    member, email, _ = active_member(stack, admin, name="Old Name")
    changed = stack.api.simulate_patch(member_url(admin, member), headers=admin.headers,
                                       json={"role": "ADMIN", "group": "support",
                                             "name": "New Name", "note": "Keeps the keys"})
    assert changed.status_code == 200, changed.json
    assert (changed.json["role"], changed.json["group"], changed.json["name"]) == (
        "admin", "Support", "New Name")
    assert changed.json == stack.api.simulate_get(member_url(admin, member),
                                                  headers=admin.headers).json
    assert changed.json["note"] == "Keeps the keys"  # admins read it (R12)
    with session_scope() as session:
        assert session.get_one(Membership, member).note == "Keeps the keys"
    [entry] = audit(stack, admin, action="member.update", target=str(member)).json["items"]
    assert entry["before"] == {"email": email, "role": "member", "group": None,
                               "name": "Old Name", "note": None}
    assert entry["after"] == {"email": email, "role": "admin", "group": "Support",
                              "name": "New Name", "note": "Keeps the keys"}
    assert entry["actor_id"] == own_id(admin)

    cleared = stack.api.simulate_patch(member_url(admin, member), headers=admin.headers,
                                       json={"group": None})
    assert cleared.status_code == 200 and cleared.json["group"] is None
    same = stack.api.simulate_patch(member_url(admin, member), headers=admin.headers,
                                    json={"role": "admin"})
    assert same.status_code == 200
    assert len(audit(stack, admin, action="member.update").json["items"]) == 2  # no-op: none


def test_patch_refuses_what_the_rules_refuse_naming_the_field(stack: Stack):
    admin, other = stack.create_account(seats=10), stack.create_account(seats=10)
    member, email, _ = active_member(stack, admin)
    free = stack.invite(admin, email=fresh_email(), user_type="free").json["id"]
    url = member_url(admin, member)
    for body, status, field in (({"role": "boss"}, 422, "role"),
                                ({"group": "Nowhere"}, 422, "group"),
                                ({"group": "Free users"}, 422, "group"),
                                ({"email": "x@example.com"}, 422, "email"),
                                ({"role": ""}, 422, "role"),
                                ({"note": "x" * 2001}, 422, "note")):
        answer = stack.api.simulate_patch(url, headers=admin.headers, json=body)
        assert answer.status_code == status, (body, answer.json)
        assert field in [error["field"] for error in answer.json["errors"]], answer.json
    assert stack.api.simulate_patch(member_url(admin, free), headers=admin.headers,
                                    json={"group": "Sales"}).status_code == 422
    # Another account's member does not exist here.
    assert stack.api.simulate_patch(member_url(other, member), headers=other.headers,
                                    json={"name": "X"}).status_code == 404
    # A person another account knows keeps the name they gave themselves.
    shared = stack.invite(other, email=email, user_type="free")
    assert shared.status_code == 201, shared.json
    refused = stack.api.simulate_patch(url, headers=admin.headers, json={"name": "Renamed"})
    assert refused.status_code == 409 and refused.json["code"] == "name_shared"


def test_a_users_manage_holder_gives_no_role_beyond_their_own_and_makes_no_admin(stack: Stack):
    admin = stack.create_account(seats=10)
    made = stack.api.simulate_post(f"/v1/accounts/{admin.id}/roles", headers=admin.headers,
                                   json={"name": "People", "permissions": ["users.manage"]})
    assert made.status_code == 201, made.json
    sales = stack.api.simulate_post(f"/v1/accounts/{admin.id}/roles", headers=admin.headers,
                                    json={"name": "Closers", "permissions": ["leads.delete"]})
    assert sales.status_code == 201, sales.json
    _, _, as_people = active_member(stack, admin, role="People")
    member, _, _ = active_member(stack, admin)
    for role in ("admin", "Closers"):  # leads.delete is not People's to give
        refused = stack.api.simulate_patch(member_url(admin, member), headers=as_people,
                                           json={"role": role})
        assert refused.status_code == 403 and refused.json["code"] == "cannot_grant", role
    _, _, as_member = active_member(stack, admin)
    for result in (stack.api.simulate_patch(member_url(admin, member), headers=as_member,
                                            json={"name": "X"}),
                   stack.api.simulate_post(member_url(admin, member) + "/disable",
                                           headers=as_member),
                   stack.api.simulate_delete(member_url(admin, member), headers=as_member),
                   stack.api.simulate_get(member_url(admin, member) + "/records",
                                          headers=as_member)):
        assert result.status_code == 403 and result.json["code"] == "admin_required"
    # A users.manage holder may disable and activate members: R1 gives them that.
    assert stack.api.simulate_post(member_url(admin, member) + "/disable",
                                   headers=as_people).status_code == 200


def test_the_audit_list_filters_by_actor_action_target_and_time_a_page_at_a_time(stack: Stack):
    admin = stack.create_account(seats=20)
    lead_admin, _, as_lead = active_member(stack, admin, role="admin")
    members = [active_member(stack, admin)[0] for _ in range(3)]
    start = datetime.now(UTC) - timedelta(seconds=1)
    for member in members:
        assert stack.api.simulate_post(member_url(admin, member) + "/disable",
                                       headers=as_lead).status_code == 200
    # Entries are stamped with the clock: let it pass the disables, then the middle.
    disabled = datetime.now(UTC)
    wait_until(lambda: datetime.now(UTC) > disabled, timeout=5, message="the clock to move")
    middle = datetime.now(UTC)
    wait_until(lambda: datetime.now(UTC) > middle, timeout=5, message="the clock to move")
    assert stack.api.simulate_post(member_url(admin, members[0]) + "/activate",
                                   headers=admin.headers).status_code == 200

    by_lead = audit(stack, admin, actor=lead_admin).json["items"]
    # Their own acceptance of the invitation first, then the three disables.
    assert [entry["action"] for entry in by_lead] == ["member.disable"] * 3 + ["member.accept"]
    assert {entry["actor_id"] for entry in by_lead} == {lead_admin}
    assert [entry["target_id"] for entry in by_lead[:3]] == [str(m) for m in reversed(members)]
    first = audit(stack, admin, target=str(members[0])).json["items"]
    assert [entry["action"] for entry in first][:2] == ["member.activate", "member.disable"]
    assert [entry["action"] for entry in audit(stack, admin, action="member.disable",
                                               since=start.isoformat(),
                                               until=middle.isoformat()).json["items"]] == [
        "member.disable"] * 3
    after = audit(stack, admin, since=middle.isoformat()).json["items"]
    assert [entry["action"] for entry in after] == ["member.activate"]

    seen, cursor = [], None
    while True:
        page = audit(stack, admin, action="member.disable", limit=2,
                     **({"cursor": cursor} if cursor else {})).json
        seen += [entry["id"] for entry in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == 3
    for bad in ({"since": "yesterday"}, {"actor": "ana"}):
        refused = audit(stack, admin, **bad)
        assert refused.status_code == 422 and refused.json["errors"][0]["field"] in bad


def test_an_account_s_jobs_are_listed_newest_first_with_kind_and_progress(stack: Stack):
    admin = stack.create_account(seats=20)
    members = [active_member(stack, admin)[0] for _ in range(2)]
    imported = stack.api.simulate_post(f"/v1/accounts/{admin.id}/imports",
                                       body=f"email\n{fresh_email()}\n",
                                       headers={**admin.headers, "Content-Type": "text/csv"})
    bulk = stack.api.simulate_post(f"/v1/accounts/{admin.id}/users/bulk", headers=admin.headers,
                                   json={"action": "disable", "user_ids": members})
    assert (imported.status_code, bulk.status_code) == (202, 202)
    listed = stack.api.simulate_get(f"/v1/accounts/{admin.id}/jobs", headers=admin.headers)
    assert listed.status_code == 200, listed.json
    assert [(job["kind"], job["status"], job["done"], job["total"])
            for job in listed.json["items"]] == [("bulk", "queued", 0, 2),
                                                 ("import", "queued", 0, None)]
    assert listed.json["items"][0]["results_url"].endswith("/results")
    only_imports = stack.api.simulate_get(f"/v1/accounts/{admin.id}/jobs",
                                          params={"kind": "import"}, headers=admin.headers)
    assert [job["kind"] for job in only_imports.json["items"]] == ["import"]
    other = stack.create_account()
    assert stack.api.simulate_get(f"/v1/accounts/{admin.id}/jobs",
                                  headers=other.headers).status_code == 404


def test_the_note_is_read_by_admins_and_by_nobody_else(stack: Stack):
    admin = stack.create_account(seats=10)
    invited = stack.invite(admin, email=fresh_email("noted"), initial_password=PASSWORD)
    member = invited.json["id"]
    noted = stack.api.simulate_patch(member_url(admin, member), headers=admin.headers,
                                     json={"note": "Probation until March"})
    assert noted.json["note"] == "Probation until March"
    listed = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users", headers=admin.headers)
    assert {m["id"]: m["note"] for m in listed.json["items"]}[member] == "Probation until March"
    accepted = accept(stack, member)  # the member's own answer leaves the note out (R12)
    assert accepted.status_code == 200 and "note" not in accepted.json
    assert "Probation" not in accepted.text
    login = stack.api.simulate_post("/v1/auth/login", json={"email": invited.json["email"],
                                                            "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.json['token']}"}
    assert "Probation" not in stack.api.simulate_get("/v1/me", headers=headers).text
    assert stack.api.simulate_get(member_url(admin, member), headers=headers).status_code == 403
