"""Logging in and out, 2FA codes at login, API keys, readiness and the OpenAPI document."""

from __future__ import annotations

import uuid
from typing import Any

import pyotp
import pytest
from sqlalchemy import update

from provisioning.access.codes import seal_secret
from provisioning.core.db import session_scope
from provisioning.members.models import Identity
from tests.conftest import Stack


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(worker=False)


def login(stack: Stack, email: str, password: str, code: str | None = None) -> Any:
    body = {"email": email, "password": password}
    if code is not None:
        body["totp_code"] = code
    return stack.api.simulate_post("/v1/auth/login", json=body)


def test_login_logout_and_wrong_credentials(stack: Stack):
    admin = stack.create_account()
    answer = login(stack, f"  {admin.email.upper()} ", "correct horse battery")
    assert answer.status_code == 200 and answer.json["expires_at"]
    headers = {"Authorization": f"Bearer {answer.json['token']}"}
    assert stack.api.simulate_get("/v1/me", headers=headers).json["email"] == admin.email
    assert stack.api.simulate_post("/v1/auth/logout", headers=headers).status_code == 204
    assert stack.api.simulate_get("/v1/me", headers=headers).status_code == 401

    wrong = login(stack, admin.email, "not the password")
    assert wrong.status_code == 401 and wrong.json["code"] == "invalid_credentials"
    nobody = login(stack, f"nobody.{uuid.uuid4().hex}@example.com", "whatever")
    assert nobody.status_code == 401 and nobody.json["detail"] == wrong.json["detail"]


def test_login_with_two_factor_asks_for_a_code_that_works_once(stack: Stack):
    admin = stack.create_account()
    secret = pyotp.random_base32()
    with session_scope() as session:
        session.execute(update(Identity).where(Identity.email == admin.email)
                        .values(totp_secret=seal_secret(secret), totp_enabled=True))
    missing = login(stack, admin.email, "correct horse battery")
    assert missing.status_code == 401 and missing.json["code"] == "totp_required"
    wrong = login(stack, admin.email, "correct horse battery", "000000"
                  if pyotp.TOTP(secret).now() != "000000" else "111111")
    assert wrong.status_code == 401 and wrong.json["code"] == "totp_invalid"
    code = pyotp.TOTP(secret).now()
    assert login(stack, admin.email, "correct horse battery", code).status_code == 200
    replay = login(stack, admin.email, "correct horse battery", code)
    assert replay.status_code == 401 and replay.json["code"] == "totp_invalid"


def test_api_keys_act_in_their_account_until_revoked(stack: Stack):
    admin, other = stack.create_account(), stack.create_account()
    created = stack.api.simulate_post(f"/v1/accounts/{admin.id}/api-keys",
                                      json={"name": "HR sync"}, headers=admin.headers)
    assert created.status_code == 201, created.json
    key = {"Authorization": f"Bearer {created.json['token']}"}
    users = f"/v1/accounts/{admin.id}/users"
    assert stack.api.simulate_get(users, headers=key).status_code == 200
    # Scoped to its account, even for an admin of another account.
    assert stack.api.simulate_get(f"/v1/accounts/{other.id}/users", headers=key).status_code \
        == 404
    listed = stack.api.simulate_get(f"/v1/accounts/{admin.id}/api-keys", headers=admin.headers)
    assert "HR sync" in [k["name"] for k in listed.json["items"]]
    assert created.json["token"] not in listed.text
    revoke = stack.api.simulate_delete(f"/v1/accounts/{admin.id}/api-keys/{created.json['id']}",
                                       headers=admin.headers)
    assert revoke.status_code == 204
    assert stack.api.simulate_get(users, headers=key).status_code == 401
    again = stack.api.simulate_delete(f"/v1/accounts/{admin.id}/api-keys/{created.json['id']}",
                                      headers=admin.headers)
    assert again.status_code == 404
    blank = stack.api.simulate_post(f"/v1/accounts/{admin.id}/api-keys", json={},
                                    headers=admin.headers)
    assert blank.status_code == 422 and blank.json["errors"][0]["field"] == "name"


def test_health_readiness_and_openapi(stack: Stack):
    assert stack.api.simulate_get("/healthz").json == {"status": "ok"}
    ready = stack.api.simulate_get("/readyz")
    assert ready.status_code == 200, ready.json
    assert ready.json["checks"] == {"database": "ok", "broker": "ok"}
    document = stack.api.simulate_get("/openapi.json").json
    assert document["openapi"].startswith("3.")
    assert "/v1/accounts/{account_id}/users" in document["paths"]


def test_an_api_key_may_carry_an_expiry(stack: Stack):
    from datetime import UTC, datetime, timedelta

    from provisioning.access.models import ApiToken

    admin = stack.create_account()
    keys = f"/v1/accounts/{admin.id}/api-keys"
    later = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    created = stack.api.simulate_post(keys, json={"name": "Quarterly sync",
                                                  "expires_at": later.isoformat()},
                                      headers=admin.headers)
    assert created.status_code == 201, created.text
    assert datetime.fromisoformat(created.json["expires_at"]) == later
    key = {"Authorization": f"Bearer {created.json['token']}"}
    users = f"/v1/accounts/{admin.id}/users"
    assert stack.api.simulate_get(users, headers=key).status_code == 200
    listed = stack.api.simulate_get(keys, headers=admin.headers).json["items"]
    assert [k["expires_at"] for k in listed if k["name"] == "Quarterly sync"] != [None]

    with session_scope() as session:  # the expiry comes
        session.execute(update(ApiToken).where(ApiToken.id == created.json["id"])
                        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert stack.api.simulate_get(users, headers=key).status_code == 401
    listed = stack.api.simulate_get(keys, headers=admin.headers).json["items"]
    assert "Quarterly sync" not in [k["name"] for k in listed]

    for bad, code in (("yesterday", "invalid_time"), ("2001-01-01T00:00:00Z", "past")):
        refused = stack.api.simulate_post(keys, json={"name": "x", "expires_at": bad},
                                          headers=admin.headers)
        assert refused.status_code == 422 and refused.json["errors"][0] == {
            "field": "expires_at", "message": refused.json["errors"][0]["message"], "code": code}
