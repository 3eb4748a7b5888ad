"""Quieter leaks: rationed imports, searches that mean what they say, and one account's file
that cannot rename a person in another."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.members.models import Identity
from tests.conftest import Stack
from tests.support.imports import people_csv, run_import, upload


def _emails(stack: Stack, admin: Any, **params: str) -> list[str]:
    answer = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users", params=params,
                                    headers=admin.headers)
    assert answer.status_code == 200, answer.text
    return [member["email"] for member in answer.json["items"]]


def test_a_search_treats_percent_and_underscore_as_themselves(stack: Stack):
    admin = stack.create_account()
    tag = uuid.uuid4().hex[:6]
    for local in ("50%off", "5000ff", "a_b", "axb"):
        assert stack.invite(admin, email=f"{local}.{tag}@example.com").status_code == 201
    assert _emails(stack, admin, q="50%") == [f"50%off.{tag}@example.com"]
    assert _emails(stack, admin, q="a_b") == [f"a_b.{tag}@example.com"]
    too_long = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users", params={"q": "x" * 101},
                                      headers=admin.headers)
    assert too_long.status_code == 422 and too_long.json["errors"][0]["field"] == "q"


def test_role_and_group_filters_take_names_in_any_case(stack: Stack):
    admin = stack.create_account()
    email = f"sales.{uuid.uuid4().hex[:6]}@example.com"
    assert stack.invite(admin, email=email, group="Sales").status_code == 201
    assert _emails(stack, admin, group="SALES") == [email]
    assert email in _emails(stack, admin, role="Member")
    assert _emails(stack, admin, group="No Such Group") == []


def test_an_import_update_renames_nobody_in_another_account(stack: Stack):
    here, there = stack.create_account(), stack.create_account()
    tag = uuid.uuid4().hex[:6]
    shared, own = f"shared.{tag}@example.com", f"own.{tag}@example.com"
    assert stack.invite(here, email=shared, name="Shared Person").status_code == 201
    assert stack.invite(there, email=shared, name="Shared Person",
                        user_type="free").status_code == 201
    assert stack.invite(here, email=own, name="Own Person").status_code == 201
    body = f"email,name\n{shared},Renamed By Here\n{own},Renamed By Here\n".encode()
    done = run_import(stack, here, body, on_existing="update", invite="false")
    assert done["status"] == "succeeded", done
    with session_scope() as session:
        names = dict(session.execute(select(Identity.email, Identity.name)
                                     .where(Identity.email.in_([shared, own]))).all())
    assert names == {shared: "Shared Person", own: "Renamed By Here"}


def test_an_account_may_start_only_so_many_imports_an_hour(stack: Stack,
                                                          monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PROVISIONING_IMPORTS_PER_HOUR", "2")
    settings.cache_clear()
    try:
        admin, other = stack.create_account(), stack.create_account()
        body, _ = people_csv(3)
        for _ in range(2):
            assert upload(stack, admin, body, dry_run="true").status_code == 202
        refused = upload(stack, admin, body, dry_run="true")
        assert refused.status_code == 429, refused.text
        assert 3500 <= int(refused.headers["retry-after"]) <= 3600
        assert upload(stack, other, body, dry_run="true").status_code == 202
    finally:
        settings.cache_clear()
