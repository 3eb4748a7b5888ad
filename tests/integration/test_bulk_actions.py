"""One action on many members as a job (SPEC §10): each member follows the single action's rules,
a refusal is that member's result and never stops the rest."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from provisioning.core.db import session_scope
from provisioning.members.models import Identity, Membership
from tests.conftest import AdminAccount, Stack
from tests.support.imports import finished_job
from tests.support.members import active_member
from tests.support.records import add_members, give_records, owned, pointing_at


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(bulk_chunk_members="100")


def bulk(stack: Stack, admin: AdminAccount, headers: dict[str, str] | None = None,
         **body: Any) -> Any:
    return stack.api.simulate_post(f"/v1/accounts/{admin.id}/users/bulk", json=body,
                                   headers=headers or admin.headers)


def results(stack: Stack, admin: AdminAccount, job_id: int, **params: Any
            ) -> list[dict[str, Any]]:
    """Every member's result, page by page."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = stack.api.simulate_get(f"/v1/jobs/{job_id}/results", headers=admin.headers,
                                      params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.json
        found += page.json["items"]
        cursor = page.json["next_cursor"]
        if cursor is None:
            return found


def own_id(admin: AdminAccount) -> int:
    with session_scope() as session:
        member_id: int = session.scalars(select(Membership.id).join(Identity).where(
            Identity.email == admin.email)).one()
    return member_id


def statuses(ids: list[int]) -> dict[str, int]:
    with session_scope() as session:
        found = session.execute(select(Membership.status).where(Membership.id.in_(ids))).all()
    counts: dict[str, int] = {}
    for (status,) in found:
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_a_bulk_disable_of_a_thousand_where_ten_are_invalid(stack: Stack):
    admin, elsewhere = stack.create_account(seats=1100), stack.create_account(seats=10)
    members = add_members(admin.id, 990)
    invited = add_members(admin.id, 4, status="invited")
    strangers = add_members(elsewhere.id, 5)
    chosen = members[:500] + invited + strangers + [own_id(admin)] + members[500:]
    assert len(chosen) == 1000

    answer = bulk(stack, admin, action="disable", user_ids=chosen)
    assert answer.status_code == 202, answer.json
    assert answer.json["job"]["kind"] == "bulk" and answer.json["job"]["total"] == 1000
    done = finished_job(stack, admin, answer.json["job"]["id"], timeout=120)
    assert done["status"] == "succeeded", done
    assert done["summary"] == {"succeeded": 990, "failed": 10}
    assert done["done"] == done["total"] == 1000

    listed = results(stack, admin, done["id"], limit=300)
    assert [result["user_id"] for result in listed] == chosen
    failed = {result["user_id"]: result for result in listed if result["status"] == "failed"}
    assert {user_id: result["code"] for user_id, result in failed.items()} == {
        **{user_id: "not_joined" for user_id in invited},
        **{user_id: "not_found" for user_id in strangers},
        own_id(admin): "last_admin"}
    assert all(result["message"] for result in failed.values())
    assert all(set(result) == {"user_id", "status"} for result in listed
               if result["status"] == "succeeded")
    assert statuses(members) == {"inactive": 990}
    assert statuses(strangers) == {"active": 5}
    only_failed = results(stack, admin, done["id"], status="failed")
    assert {result["user_id"] for result in only_failed} == set(failed)


