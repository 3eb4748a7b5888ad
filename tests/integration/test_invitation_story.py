"""An admin invites teammates end to end: PostgreSQL, Redis, a Celery worker and the sink."""

from __future__ import annotations

import uuid

from provisioning.core.validation import LANGUAGES
from tests.conftest import Stack
from tests.support.processes import wait_until
from tests.support.stories import all_sent, invitation_link

ADMIN_PASSWORD = "correct horse battery"


def test_an_invitee_in_each_language_receives_one_email_whose_link_lets_them_join(stack: Stack):
    admin = stack.create_account()
    run = uuid.uuid4().hex[:8]
    invitees = {language: f"new.{language.lower()}.{run}@example.com" for language in LANGUAGES}
    initial_password = f"Admin-Set-{run}"

    for language, email in invitees.items():
        payload = {"email": f"  {email.upper()} ", "name": f"Invitee {language}",
                   "language": language}
        if language == "es":
            payload["initial_password"] = initial_password
        answer = stack.invite(admin, **payload)
        assert answer.status_code == 201, answer.json
        assert answer.json["email"] == email  # trimmed, case folded (R2)
        assert answer.json["status"] == "invited"
        assert answer.json["language"] == language
        assert answer.json["invitation"]["state"] == "queued"

    wait_until(lambda: all_sent(len(invitees), admin.id), timeout=60,
               message="every invitation to be sent")
    subjects = set()
    for language, email in invitees.items():
        messages = stack.sink.messages(to=email)
        assert len(messages) == 1, f"{email} got {len(messages)} emails"
        message = messages[0]
        assert message["delivery_count"] == 1
        assert f'lang="{language}"' in message["html"]
        assert f"Invitee {language}" in message["text"]  # greeted by name
        for secret in (initial_password, ADMIN_PASSWORD):
            assert secret not in stack.sink.http.get(f"/api/messages/{message['id']}/raw").text
        subjects.add(message["subject"])

        token = invitation_link(message)
        preview = stack.api.simulate_get(f"/v1/invitations/{token}")
        assert preview.json["state"] == "valid" and preview.json["email"] == email
        accepted = stack.api.simulate_post(f"/v1/invitations/{token}/accept",
                                           json={"password": f"pw-{language}-{run}"})
        assert accepted.status_code == 200, accepted.json
        assert accepted.json["status"] == "active"
        login = stack.api.simulate_post("/v1/auth/login",
                                        json={"email": email, "password": f"pw-{language}-{run}"})
        assert login.status_code == 200, login.json
        assert stack.api.simulate_get("/v1/me", headers={
            "Authorization": f"Bearer {login.json['token']}"}).json["email"] == email
        # single use
        again = stack.api.simulate_post(f"/v1/invitations/{token}/accept",
                                        json={"password": "another password"})
        assert again.status_code == 410 and again.json["code"] == "invitation_used"
    assert len(subjects) == len(LANGUAGES), "each language has its own subject"

    listed = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users", headers=admin.headers,
                                    params={"status": "active"})
    assert {m["email"] for m in listed.json["items"]} >= set(invitees.values())


def test_an_existing_login_gets_the_existing_identity_email_and_keeps_its_password(stack: Stack):
    first, second = stack.create_account(), stack.create_account()
    email = f"known.{uuid.uuid4().hex[:8]}@example.com"
    assert stack.invite(first, email=email, name="Kim Known").status_code == 201
    first_email = wait_until(lambda: stack.sink.messages(to=email), timeout=30,
                             message="first invitation")[0]
    assert "unchanged" not in first_email["text"].lower()
    token = invitation_link(first_email)
    assert stack.api.simulate_post(f"/v1/invitations/{token}/accept",
                                   json={"password": "kims password"}).status_code == 200

    # A free (collaborator) seat in another workspace: allowed next to a full one (R2).
    answer = stack.invite(second, email=email, user_type="free")
    assert answer.status_code == 201, answer.json
    assert answer.json["group"] == "Free users"
    wait_until(lambda: len(stack.sink.messages(to=email)) == 2, timeout=30,
               message="second invitation")
    existing = next(m for m in stack.sink.messages(to=email) if m["id"] != first_email["id"])
    assert "login and password stay unchanged" in existing["text"].lower()
    assert "kims password" not in existing["text"]
    token = invitation_link(existing)
    preview = stack.api.simulate_get(f"/v1/invitations/{token}").json
    assert preview["existing_identity"] is True

    refused = stack.api.simulate_post(f"/v1/invitations/{token}/accept",
                                      json={"password": "a different one"})
    assert refused.status_code == 401 and refused.json["code"] == "login_required"
    accepted = stack.api.simulate_post(f"/v1/invitations/{token}/accept",
                                       json={"password": "kims password"})
    assert accepted.status_code == 200 and accepted.json["status"] == "active"
    login = stack.api.simulate_post("/v1/auth/login",
                                    json={"email": email, "password": "kims password"})
    assert login.status_code == 200


def _invite_and_get_token(stack: Stack, admin, email: str) -> str:
    assert stack.invite(admin, email=email, name="Tess Token").status_code == 201
    message = wait_until(lambda: stack.sink.messages(to=email), timeout=30,
                         message=f"invitation to {email}")[-1]
    return invitation_link(message)


