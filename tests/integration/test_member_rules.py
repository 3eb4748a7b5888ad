"""One member rule set: the API's invite and the import take the same fields the same way.

Each case goes through both paths on PostgreSQL, into two twin accounts: an invite through
``POST …/users`` and a row of an import (JSON, the same keys). Both must accept it and make
the same member, or both refuse it naming the same fields and codes.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import update

from provisioning.accounts.models import Account, Role
from provisioning.core.db import session_scope
from tests.conftest import AdminAccount, Stack
from tests.support.imports import report, run_import

SEASON = {"user_type": "seasonal", "seasonal_start": "2026-12-01", "seasonal_end": "2027-01-31"}
# (what is sent beside a fresh email, and the member both paths make, or the problems both
# report as (field, code) pairs)
CASES: list[tuple[dict[str, Any], dict[str, str] | set[tuple[str, str]]]] = [
    ({"role": "MEMBER"}, {"role": "member", "user_type": "full"}),
    ({"role": "sales lead"}, {"role": "Sales Lead"}),
    ({"role": "Owner"}, {("role", "unknown_role")}),
    ({"group": "sales"}, {"group": "Sales"}),
    ({"group": "Finance"}, {("group", "unknown_group")}),
    ({"group": "Free users"}, {("group", "invalid_group")}),
    ({"user_type": "free", "group": "Sales"}, {("group", "invalid_group")}),
    ({"user_type": "FREE", "group": "free USERS"}, {"group": "Free users", "user_type": "free"}),
    ({"user_type": "free"}, {"group": "Free users", "user_type": "free"}),
    ({"user_type": "guest"}, {("user_type", "invalid_user_type")}),
    ({"user_type": "Full", "seasonal_start": "soon"}, {"user_type": "full"}),
    ({"language": "PT_br"}, {"language": "pt-BR"}),
    ({"language": "xx"}, {("language", "invalid_language")}),
    (SEASON, {"user_type": "seasonal"}),
    ({**SEASON, "seasonal_start": "20261201"}, {("seasonal_start", "invalid_date")}),
    ({**SEASON, "seasonal_end": "2026-02-30"}, {("seasonal_end", "invalid_date")}),
    ({**SEASON, "seasonal_start": "2027-02-01"}, {("seasonal_end", "seasonal_window")}),
    ({**SEASON, "seasonal_end": None}, {("seasonal_end", "required")}),
    ({"email": "not-an-email"}, {("email", "invalid_email")}),
    ({"role": "Owner", "group": "Finance", "language": "xx"},
     {("role", "unknown_role"), ("group", "unknown_group"), ("language", "invalid_language")}),
]
COMPARED = ("role", "group", "user_type", "language")


def _twin(stack: Stack, *, seasonal_seats: int) -> AdminAccount:
    admin = stack.create_account(seats=100)
    with session_scope() as session:
        session.execute(update(Account).where(Account.id == admin.id)
                        .values(seasonal_seats=seasonal_seats))
        session.add(Role(account_id=admin.id, name="Sales Lead", permissions=["leads.view"]))
    return admin


def _through_both(stack: Stack, rows: list[dict[str, Any]], *, seasonal_seats: int
                  ) -> tuple[list[Any], list[Any]]:
    """Each row invited into one account and imported into its twin: for each row, the
    member made or the set of (field, code) refused, by the API and by the import."""
    invited_into, imported_into = (_twin(stack, seasonal_seats=seasonal_seats),
                                   _twin(stack, seasonal_seats=seasonal_seats))
    by_api: list[Any] = []
    for row in rows:  # R2: the twin gets its own addresses
        sent = {key: value for key, value in row.items() if value is not None}
        answer = stack.invite(invited_into, **{**sent, "email": "api." + row["email"]})
        if answer.status_code == 201:
            by_api.append({key: answer.json[key] for key in COMPARED})
        else:
            assert answer.status_code in (409, 422, 400), answer.text
            by_api.append({(e["field"], e["code"]) for e in answer.json["errors"]})
    body = json.dumps(rows).encode()
    done = run_import(stack, imported_into, body, media="application/json", invite="false")
    assert done["status"] == "succeeded", done
    refused: dict[int, set[tuple[str, str]]] = {}
    for error in report(stack, imported_into, done["id"]):
        refused.setdefault(int(error["line"]), set()).add((error["column"], error["code"]))
    members = {member["email"]: member for member in stack.api.simulate_get(
        f"/v1/accounts/{imported_into.id}/users", params={"limit": "1000"},
        headers=imported_into.headers).json["items"]}
    by_import: list[Any] = []
    for number, row in enumerate(rows, start=1):  # a JSON row's line is its element's number
        member = members.get(str(row["email"]).lower())
        by_import.append({key: member[key] for key in COMPARED} if member
                         else refused.get(number, set()))
    return by_api, by_import


def _rows(cases: list[tuple[dict[str, Any], Any]]) -> list[dict[str, Any]]:
    return [{"email": f"rule.{uuid.uuid4().hex[:10]}@example.com", "name": "Rule Case", **sent}
            for sent, _ in cases]


def test_the_invite_and_the_import_apply_one_rule_set(stack: Stack):
    rows = _rows(CASES)
    by_api, by_import = _through_both(stack, rows, seasonal_seats=3)
    for row, (_, expected), api, imported in zip(rows, CASES, by_api, by_import, strict=True):
        assert api == imported, f"{row}: the API made {api}, the import {imported}"
        if isinstance(expected, set):
            assert api == expected, row
        else:
            assert {key: api[key] for key in expected} == expected, row


@pytest.mark.parametrize("sent", [SEASON], ids=["seasonal"])
def test_without_seasonal_seats_both_refuse_a_seasonal_member_with_one_code(stack: Stack,
                                                                            sent: dict[str, str]):
    rows = _rows([(sent, None)])
    by_api, by_import = _through_both(stack, rows, seasonal_seats=0)
    assert by_api == by_import == [{("user_type", "no_seasonal_seats")}]


def test_the_api_answers_no_seasonal_seats_as_a_conflict(stack: Stack):
    admin = stack.create_account()
    answer = stack.invite(admin, email=f"s.{uuid.uuid4().hex[:8]}@example.com", **SEASON)
    assert answer.status_code == 409, answer.text
    assert answer.json["code"] == "no_seasonal_seats"


def test_role_names_that_differ_only_in_case_are_one_name(stack: Stack):
    admin = stack.create_account()
    roles = f"/v1/accounts/{admin.id}/roles"
    created = stack.api.simulate_post(roles, json={"name": "Sales Lead", "permissions": []},
                                      headers=admin.headers)
    assert created.status_code == 201, created.text
    again = stack.api.simulate_post(roles, json={"name": "SALES LEAD", "permissions": []},
                                    headers=admin.headers)
    assert again.status_code == 409 and again.json["code"] == "role_exists"