def test_each_bulk_action_follows_its_single_action(stack: Stack):
    admin = stack.create_account(seats=50)
    owner, _, _ = active_member(stack, admin)
    target, _, _ = active_member(stack, admin)
    plain = add_members(admin.id, 3)
    give_records(admin.id, owner, 4)

    # remove: an owner needs targets; with them, a job per owner moves the records first.
    refused = finished_job(stack, admin, bulk(stack, admin, action="remove",
                                              user_ids=[owner, plain[0]]).json["job"]["id"])
    by_user = {result["user_id"]: result for result in results(stack, admin, refused["id"])}
    assert by_user[owner]["code"] == "reassign_required"
    assert by_user[plain[0]]["status"] == "succeeded"
    removed = finished_job(stack, admin, bulk(stack, admin, action="remove", user_ids=[owner],
                                              reassign_to=target).json["job"]["id"])
    [result] = results(stack, admin, removed["id"])
    assert result["status"] == "succeeded" and "Job" in result["message"]
    moving = int(result["message"].split()[1])
    assert finished_job(stack, admin, moving, timeout=30)["status"] == "succeeded"
    assert pointing_at(owner) == 0 and owned(target)["tasks"] == 4

    # set_role and set_group by name, in any case; then disable and activate again.
    for body in ({"action": "set_role", "role": "ADMIN"}, {"action": "set_group",
                                                           "group": "sales"}):
        job = finished_job(stack, admin, bulk(stack, admin, user_ids=plain[1:],
                                              **body).json["job"]["id"])
        assert job["summary"] == {"succeeded": 2, "failed": 0}, results(stack, admin, job["id"])
    member = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users/{plain[1]}",
                                    headers=admin.headers).json
    assert (member["role"], member["group"]) == ("admin", "Sales")
    for action, status in (("disable", "inactive"), ("activate", "active")):
        job = finished_job(stack, admin, bulk(stack, admin, action=action,
                                              user_ids=plain[1:]).json["job"]["id"])
        assert job["summary"] == {"succeeded": 2, "failed": 0}
        assert statuses(plain[1:]) == {status: 2}


def test_a_bulk_role_change_never_demotes_the_last_admin(stack: Stack):
    admin = stack.create_account(seats=10)
    others = add_members(admin.id, 2)
    job = finished_job(stack, admin, bulk(stack, admin, action="set_role", role="member",
                                          user_ids=[own_id(admin), *others]).json["job"]["id"])
    assert job["summary"] == {"succeeded": 2, "failed": 1}
    [failed] = results(stack, admin, job["id"], status="failed")
    assert failed == {"user_id": own_id(admin), "status": "failed", "code": "last_admin",
                      "message": failed["message"]}


def test_what_holds_for_every_member_is_refused_before_any_job(stack: Stack):
    admin = stack.create_account(seats=10)
    members = add_members(admin.id, 2)
    for body, field in (
            ({"action": "archive", "user_ids": members}, "action"),
            ({"action": "disable", "user_ids": []}, "user_ids"),
            ({"action": "disable", "user_ids": ["a"]}, "user_ids"),
            ({"action": "set_role", "user_ids": members}, "role"),
            ({"action": "set_role", "role": "no such role", "user_ids": members}, "role"),
            ({"action": "set_group", "user_ids": members}, "group"),
            ({"action": "disable", "reassign_to": 10**9, "user_ids": members}, "reassign_to"),
            ({"action": "remove", "reassign_tasks_to": members[1], "user_ids": members},
             "reassign_tasks_to")):
        answer = bulk(stack, admin, **body)
        assert answer.status_code == 422, (body, answer.json)
        assert field in [error["field"] for error in answer.json["errors"]], answer.json
    too_many = bulk(stack, admin, action="disable", user_ids=list(range(1, 10_002)))
    assert too_many.status_code == 422 and too_many.json["errors"][0]["code"] == "too_many"
    # Only users.manage holders, and nobody gives a role beyond their own.
    _, _, as_member = active_member(stack, admin)
    assert bulk(stack, admin, as_member, action="disable",
                user_ids=members).status_code == 403
    made = stack.api.simulate_post(f"/v1/accounts/{admin.id}/roles", headers=admin.headers,
                                   json={"name": "People", "permissions": ["users.manage"]})
    assert made.status_code == 201, made.json
    _, _, as_people = active_member(stack, admin, role="People")
    escalation = bulk(stack, admin, as_people, action="set_role", role="admin",
                      user_ids=members)
    assert escalation.status_code == 403 and escalation.json["code"] == "cannot_grant"
    listed = stack.api.simulate_get(f"/v1/accounts/{admin.id}/jobs", headers=admin.headers,
                                    params={"kind": "bulk"})
    assert listed.status_code == 200 and listed.json["items"] == []