def test_revoked_expired_and_replaced_tokens_are_refused(stack: Stack):
    from sqlalchemy import update

    from provisioning.core.db import session_scope
    from provisioning.core.models import utcnow
    from provisioning.members.models import Invitation

    admin = stack.create_account()
    run = uuid.uuid4().hex[:8]

    # Revoked: the link dies and the pending member goes.
    revoked_email = f"revoked.{run}@example.com"
    token = _invite_and_get_token(stack, admin, revoked_email)
    member = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users",
                                    params={"q": revoked_email}, headers=admin.headers)
    member_id = member.json["items"][0]["id"]
    revoked = stack.api.simulate_delete(f"/v1/accounts/{admin.id}/users/{member_id}/invitation",
                                        headers=admin.headers)
    assert revoked.status_code == 200 and revoked.json["invitation"]["state"] == "revoked"
    refused = stack.api.simulate_post(f"/v1/invitations/{token}/accept",
                                      json={"password": "whatever pw"})
    assert refused.status_code == 410 and refused.json["code"] == "invitation_revoked"
    assert stack.api.simulate_get(f"/v1/accounts/{admin.id}/users/{member_id}",
                                  headers=admin.headers).status_code == 404

    # Expired: a clear answer, and the invitee can ask for a fresh link.
    expired_email = f"expired.{run}@example.com"
    token = _invite_and_get_token(stack, admin, expired_email)
    with session_scope() as session:
        session.execute(update(Invitation).where(Invitation.email == expired_email)
                        .values(expires_at=utcnow(), last_sent_at=None))
    # Expired the moment its time has passed: nothing has to mark it.
    assert stack.api.simulate_get(f"/v1/invitations/{token}").json["state"] == "expired"
    listed = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users",
                                    params={"q": expired_email}, headers=admin.headers)
    assert listed.json["items"][0]["invitation"]["state"] == "expired"
    page = stack.api.simulate_get(f"/invitations/{token}")
    assert page.status_code == 200 and "has expired" in page.text
    refused = stack.api.simulate_post(f"/v1/invitations/{token}/accept",
                                      json={"password": "whatever pw"})
    assert refused.status_code == 410 and refused.json["code"] == "invitation_expired"
    renewed = stack.api.simulate_post(f"/v1/invitations/{token}/renew")
    assert renewed.status_code == 202, renewed.json
    fresh = wait_until(lambda: len(stack.sink.messages(to=expired_email)) == 2 and
                       stack.sink.messages(to=expired_email), timeout=30, message="fresh link")
    fresh_token = {invitation_link(m) for m in fresh} - {token}
    assert len(fresh_token) == 1
    # The old link is gone for good, the fresh one works; asking again at once is refused.
    assert stack.api.simulate_get(f"/v1/invitations/{token}").status_code == 404
    assert stack.api.simulate_post(f"/v1/invitations/{token}/renew").status_code == 404
    accepted = stack.api.simulate_post(f"/v1/invitations/{fresh_token.pop()}/accept",
                                       json={"password": "fresh password"})
    assert accepted.status_code == 200


def test_resend_replaces_the_token_and_is_rate_limited(stack: Stack):
    admin = stack.create_account()
    email = f"resend.{uuid.uuid4().hex[:8]}@example.com"
    old = _invite_and_get_token(stack, admin, email)
    member_id = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users", params={"q": email},
                                       headers=admin.headers).json["items"][0]["id"]
    resend = f"/v1/accounts/{admin.id}/users/{member_id}/invitation/resend"
    too_soon = stack.api.simulate_post(resend, headers=admin.headers)
    assert too_soon.status_code == 429 and int(too_soon.headers["retry-after"]) > 0

    from sqlalchemy import update

    from provisioning.core.db import session_scope
    from provisioning.members.models import Invitation

    with session_scope() as session:  # pretend the interval has passed
        session.execute(update(Invitation).where(Invitation.email == email)
                        .values(last_sent_at=None))
    assert stack.api.simulate_post(resend, headers=admin.headers).status_code == 200
    messages = wait_until(lambda: len(stack.sink.messages(to=email)) == 2 and
                          stack.sink.messages(to=email), timeout=30, message="resent email")
    new = {invitation_link(m) for m in messages} - {old}
    assert len(new) == 1
    assert stack.api.simulate_get(f"/v1/invitations/{old}").status_code == 404

    def invitation_state() -> dict:
        return stack.api.simulate_get(f"/v1/accounts/{admin.id}/users/{member_id}",
                                      headers=admin.headers).json["invitation"]

    # The sink holds the message a moment before the worker marks it (outcomes go in groups).
    state = wait_until(lambda: invitation_state()["state"] == "sent" and invitation_state(),
                       timeout=10, message="the resent email marked sent")
    assert state["sends"] == 2 and state["state"] == "sent"
    audit = stack.api.simulate_get(f"/v1/accounts/{admin.id}/audit", headers=admin.headers)
    actions = [entry["action"] for entry in audit.json["items"]]
    assert actions[:2] == ["member.invitation_resend", "member.invite"]  # newest first
    first = stack.api.simulate_get(f"/v1/accounts/{admin.id}/audit", params={"limit": "1"},
                                   headers=admin.headers).json
    rest = stack.api.simulate_get(f"/v1/accounts/{admin.id}/audit", headers=admin.headers,
                                  params={"limit": "1", "cursor": first["next_cursor"]}).json
    assert [first["items"][0]["action"], rest["items"][0]["action"]] == actions[:2]
