"""Two-factor sign-in over the real API (R13), the email and password changes it governs
(R12), and the login limits guarding every route that checks a login's secrets, on Redis
and on the embedded default. Codes and limits read one clock the test moves."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import falcon.testing
import pyotp
import pytest
from sqlalchemy import select, update

from provisioning.access import limits
from provisioning.access.models import RecoveryCode
from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.core.models import utcnow
from provisioning.core.security import derived_token
from provisioning.mail.models import OutboxEmail
from provisioning.members.models import Identity
from provisioning.profile.models import EmailChange
from tests.conftest import AdminAccount, Clock, Stack, activate, deactivate
from tests.support.openapi import conforms as _conforms

PASSWORD = "correct horse battery"
WINDOW = 900


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(worker=False)


def _login(api: falcon.testing.TestClient, email: str, password: str = PASSWORD,
           code: str | None = None) -> Any:
    body = {"email": email, "password": password} | ({"totp_code": code} if code else {})
    return api.simulate_post("/v1/auth/login", json=body)


def _session(api: falcon.testing.TestClient, email: str, password: str = PASSWORD
             ) -> dict[str, str]:
    answer = _login(api, email, password)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json['token']}"}


def _code(secret: str, clock: Clock, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock.at + 30 * steps)


def _conforming(api: falcon.testing.TestClient, result: Any, path: str, method: str) -> None:
    described = api.simulate_get("/openapi.json").json
    answer = described["paths"][path][method]["responses"][str(result.status_code)]
    schema = answer["content"]["application/json"]["schema"]
    assert _conforms(described, schema, result.json, f"{method} {path}") == []


def test_a_two_factor_story_over_the_api(stack: Stack, clock: Clock):
    admin = stack.create_account()
    api, me = stack.api, _session(stack.api, admin.email)

    setup = api.simulate_post("/v1/me/2fa/setup", headers=me)
    assert setup.status_code == 200, setup.text
    _conforming(api, setup, "/v1/me/2fa/setup", "post")
    secret = setup.json["secret"]
    assert setup.json["otpauth_uri"].startswith("otpauth://totp/")
    assert setup.json["qr_svg"].startswith("<svg") and "xmlns" in setup.json["qr_svg"]
    with session_scope() as session:  # sealed at rest, never the secret itself
        stored = session.scalar(select(Identity.totp_secret).where(Identity.email == admin.email))
    assert stored and secret not in stored
    assert _login(api, admin.email).status_code == 200, "not on until a code confirms it"

    enabled = api.simulate_post("/v1/me/2fa/enable", json={"code": _code(secret, clock)},
                                headers=me)
    assert enabled.status_code == 200, enabled.text
    _conforming(api, enabled, "/v1/me/2fa/enable", "post")
    recovery = enabled.json["recovery_codes"]
    assert len(recovery) == len(set(recovery)) == 10
    with session_scope() as session:  # hashed: no code is stored as it was shown
        hashes = set(session.scalars(select(RecoveryCode.code_hash)).all())
    assert not hashes & set(recovery)
    profile = api.simulate_get("/v1/me", headers=me).json
    assert profile["two_factor"] is True and "note" not in profile
    listed = api.simulate_get(f"/v1/accounts/{admin.id}/users?two_factor=true",
                              headers=admin.headers).json["items"]
    assert [member["email"] for member in listed] == [admin.email]
    assert api.simulate_get(f"/v1/accounts/{admin.id}/users?two_factor=false",
                            headers=admin.headers).json["items"] == []

    without = _login(api, admin.email)
    assert without.status_code == 401 and without.json["code"] == "totp_required"
    clock.advance(30)
    code = _code(secret, clock)
    assert _login(api, admin.email, code=code).status_code == 200
    again = _login(api, admin.email, code=code)
    assert again.status_code == 401 and again.json["code"] == "totp_invalid"
    clock.advance(30)
    stale = _login(api, admin.email, code=_code(secret, clock, steps=-2))
    assert stale.status_code == 401 and stale.json["code"] == "totp_invalid"

    assert _login(api, admin.email, code=recovery[0].upper()).status_code == 200
    reused = _login(api, admin.email, code=recovery[0])
    assert reused.status_code == 401 and reused.json["code"] == "totp_invalid"

    # R12: no email change while 2FA is on, even with the right password.
    refused = api.simulate_post("/v1/me/email", json={"email": f"new.{admin.email}",
                                                      "password": PASSWORD}, headers=me)
    assert refused.status_code == 409 and refused.json["code"] == "two_factor_on"
    again_setup = api.simulate_post("/v1/me/2fa/setup", headers=me)
    assert again_setup.status_code == 409 and again_setup.json["code"] == "two_factor_on"

    wrong = api.simulate_post("/v1/me/2fa/disable", json={"code": "000000" if _code(
        secret, clock) != "000000" else "111111"}, headers=me)
    assert wrong.status_code == 403 and wrong.json["code"] == "totp_invalid"
    off = api.simulate_post("/v1/me/2fa/disable", json={"code": _code(secret, clock)},
                            headers=me)
    assert off.status_code == 204, off.text
    assert api.simulate_get("/v1/me", headers=me).json["two_factor"] is False
    assert _login(api, admin.email).status_code == 200
    assert _login(api, admin.email, code=recovery[1]).status_code == 200  # ignored when off
    with session_scope() as session:
        assert session.scalars(select(RecoveryCode.id)).all() == []


def test_a_recovery_code_turns_two_factor_off(stack: Stack, clock: Clock):
    admin = stack.create_account()
    me = _session(stack.api, admin.email)
    secret = stack.api.simulate_post("/v1/me/2fa/setup", headers=me).json["secret"]
    recovery = stack.api.simulate_post("/v1/me/2fa/enable", json={"code": _code(secret, clock)},
                                       headers=me).json["recovery_codes"]
    off = stack.api.simulate_post("/v1/me/2fa/disable", json={"code": recovery[3]}, headers=me)
    assert off.status_code == 204, off.text


def test_a_password_change_needs_the_current_password_and_ends_other_sessions(stack: Stack,
                                                                              clock: Clock):
    admin = stack.create_account()
    api = stack.api
    mine, other = _session(api, admin.email), _session(api, admin.email)
    change = "/v1/me/password"
    missing = api.simulate_post(change, json={"new_password": "a new long passphrase"},
                                headers=mine)
    assert missing.status_code == 422
    assert [e["field"] for e in missing.json["errors"]] == ["current_password"]
    wrong = api.simulate_post(change, json={"current_password": "not it",
                                            "new_password": "a new long passphrase"},
                              headers=mine)
    assert wrong.status_code == 403 and wrong.json["code"] == "wrong_password"
    for weak, code in (("short", "too_short"), ("Password123", "too_common"),
                       (admin.email, "same_as_email")):
        refused = api.simulate_post(change, json={"current_password": PASSWORD,
                                                  "new_password": weak}, headers=mine)
        assert refused.status_code == 422, refused.text
        assert refused.json["errors"][0] == {"field": "new_password", "code": code,
                                             "message": refused.json["errors"][0]["message"]}

    done = api.simulate_post(change, json={"current_password": PASSWORD,
                                           "new_password": "a new long passphrase"},
                             headers=mine)
    assert done.status_code == 204, done.text
    assert api.simulate_get("/v1/me", headers=mine).status_code == 200
    assert api.simulate_get("/v1/me", headers=other).status_code == 401
    assert api.simulate_get("/v1/me", headers=admin.headers).status_code == 200  # API key
    assert _login(api, admin.email).status_code == 401
    assert _login(api, admin.email, "a new long passphrase").status_code == 200


def _outbox(recipient: str) -> list[OutboxEmail]:
    with session_scope() as session:
        return list(session.scalars(select(OutboxEmail).where(
            OutboxEmail.recipient == recipient)).all())


def test_an_email_change_is_confirmed_from_the_new_address(stack: Stack, clock: Clock):
    admin, other = stack.create_account(), stack.create_account()
    api, me = stack.api, _session(stack.api, admin.email)
    new = f"renamed.{uuid.uuid4().hex[:8]}@example.com"
    wrong = api.simulate_post("/v1/me/email", json={"email": new, "password": "nope"},
                              headers=me)
    assert wrong.status_code == 403 and wrong.json["code"] == "wrong_password"
    asked = api.simulate_post("/v1/me/email", json={"email": new.upper(), "password": PASSWORD},
                              headers=me)
    assert asked.status_code == 202, asked.text
    _conforming(api, asked, "/v1/me/email", "post")
    [confirm] = _outbox(new)
    [notice] = _outbox(admin.email)
    assert (confirm.template, notice.template) == ("email_change_confirm",
                                                   "email_changed_notice")
    link = confirm.context["derived_links"]["link"]
    assert set(link) == {"path", "purpose", "nonce", "key"}  # a nonce, never a working token
    token = derived_token(settings().secret_key, link["purpose"], link["nonce"])
    assert api.simulate_get("/v1/me", headers=me).json["email"] == admin.email  # not yet

    bad = api.simulate_post("/v1/me/email/confirm", json={"token": "x" * 64}, headers=me)
    assert bad.status_code == 404
    done = api.simulate_post("/v1/me/email/confirm", json={"token": token}, headers=me)
    assert done.status_code == 200, done.text
    _conforming(api, done, "/v1/me/email/confirm", "post")
    assert done.json["email"] == new
    assert _login(api, new).status_code == 200
    assert _login(api, admin.email).status_code == 401
    used = api.simulate_post("/v1/me/email/confirm", json={"token": token}, headers=me)
    assert used.status_code == 404

    # R2: an address another login holds by the time of the confirmation is refused.
    theirs = _session(api, other.email)
    asked = api.simulate_post("/v1/me/email", json={"email": new, "password": PASSWORD},
                              headers=theirs)
    assert asked.status_code == 202
    link = [e for e in _outbox(new) if e.template == "email_change_confirm"][-1]
    token = derived_token(settings().secret_key, "email-change",
                          link.context["derived_links"]["link"]["nonce"])
    taken = api.simulate_post("/v1/me/email/confirm", json={"token": token}, headers=theirs)
    assert taken.status_code == 409 and taken.json["code"] == "email_taken"


def test_the_profile_is_read_and_changed_with_validated_fields(stack: Stack):
    admin = stack.create_account()
    api = stack.api
    changed = api.simulate_patch("/v1/me", json={
        "name": "Ada Lovelace", "phone": "+55 11 98765-4321", "language": "pt-br",
        "time_zone": "America/Sao_Paulo"}, headers=admin.headers)
    assert changed.status_code == 200, changed.text
    _conforming(api, changed, "/v1/me", "patch")
    assert {key: changed.json[key] for key in ("name", "phone", "language", "time_zone")} == {
        "name": "Ada Lovelace", "phone": "+5511987654321", "language": "pt-BR",
        "time_zone": "America/Sao_Paulo"}
    assert changed.json["photo_url"] is None and changed.json["two_factor"] is False
    refused = api.simulate_patch("/v1/me", json={
        "phone": "12345", "language": "fr", "time_zone": "Mars/Olympus", "note": "x"},
        headers=admin.headers)
    assert refused.status_code == 422
    assert sorted(e["field"] for e in refused.json["errors"]) == ["note"]
    refused = api.simulate_patch("/v1/me", json={
        "phone": "12345", "language": "fr", "time_zone": "Mars/Olympus"}, headers=admin.headers)
    assert sorted((e["field"], e["code"]) for e in refused.json["errors"]) == [
        ("language", "invalid_language"), ("phone", "invalid_phone"),
        ("time_zone", "invalid_time_zone")]
    cleared = api.simulate_patch("/v1/me", json={"phone": None}, headers=admin.headers)
    assert cleared.json["phone"] is None and cleared.json["name"] == "Ada Lovelace"


# --- brute force, on Redis (the stack) and on the embedded default ----------------------


def _guessing_codes_is_limited(api: falcon.testing.TestClient, guesser: dict[str, str],
                               bystander: dict[str, str], clock: Clock) -> None:
    secret = api.simulate_post("/v1/me/2fa/setup", headers=guesser).json["secret"]
    right = _code(secret, clock)
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(5):
        answer = api.simulate_post("/v1/me/2fa/enable", json={"code": wrong}, headers=guesser)
        assert answer.status_code == 403, answer.text
    locked = api.simulate_post("/v1/me/2fa/enable", json={"code": right}, headers=guesser)
    assert locked.status_code == 429, locked.text
    assert locked.headers["content-type"].startswith("application/problem+json")
    assert 0 < int(locked.headers["retry-after"]) <= WINDOW
    for path, body in (("/v1/me/2fa/setup", None), ("/v1/me/2fa/disable", {"code": right}),
                       ("/v1/me/password", {"current_password": PASSWORD,
                                            "new_password": "another long passphrase"}),
                       ("/v1/me/email/confirm", {"token": "x" * 64})):
        answer = api.simulate_post(path, json=body, headers=guesser)
        assert answer.status_code == 429, (path, answer.text)

    other = api.simulate_post("/v1/me/2fa/setup", headers=bystander).json["secret"]
    unaffected = api.simulate_post("/v1/me/2fa/enable", json={"code": _code(other, clock)},
                                   headers=bystander)
    assert unaffected.status_code == 200, unaffected.text

    clock.advance(WINDOW - 1)
    still = api.simulate_post("/v1/me/2fa/enable", json={"code": _code(secret, clock)},
                              headers=guesser)
    assert still.status_code == 429, "still within the window"
    clock.advance(2)
    opened = api.simulate_post("/v1/me/2fa/enable", json={"code": _code(secret, clock)},
                               headers=guesser)
    assert opened.status_code == 200, opened.text


def test_guessing_two_factor_codes_is_limited_on_redis(stack: Stack, clock: Clock):
    assert isinstance(limits.store(), limits.RedisStore)
    guesser, bystander = stack.create_account(), stack.create_account()
    _guessing_codes_is_limited(stack.api, guesser.headers, bystander.headers, clock)


def test_guessing_the_current_password_is_limited(stack: Stack, clock: Clock):
    admin = stack.create_account()
    me = _session(stack.api, admin.email)
    for _ in range(5):
        answer = stack.api.simulate_post("/v1/me/password", json={
            "current_password": "a guess", "new_password": "another long passphrase"},
            headers=me)
        assert answer.status_code == 403
    locked = stack.api.simulate_post("/v1/me/password", json={
        "current_password": PASSWORD, "new_password": "another long passphrase"}, headers=me)
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    assert _login(stack.api, admin.email).status_code == 429  # one budget with the login


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[falcon.testing.TestClient, list[AdminAccount]]]:
    """The embedded default: a SQLite file and the filesystem broker, no Redis."""
    from api.app import create_app
    from provisioning.accounts.workspaces import create_account
    from provisioning.core.migrate import upgrade

    previous = activate({"PROVISIONING_DATABASE_URL": f"sqlite:///{tmp_path / 'p.sqlite3'}",
                         "PROVISIONING_BROKER_URL": "filesystem://",
                         "PROVISIONING_VAR_DIR": str(tmp_path)})
    try:
        upgrade()
        admins = []
        for name in ("Guesser", "Bystander"):
            email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
            with session_scope() as session:
                created = create_account(session, name=name, admin_email=email,
                                         admin_password=PASSWORD, plan="base", seats=5)
            admins.append(AdminAccount(created.account_id, created.admin_token, email))
        yield falcon.testing.TestClient(create_app()), admins
    finally:
        deactivate(previous)


def test_guessing_two_factor_codes_is_limited_on_the_embedded_default(embedded: Any,
                                                                      clock: Clock):
    api, (guesser, bystander) = embedded
    assert isinstance(limits.store(), limits.DatabaseStore)
    _guessing_codes_is_limited(api, guesser.headers, bystander.headers, clock)


def _asked_change(api: falcon.testing.TestClient, email: str) -> tuple[str, str]:
    """Ask to move ``email``'s login to a new address; the new address and the link's token."""
    new = f"moved.{uuid.uuid4().hex[:8]}@example.com"
    asked = api.simulate_post("/v1/me/email", json={"email": new, "password": PASSWORD},
                              headers=_session(api, email))
    assert asked.status_code == 202, asked.text
    link = [e for e in _outbox(new) if e.template == "email_change_confirm"][-1]
    return new, derived_token(settings().secret_key, "email-change",
                              link.context["derived_links"]["link"]["nonce"])


def test_the_link_to_a_new_email_opens_a_page_that_confirms_it(stack: Stack):
    admin = stack.create_account()
    api = stack.api
    new, token = _asked_change(api, admin.email)
    page = api.simulate_get(f"/email-change/{token}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert new in page.text and 'id="confirm"' in page.text
    nonce = page.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    # what the page's script calls, in order, exists and works
    called = re.findall(r'call\("(/v1/[^"]+)"', page.text)
    assert called == ["/v1/auth/login", "/v1/me/email/confirm", "/v1/auth/logout"]
    login = _login(api, admin.email)
    bearer = {"Authorization": f"Bearer {login.json['token']}"}
    confirmed = api.simulate_post(called[1], json={"token": token}, headers=bearer)
    assert confirmed.status_code == 200 and confirmed.json["email"] == new
    assert api.simulate_post(called[2], headers=bearer).status_code == 204
    gone = api.simulate_get(f"/email-change/{token}")
    assert gone.status_code == 404 and "does not work" in gone.text


def test_the_page_of_an_expired_or_forged_link_says_so(stack: Stack):
    admin = stack.create_account()
    new, token = _asked_change(stack.api, admin.email)
    with session_scope() as session:
        session.execute(update(EmailChange).values(expires_at=utcnow() - timedelta(minutes=1))
                        .where(EmailChange.new_email == new))
    expired = stack.api.simulate_get(f"/email-change/{token}")
    assert expired.status_code == 200 and "has expired" in expired.text and 'id="confirm"' \
        not in expired.text
    forged = stack.api.simulate_get("/email-change/%3C%2Fscript%3E%3Cscript%3Ealert(1)")
    assert forged.status_code == 404
    assert "</script><script>alert(1)" not in forged.text


def test_a_confirmation_is_refused_once_two_factor_is_on(stack: Stack, clock: Clock):
    admin = stack.create_account()
    api = stack.api
    new, token = _asked_change(api, admin.email)
    me = _session(api, admin.email)
    secret = api.simulate_post("/v1/me/2fa/setup", headers=me).json["secret"]
    enabled = api.simulate_post("/v1/me/2fa/enable", json={"code": _code(secret, clock)},
                                headers=me)
    assert enabled.status_code == 200, enabled.text
    refused = api.simulate_post("/v1/me/email/confirm", json={"token": token}, headers=me)
    assert refused.status_code == 409 and refused.json["code"] == "two_factor_on"
    assert api.simulate_get("/v1/me", headers=me).json["email"] == admin.email
