"""Disable, activate and remove with the reassignment of records (R5-R7, R14), over the real API,
PostgreSQL, Redis, a Celery worker and the SMTP sink."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from provisioning.billing.seats import seats_in_use
from provisioning.core.db import session_scope
from provisioning.core.models import AuditEntry, utcnow
from provisioning.crm.models import Note
from provisioning.members.models import Identity, Membership
from tests.conftest import AdminAccount, Stack
from tests.support.imports import finished_job
from tests.support.members import PASSWORD, active_member, fresh_email
from tests.support.processes import wait_until
from tests.support.records import (
    give_records,
    owned,
    pointing_at,
    records_in,
    write_notes,
)


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(reassign_chunk_rows="50")


def users(admin: AdminAccount) -> str:
    return f"/v1/accounts/{admin.id}/users"


def seats_used(account_id: int) -> int:
    with session_scope() as session:
        return seats_in_use(session, account_id, utcnow().date())


def problem(result: Any, status: int) -> dict[str, Any]:
    assert result.status_code == status, result.text
    assert result.headers["content-type"].startswith("application/problem+json")
    found: dict[str, Any] = result.json
    return found


def login(stack: Stack, email: str) -> Any:
    return stack.api.simulate_post("/v1/auth/login", json={"email": email, "password": PASSWORD})


def test_disable_with_reassignment_moves_every_record_and_nothing_of_anyone_else(stack: Stack):
    admin = stack.create_account(seats=10)
    leaving, leaving_email, as_leaving = active_member(stack, admin, name="Lea Leaving")
    receiving, receiving_email, _ = active_member(stack, admin, name="Rui Receiving")
    bystander, _, _ = active_member(stack, admin)
    give_records(admin.id, leaving, 120)
    give_records(admin.id, bystander, 30)
    give_records(admin.id, receiving, 5)
    notes = write_notes(admin.id, leaving, "Lea Leaving", 10)
    before = records_in(admin.id)
    used = seats_used(admin.id)
    assert stack.api.simulate_get(users(admin), headers=as_leaving).status_code == 403

    preview = stack.api.simulate_get(f"{users(admin)}/{leaving}/records", headers=admin.headers)
    assert preview.status_code == 200 and preview.json == {
        "leads": 120, "contacts": 120, "customers": 120, "tasks": 120}
    answer = stack.api.simulate_post(f"{users(admin)}/{leaving}/disable", headers=admin.headers,
                                     json={"reassign_to": receiving})
    assert answer.status_code == 202, answer.json
    assert answer.json["member"]["status"] == "inactive"
    assert answer.json["job"]["kind"] == "reassignment" and answer.json["job"]["total"] == 480
    # At once, before any record moves: inactive, out of the seat count, token dead.
    assert seats_used(admin.id) == used - 1
    assert problem(stack.api.simulate_get(users(admin), headers=as_leaving), 401)
    listed = stack.api.simulate_get(users(admin), params={"status": "inactive"},
                                    headers=admin.headers)
    assert [member["id"] for member in listed.json["items"]] == [leaving]

    done = finished_job(stack, admin, answer.json["job"]["id"])
    assert done["status"] == "succeeded", done
    assert done["done"] == done["total"] == 480
    assert done["summary"] == {"leads": 120, "contacts": 120, "customers": 120, "tasks": 120}
    assert pointing_at(leaving) == 0
    assert owned(receiving) == {kind: 125 for kind in owned(receiving)}
    assert owned(bystander) == {kind: 30 for kind in owned(bystander)}
    assert records_in(admin.id) == before
    with session_scope() as session:
        authors = set(session.scalars(select(Note.author_name).where(Note.id.in_(notes))))
    assert authors == {"Lea Leaving"}
    # The member receiving records gets one email with the counts.

    def reassignment_emails() -> list[dict[str, Any]]:
        return [message for message in stack.sink.messages(to=receiving_email)
                if "Lea Leaving" in message["subject"]]

    wait_until(reassignment_emails, timeout=60, message="the reassignment email")
    [email] = reassignment_emails()
    assert "Leads: 120" in email["text"] and "Tasks: 120" in email["text"]
    entries = audit(stack, admin, target=str(leaving))
    assert {"member.disable", "records.reassign"} <= {entry["action"] for entry in entries}
    disabled = next(entry for entry in entries if entry["action"] == "member.disable")
    assert disabled["before"]["status"] == "active" and disabled["after"]["status"] == "inactive"
    assert leaving_email == disabled["before"]["email"]


def audit(stack: Stack, admin: AdminAccount, **filters: str) -> list[dict[str, Any]]:
    answer = stack.api.simulate_get(f"/v1/accounts/{admin.id}/audit", params=filters,
                                    headers=admin.headers)
    assert answer.status_code == 200, answer.json
    return list(answer.json["items"])


def test_activate_restores_login_but_not_the_tokens_the_disable_ended(stack: Stack):
    admin = stack.create_account(seats=10)
    member, email, old = active_member(stack, admin)
    me = f"{users(admin)}/{member}"
    assert stack.api.simulate_get(users(admin), headers=old).status_code == 403  # works: 403

    disabled = stack.api.simulate_post(f"{me}/disable", headers=admin.headers)
    assert disabled.status_code == 200 and disabled.json["status"] == "inactive"
    assert problem(stack.api.simulate_get(users(admin), headers=old), 401)
    assert problem(login(stack, email), 401)["code"] == "user_inactive"
    assert problem(stack.api.simulate_get("/v1/me", headers=old), 401)  # no other account

    activated = stack.api.simulate_post(f"{me}/activate", headers=admin.headers)
    assert activated.status_code == 200 and activated.json["status"] == "active"
    assert problem(stack.api.simulate_get(users(admin), headers=old), 401)
    fresh = login(stack, email)
    assert fresh.status_code == 200, fresh.json
    new = {"Authorization": f"Bearer {fresh.json['token']}"}
    assert stack.api.simulate_get(users(admin), headers=new).status_code == 403  # a member
    assert stack.api.simulate_get("/v1/me", headers=new).status_code == 200
    actions = [entry["action"] for entry in audit(stack, admin, target=str(member))]
    assert actions[:2] == ["member.activate", "member.disable"]


def test_a_disabled_membership_is_refused_in_its_account_only(stack: Stack):
    first, second = stack.create_account(seats=10), stack.create_account(seats=10)
    member, email, token = active_member(stack, first)
    # The same person is a free user of a second account (R2 allows it).
    invited = stack.invite(second, email=email, user_type="free")
    assert invited.status_code == 201, invited.json
    from tests.support.members import accept

    assert accept(stack, invited.json["id"], password=PASSWORD).status_code == 200
    assert stack.api.simulate_post(f"{users(first)}/{member}/disable",
                                   headers=first.headers).status_code == 200

    assert problem(stack.api.simulate_get(users(first), headers=token), 401)
    # In the other account the same token still acts (as the free user it is there).
    assert problem(stack.api.simulate_get(users(second), headers=token), 403)["code"] \
        == "free_user"
    assert stack.api.simulate_get("/v1/me", headers=token).status_code == 200
    # Activated again, the member logs in again: the old session stays dead in that account.
    assert stack.api.simulate_post(f"{users(first)}/{member}/activate",
                                   headers=first.headers).status_code == 200
    assert problem(stack.api.simulate_get(users(first), headers=token), 401)
    fresh = {"Authorization": f"Bearer {login(stack, email).json['token']}"}
    assert problem(stack.api.simulate_get(users(first), headers=fresh), 403)["code"] \
        == "admin_required"


def test_activation_takes_a_seat_and_a_full_trial_refuses_it_saying_why(stack: Stack):
    admin = stack.create_account(plan="trial", seats=2)
    member, _, _ = active_member(stack, admin)
    me = f"{users(admin)}/{member}"
    assert stack.api.simulate_post(f"{me}/disable", headers=admin.headers).status_code == 200
    taken = stack.invite(admin, email=fresh_email())
    assert taken.status_code == 201, taken.json  # the freed seat went to someone else

    refused = problem(stack.api.simulate_post(f"{me}/activate", headers=admin.headers), 402)
    assert refused["code"] == "seat_limit" and "trial" in refused["detail"]
    assert refused["errors"][0]["code"] == "seat_limit_trial"
    assert stack.api.simulate_get(me, headers=admin.headers).json["status"] == "inactive"


def test_remove_without_a_target_on_an_owner_is_refused_and_changes_nothing(stack: Stack):
    admin = stack.create_account(seats=10)
    member, _, token = active_member(stack, admin)
    other, _, _ = active_member(stack, admin)
    give_records(admin.id, member, 3, ("leads", "tasks"))
    used = seats_used(admin.id)

    refused = problem(stack.api.simulate_delete(f"{users(admin)}/{member}",
                                                headers=admin.headers), 409)
    assert refused["code"] == "reassign_required"
    assert {error["field"] for error in refused["errors"]} == {"reassign_leads_to",
                                                               "reassign_tasks_to"}
    partly = problem(stack.api.simulate_delete(f"{users(admin)}/{member}",
                                               params={"reassign_leads_to": other},
                                               headers=admin.headers), 409)
    assert [error["field"] for error in partly["errors"]] == ["reassign_tasks_to"]

    assert stack.api.simulate_get(f"{users(admin)}/{member}",
                                  headers=admin.headers).json["status"] == "active"
    assert owned(member) == {"leads": 3, "contacts": 0, "customers": 0, "tasks": 3}
    assert seats_used(admin.id) == used
    assert stack.api.simulate_get(users(admin), headers=token).status_code == 403  # still works


def test_remove_with_per_kind_targets_leaves_nothing_pointing_at_the_member(stack: Stack):
    admin = stack.create_account(seats=10)
    member, email, token = active_member(stack, admin, name="Rita Removed")
    sales, _, _ = active_member(stack, admin)
    support, _, _ = active_member(stack, admin)
    give_records(admin.id, member, 75)
    notes = write_notes(admin.id, member, "Rita Removed", 5)
    before, used = records_in(admin.id), seats_used(admin.id)

    answer = stack.api.simulate_delete(
        f"{users(admin)}/{member}", headers=admin.headers,
        params={"reassign_to": sales, "reassign_customers_to": support,
                "reassign_tasks_to": support})
    assert answer.status_code == 202, answer.json
    assert answer.json["job"]["removes"] is True
    assert seats_used(admin.id) == used - 1
    done = finished_job(stack, admin, answer.json["job"]["id"])
    assert done["status"] == "succeeded", done

    assert pointing_at(member) == 0
    assert owned(sales) == {"leads": 75, "contacts": 75, "customers": 0, "tasks": 0}
    assert owned(support) == {"leads": 0, "contacts": 0, "customers": 75, "tasks": 75}
    assert records_in(admin.id) == before
    assert problem(stack.api.simulate_get(f"{users(admin)}/{member}", headers=admin.headers),
                   404)
    with session_scope() as session:
        assert session.get(Membership, member) is None
        assert session.scalar(select(Identity.id).where(Identity.email == email))  # stays
        assert set(session.scalars(select(Note.author_name).where(Note.id.in_(notes)))) == {
            "Rita Removed"}
        kept = session.scalars(select(AuditEntry.action).where(
            AuditEntry.account_id == admin.id, AuditEntry.target_id == str(member))).all()
    assert {"member.remove", "records.reassign"} <= set(kept)
    assert problem(stack.api.simulate_get(users(admin), headers=token), 401)  # revoked


def test_remove_of_a_member_who_owns_nothing_is_immediate(stack: Stack):
    admin = stack.create_account(seats=10)
    member, _, _ = active_member(stack, admin)
    used = seats_used(admin.id)
    answer = stack.api.simulate_delete(f"{users(admin)}/{member}", headers=admin.headers)
    assert answer.status_code == 200 and answer.json["id"] == member
    assert seats_used(admin.id) == used - 1
    assert problem(stack.api.simulate_get(f"{users(admin)}/{member}", headers=admin.headers),
                   404)
    [entry] = audit(stack, admin, action="member.remove", target=str(member))
    assert entry["before"]["status"] == "active" and entry["after"] is None


@pytest.mark.parametrize("case", ["self", "free", "inactive", "elsewhere", "unknown", "text"])
def test_a_target_must_be_an_active_paid_member_of_the_account_and_not_the_member(
        stack: Stack, case: str):
    admin = stack.create_account(seats=10)
    member, _, _ = active_member(stack, admin)
    give_records(admin.id, member, 2)
    target: object
    if case == "self":
        target = member
    elif case == "free":
        free = stack.invite(admin, email=fresh_email(), user_type="free")
        target = free.json["id"]
        from tests.support.members import accept

        accept(stack, target, password=PASSWORD)
    elif case == "inactive":
        target, _, _ = active_member(stack, admin)
        stack.api.simulate_post(f"{users(admin)}/{target}/disable", headers=admin.headers)
    elif case == "elsewhere":
        other = stack.create_account()
        target, _, _ = active_member(stack, other)
    elif case == "unknown":
        target = 10**9
    else:
        target = "someone"
    refused = problem(stack.api.simulate_post(f"{users(admin)}/{member}/disable",
                                              headers=admin.headers,
                                              json={"reassign_contacts_to": target}), 422)
    assert [error["field"] for error in refused["errors"]] == ["reassign_contacts_to"]
    assert stack.api.simulate_get(f"{users(admin)}/{member}",
                                  headers=admin.headers).json["status"] == "active"
    assert owned(member) == {"leads": 2, "contacts": 2, "customers": 2, "tasks": 2}


def test_the_last_active_admin_is_never_demoted_disabled_or_removed(stack: Stack):
    admin = stack.create_account(seats=10)
    with session_scope() as session:
        own = session.scalar(select(Membership.id).join(Identity).where(
            Identity.email == admin.email))
    me = f"{users(admin)}/{own}"
    for result in (stack.api.simulate_patch(me, headers=admin.headers, json={"role": "member"}),
                   stack.api.simulate_post(f"{me}/disable", headers=admin.headers),
                   stack.api.simulate_delete(me, headers=admin.headers)):
        assert problem(result, 409)["code"] == "last_admin"
    # With a second admin, the first may go; then the second is the last one.
    second, _, as_second = active_member(stack, admin, role="admin")
    assert stack.api.simulate_post(f"{me}/disable", headers=admin.headers).status_code == 200
    assert problem(stack.api.simulate_patch(f"{users(admin)}/{second}", headers=as_second,
                                            json={"role": "member"}), 409)["code"] == "last_admin"
    assert stack.api.simulate_patch(f"{users(admin)}/{second}", headers=as_second,
                                    json={"name": "Still Admin"}).status_code == 200
    listed = stack.api.simulate_get(users(admin), params={"role": "admin", "status": "active"},
                                    headers=as_second)
    assert [member["id"] for member in listed.json["items"]] == [second]


def test_a_member_s_records_preview_and_answers_match_the_document(stack: Stack):
    from tests.support.openapi import conforms

    described = stack.api.simulate_get("/openapi.json").json
    admin = stack.create_account(seats=10)
    member, _, _ = active_member(stack, admin)
    target, _, _ = active_member(stack, admin)
    give_records(admin.id, member, 1, ("tasks",))
    path = "/v1/accounts/{account_id}/users/{member_id}"
    answers = [
        ("get", path + "/records",
         stack.api.simulate_get(f"{users(admin)}/{member}/records", headers=admin.headers)),
        ("patch", path, stack.api.simulate_patch(f"{users(admin)}/{member}",
                                                  headers=admin.headers, json={"note": "VIP"})),
        ("post", path + "/disable",
         stack.api.simulate_post(f"{users(admin)}/{member}/disable", headers=admin.headers,
                                 json={"reassign_to": target})),
    ]
    finished_job(stack, admin, answers[-1][2].json["job"]["id"])
    answers += [
        ("post", path + "/activate",
         stack.api.simulate_post(f"{users(admin)}/{member}/activate", headers=admin.headers)),
        ("get", "/v1/accounts/{account_id}/jobs",
         stack.api.simulate_get(f"/v1/accounts/{admin.id}/jobs", headers=admin.headers)),
        ("get", "/v1/accounts/{account_id}/audit",
         stack.api.simulate_get(f"/v1/accounts/{admin.id}/audit", headers=admin.headers)),
        ("delete", path,
         stack.api.simulate_delete(f"{users(admin)}/{member}", headers=admin.headers)),
    ]
    strays = []
    for method, documented, result in answers:
        responses = described["paths"][documented][method]["responses"]
        assert str(result.status_code) in responses, (method, documented, result.text)
        schema = responses[str(result.status_code)]["content"]["application/json"]["schema"]
        strays += conforms(described, schema, result.json, f"{method} {documented}")
    assert strays == []
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Membership)
                              .where(Membership.id == member)) == 0
