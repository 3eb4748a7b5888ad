"""R1, R2, seats (R7/R8) and bad input over the real API and PostgreSQL: clear refusals, no 500."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import AdminAccount, Stack
from tests.support.members import accept
from tests.support.openapi import conforms


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(worker=False)  # nothing here needs an email delivered


def fresh_email(prefix: str = "user") -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}@example.com"


def assert_problem(result: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert result.status_code == status, result.text
    assert result.headers["content-type"].startswith("application/problem+json")
    problem = result.json
    assert problem["status"] == status and problem["detail"]
    assert "Traceback" not in result.text
    if field is not None:
        assert field in [error["field"] for error in problem["errors"]], problem
    return problem


def member_token(stack: Stack, admin: AdminAccount, *, role: str = "member") -> str:
    email = fresh_email("member")
    invited = stack.invite(admin, email=email, role=role, initial_password="member password")
    assert invited.status_code == 201, invited.json
    login = stack.api.simulate_post("/v1/auth/login",
                                    json={"email": email, "password": "member password"})
    # invited, not yet accepted: the admin's password is not the login's until then
    assert assert_problem(login, 401)["code"] == "invalid_credentials"
    assert accept(stack, invited.json["id"]).status_code == 200
    login = stack.api.simulate_post("/v1/auth/login",
                                    json={"email": email, "password": "member password"})
    assert login.status_code == 200, login.json
    return str(login.json["token"])


def test_r1_only_admins_manage_users_and_other_accounts_are_invisible(stack: Stack):
    admin, other = stack.create_account(), stack.create_account()
    token = member_token(stack, admin)
    as_member = {"Authorization": f"Bearer {token}"}
    users = f"/v1/accounts/{admin.id}/users"

    assert_problem(stack.api.simulate_get(users, headers=as_member), 403)
    assert_problem(stack.api.simulate_post(users, json={"email": fresh_email()},
                                           headers=as_member), 403)
    assert_problem(stack.api.simulate_get(f"/v1/accounts/{admin.id}/audit",
                                          headers=as_member), 403)
    # Another account's resources do not exist for this admin.
    assert_problem(stack.api.simulate_get(f"/v1/accounts/{other.id}/users",
                                          headers=admin.headers), 404)
    listed = stack.api.simulate_get(users, headers=admin.headers).json["items"]
    assert_problem(stack.api.simulate_get(f"/v1/accounts/{other.id}/users/{listed[0]['id']}",
                                          headers=other.headers), 404)
    assert_problem(stack.api.simulate_get("/v1/accounts/999999/users", headers=admin.headers),
                   404)
    # No token, a wrong token.
    assert_problem(stack.api.simulate_get(users), 401)
    assert_problem(stack.api.simulate_get(users, headers={"Authorization": "Bearer nope"}), 401)
    assert_problem(stack.api.simulate_get(users, headers={"Authorization": "Basic abc"}), 401)


def test_r2_an_email_holds_one_paid_membership_without_revealing_where(stack: Stack):
    first, second = stack.create_account(), stack.create_account()
    email = fresh_email("dup")
    assert stack.invite(first, email=email).status_code == 201

    again = assert_problem(stack.invite(first, email=f"  {email.upper()}  "), 409)
    assert again["code"] == "already_invited" and "invitation queued" in again["detail"]
    elsewhere = assert_problem(stack.invite(second, email=email.title()), 409)
    assert elsewhere["code"] == "email_taken"
    assert str(first.id) not in elsewhere["detail"] and "Workspace" not in elsewhere["detail"]


def test_bad_input_is_a_problem_naming_the_field(stack: Stack):
    admin = stack.create_account()
    users = f"/v1/accounts/{admin.id}/users"
    headers = {**admin.headers, "Content-Type": "application/json"}

    assert_problem(stack.api.simulate_post(users, body="{not json", headers=headers), 400,
                   "body")
    assert_problem(stack.api.simulate_post(users, body="", headers=headers), 422, "body")
    assert_problem(stack.api.simulate_post(users, json=["a@b.c"], headers=admin.headers), 422,
                   "body")
    assert_problem(stack.invite(admin), 422, "email")
    assert_problem(stack.invite(admin, email=""), 422, "email")
    assert_problem(stack.invite(admin, email="not-an-email"), 422, "email")
    assert_problem(stack.invite(admin, email=42), 422, "email")
    assert_problem(stack.invite(admin, email=fresh_email(), language="xx"), 422, "language")
    assert_problem(stack.invite(admin, email=fresh_email(), role="wizard"), 422, "role")
    assert_problem(stack.invite(admin, email=fresh_email(), group="Nowhere"), 422, "group")
    assert_problem(stack.invite(admin, email=fresh_email(), user_type="robot"), 422, "user_type")
    assert_problem(stack.invite(admin, email=fresh_email(), name="x" * 500), 422, "name")
    assert_problem(stack.invite(admin, email=fresh_email(), initial_password="short"), 422,
                   "initial_password")
    several = assert_problem(stack.invite(admin, email="bad", language="xx"), 422)
    assert {e["field"] for e in several["errors"]} == {"email", "language"}
    assert_problem(stack.api.simulate_get(users, params={"limit": "lots"},
                                          headers=admin.headers), 422, "limit")
    assert_problem(stack.api.simulate_get(users, params={"cursor": "garbage!"},
                                          headers=admin.headers), 422, "cursor")
    assert_problem(stack.api.simulate_post("/v1/auth/login", json={"email": "x"}), 422,
                   "password")
    assert_problem(stack.api.simulate_get("/v1/nowhere"), 404)
    # Nothing half-written: the account still has only its admin.
    listed = stack.api.simulate_get(users, params={"total": "true"}, headers=admin.headers).json
    assert listed["total"] == 1


def test_seats_trial_refuses_paid_plan_buys_one_more(stack: Stack):
    trial = stack.create_account(plan="trial", seats=2)
    assert stack.invite(trial, email=fresh_email()).status_code == 201
    refused = assert_problem(stack.invite(trial, email=fresh_email()), 402)
    assert refused["code"] == "seat_limit" and "trial" in refused["detail"]
    assert refused["errors"][0]["code"] == "seat_limit_trial"
    # Free users never take a seat (R7).
    assert stack.invite(trial, email=fresh_email(), user_type="free").status_code == 201

    paid = stack.create_account(plan="base", seats=1)
    assert stack.invite(paid, email=fresh_email()).status_code == 201
    from provisioning.billing.models import Subscription
    from provisioning.core.db import session_scope

    with session_scope() as session:
        subscription = session.query(Subscription).filter_by(account_id=paid.id).one()
        assert subscription.seats_purchased == 2


def test_members_list_filters_and_pages(stack: Stack):
    admin = stack.create_account(seats=30)
    emails = [fresh_email(f"page{i}") for i in range(7)]
    for email in emails:
        assert stack.invite(admin, email=email, group="Support").status_code == 201
    users = f"/v1/accounts/{admin.id}/users"
    seen: list[str] = []
    cursor = None
    while True:
        params = {"status": "invited", "limit": "3", "total": "true",
                  **({"cursor": cursor} if cursor else {})}
        page = stack.api.simulate_get(users, params=params, headers=admin.headers).json
        assert page["total"] == 7
        seen += [item["email"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == emails
    found = stack.api.simulate_get(users, params={"q": emails[3][:12]}, headers=admin.headers)
    assert [m["email"] for m in found.json["items"]] == [emails[3]]
    by_group = stack.api.simulate_get(users, params={"group": "Support", "total": "true"},
                                      headers=admin.headers)
    assert by_group.json["total"] == 7
    assert_problem(stack.api.simulate_get(users, params={"status": "sleeping"},
                                          headers=admin.headers), 422, "status")


def _race(stack: Stack, admin: AdminAccount, emails: list[str]) -> list[Any]:
    """Send the invitations at the same moment from separate threads."""
    import threading

    barrier = threading.Barrier(len(emails))
    answers: list[Any] = [None] * len(emails)

    def invite(index: int) -> None:
        barrier.wait()
        answers[index] = stack.invite(admin, email=emails[index])

    threads = [threading.Thread(target=invite, args=(i,)) for i in range(len(emails))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def test_two_admins_racing_for_the_last_trial_seat_get_one_seat(stack: Stack):
    trial = stack.create_account(plan="trial", seats=3)
    assert stack.invite(trial, email=fresh_email()).status_code == 201  # 2 of 3 used
    answers = _race(stack, trial, [fresh_email("race") for _ in range(6)])
    assert sorted(a.status_code for a in answers) == [201, 402, 402, 402, 402, 402]
    listed = stack.api.simulate_get(f"/v1/accounts/{trial.id}/users", params={"total": "1"},
                                    headers=trial.headers)
    assert listed.json["total"] == 3


def test_the_same_email_invited_twice_at_once_gives_one_member(stack: Stack):
    admin = stack.create_account(seats=20)
    email = fresh_email("twice")
    answers = _race(stack, admin, [email, email.upper(), f" {email} "])
    assert sorted(a.status_code for a in answers) == [201, 409, 409]
    assert all(a.headers["content-type"].startswith("application/problem+json")
               for a in answers if a.status_code == 409)
    listed = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users",
                                    params={"q": email, "total": "true"}, headers=admin.headers)
    assert listed.json["total"] == 1


def test_a_custom_role_with_users_manage_may_invite_and_one_without_may_not(stack: Stack):
    admin = stack.create_account(seats=10)
    roles = f"/v1/accounts/{admin.id}/roles"
    for name, permissions in (("Team lead", ["users.manage", "leads.view"]),
                              ("Viewer", ["leads.view"])):
        made = stack.api.simulate_post(roles, json={"name": name, "permissions": permissions},
                                       headers=admin.headers)
        assert made.status_code == 201, made.json
    assert_problem(stack.api.simulate_post(roles, json={"name": "Viewer", "permissions": []},
                                           headers=admin.headers), 409)
    assert_problem(stack.api.simulate_post(roles, json={"name": "X", "permissions": ["fly"]},
                                           headers=admin.headers), 422, "permissions")
    lead = member_token(stack, admin, role="Team lead")
    viewer = member_token(stack, admin, role="Viewer")
    users = f"/v1/accounts/{admin.id}/users"
    invited = stack.api.simulate_post(users, json={"email": fresh_email(), "role": "viewer"},
                                      headers={"Authorization": f"Bearer {lead}"})
    assert invited.status_code == 201, invited.text
    # The member role holds more than the lead's own role: the lead cannot give it.
    assert assert_problem(stack.api.simulate_post(
        users, json={"email": fresh_email()}, headers={"Authorization": f"Bearer {lead}"}),
        403)["code"] == "cannot_grant"
    assert_problem(stack.api.simulate_post(users, json={"email": fresh_email()},
                                           headers={"Authorization": f"Bearer {viewer}"}), 403)


def test_answers_carry_the_fields_the_document_names(stack: Stack):
    described = stack.api.simulate_get("/openapi.json").json
    admin = stack.create_account()
    account = f"/v1/accounts/{admin.id}"
    invited = stack.invite(admin, email=fresh_email(), name="Ana")
    upload = stack.api.simulate_post(f"{account}/imports", body=f"email\n{fresh_email()}\n",
                                     headers={**admin.headers, "Content-Type": "text/csv"})
    job = f"/v1/jobs/{upload.json['job']['id']}"
    answers = [
        ("post", "/v1/accounts/{account_id}/users", 201, invited),
        ("post", "/v1/accounts/{account_id}/imports", 202, upload),
    ]
    for method, path, url in [
        ("get", "/v1/me", "/v1/me"),
        ("get", "/v1/accounts/{account_id}/users", f"{account}/users"),
        ("get", "/v1/accounts/{account_id}/users/{member_id}",
         f"{account}/users/{invited.json['id']}"),
        ("get", "/v1/accounts/{account_id}/api-keys", f"{account}/api-keys"),
        ("get", "/v1/accounts/{account_id}/roles", f"{account}/roles"),
        ("get", "/v1/accounts/{account_id}/groups", f"{account}/groups"),
        ("get", "/v1/accounts/{account_id}/audit", f"{account}/audit"),
        ("get", "/v1/accounts/{account_id}/imports", f"{account}/imports"),
        ("get", "/v1/jobs/{job_id}", job),
        ("post", "/v1/jobs/{job_id}/cancel", f"{job}/cancel"),
        ("post", "/v1/accounts/{account_id}/api-keys", f"{account}/api-keys"),
        ("post", "/v1/accounts/{account_id}/roles", f"{account}/roles"),
    ]:
        bodies = {f"{account}/api-keys": {"name": "ci"},
                  f"{account}/roles": {"name": "Reader", "permissions": ["leads.view"]}}
        result = stack.api.simulate_request(method.upper(), url, headers=admin.headers,
                                            json=bodies.get(url) if method == "post" else None)
        answers.append((method, path, result.status_code, result))
    refused = stack.api.simulate_get("/v1/invitations/no-such-token")
    strays = conforms(described, described["components"]["schemas"]["Problem"], refused.json,
                       "problem")
    for method, path, status, result in answers:
        responses = described["paths"][path][method]["responses"]
        assert str(result.status_code) in responses, (method, path, result.text)
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        strays += conforms(described, schema, result.json, f"{method} {path}")
    assert strays == []
