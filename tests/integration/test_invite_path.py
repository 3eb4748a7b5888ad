"""The invite call over PostgreSQL: its answer, what it writes, and who may make it (R1).

The invite answers from what it wrote and checks the admin with the token's own
query; these stories hold it to what a read of the same member says, and to
writing all of an invitation or none of it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import falcon.testing
import pyotp
import pytest
from sqlalchemy import func, insert, select, update

from api.app import create_app
from provisioning.access.codes import seal_secret
from provisioning.billing.models import Subscription
from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.core.migrate import upgrade
from provisioning.core.models import AuditEntry
from provisioning.core.security import key_id
from provisioning.mail.models import OutboxEmail
from provisioning.members.models import Identity, Invitation, Membership
from tests.conftest import AdminAccount, Stack, activate, deactivate
from tests.support.members import accept

MEMBER_FIELDS = {"id", "email", "name", "role", "group", "user_type", "language", "status",
                 "two_factor", "invitation", "created_at", "note"}  # the note: admins read it


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(worker=False)  # the emails stay queued: the answers stay comparable


def fresh_email(prefix: str = "invitee") -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}@example.com"


def read_member(stack: Stack, admin: AdminAccount, member_id: int) -> dict[str, Any]:
    answer = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users/{member_id}",
                                    headers=admin.headers)
    assert answer.status_code == 200, answer.json
    return dict(answer.json)


def test_the_answer_is_what_a_read_of_the_member_says(stack: Stack):
    admin = stack.create_account(language="pt-BR")
    for payload in ({"email": fresh_email()},
                    {"email": fresh_email(), "name": "Ana", "role": "admin", "group": "Support",
                     "language": "es"},
                    {"email": fresh_email("free"), "user_type": "free"}):
        answer = stack.invite(admin, **payload)
        assert answer.status_code == 201, answer.json
        assert set(answer.json) == MEMBER_FIELDS
        assert answer.headers["location"] == f"/v1/accounts/{admin.id}/users/{answer.json['id']}"
        assert answer.json == read_member(stack, admin, answer.json["id"])
    assert answer.json["group"] == "Free users" and answer.json["language"] == "pt-BR"


def test_another_account_sees_of_an_existing_login_only_what_it_wrote_until_they_join(
        stack: Stack):
    first, second = stack.create_account(), stack.create_account()
    email = fresh_email("known")
    kim = stack.invite(first, email=email, name="Kim", initial_password="kims password")
    assert accept(stack, kim.json["id"]).status_code == 200
    secret = pyotp.random_base32()
    with session_scope() as session:
        session.execute(update(Identity).where(Identity.email == email)
                        .values(totp_enabled=True, totp_secret=seal_secret(secret)))
    answer = stack.invite(second, email=email.upper(), name="Someone Else", user_type="free")
    assert answer.status_code == 201, answer.json
    # Kim's own profile (her name, her two-factor state) is not the second account's yet.
    assert answer.json["two_factor"] is False and answer.json["name"] == "Someone Else"
    assert answer.json == read_member(stack, second, answer.json["id"])
    with session_scope() as session:
        template = session.scalars(
            select(OutboxEmail.template)
            .join(Invitation, Invitation.last_email_id == OutboxEmail.id)
            .where(Invitation.membership_id == answer.json["id"])).one()
    assert template == "invite_existing"

    # Joining with her password alone is not enough: her login asks for a code too.
    no_code = accept(stack, answer.json["id"], password="kims password")
    assert no_code.status_code == 401 and no_code.json["code"] == "totp_required"
    joined = accept(stack, answer.json["id"], password="kims password",
                    totp_code=pyotp.TOTP(secret).now())
    assert joined.status_code == 200, joined.json
    shown = read_member(stack, second, answer.json["id"])
    assert (shown["name"], shown["two_factor"]) == ("Kim", True)


def test_an_invite_writes_its_member_invitation_email_and_audit_entry_together(stack: Stack):
    admin = stack.create_account()
    email = fresh_email()
    member_id = stack.invite(admin, email=email, name="Bo").json["id"]
    with session_scope() as session:
        invitation = session.scalars(select(Invitation)
                                     .where(Invitation.membership_id == member_id)).one()
        queued = session.get_one(OutboxEmail, invitation.last_email_id)
        entry = session.scalars(select(AuditEntry).where(
            AuditEntry.account_id == admin.id, AuditEntry.action == "member.invite")).one()
    assert (invitation.email, invitation.sends, invitation.existing_identity) == (email, 1, False)
    assert (queued.recipient, queued.template, queued.status) == (email, "invite_new", "queued")
    assert queued.context["invitee_name"] == "Bo" and "derived_links" in queued.context
    assert (entry.actor_label, entry.target_id) == (admin.email, str(member_id))
    assert entry.after == {"email": email, "role": "member", "group": None,
                           "user_type": "full", "language": "en"}


def written_rows(member_id: int) -> dict[str, Any]:
    """What one invite wrote, with the ids and the secrets that differ by nature taken out
    once they are checked to point at one another."""
    with session_scope() as session:
        member = session.get_one(Membership, member_id)
        identity = session.get_one(Identity, member.identity_id)
        invitation = session.scalars(select(Invitation)
                                     .where(Invitation.membership_id == member_id)).one()
        email = session.get_one(OutboxEmail, invitation.last_email_id)
        entry = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "member.invite",
            AuditEntry.target_id == str(member_id))).one()
        counter = session.scalars(select(Subscription.full_seats_taken)
                                  .where(Subscription.account_id == member.account_id)).one()
        rows = {name: {column.key: getattr(row, column.key)
                       for column in type(row).__table__.columns}
                for name, row in (("identity", identity), ("member", member),
                                  ("invitation", invitation),
                                  ("email", email), ("entry", entry))}
    invited_at = rows["member"]["created_at"]
    assert rows["identity"]["created_at"] == rows["identity"]["updated_at"]
    assert invited_at == rows["invitation"]["created_at"] == rows["invitation"]["last_sent_at"]
    assert rows["email"]["created_at"] == rows["email"]["next_attempt_at"]
    for name in ("email", "entry"):
        assert abs((rows[name]["created_at"] - invited_at).total_seconds()) < 5
    assert rows["email"]["context"].pop("derived_links") == {"link": {
        "path": "/invitations/{token}", "purpose": "invitation",
        "nonce": rows["invitation"]["token_nonce"], "key": key_id(settings().secret_key)}}
    assert rows["email"]["message_id"].startswith("<")
    assert rows["entry"]["actor_id"] == rows["member"]["invited_by_id"]
    for name, keys in (("identity", ("id", "created_at", "updated_at")),
                       ("member", ("id", "account_id", "identity_id", "role_id", "group_id",
                                   "invited_by_id", "created_at")),
                       ("invitation", ("id", "account_id", "membership_id", "token_nonce",
                                       "token_hash", "invited_by_id", "last_email_id",
                                       "created_at", "last_sent_at", "expires_at")),
                       ("email", ("id", "account_id", "message_id", "created_at",
                                  "next_attempt_at")),
                       ("entry", ("id", "account_id", "actor_id", "actor_member_id",
                                  "target_id", "created_at"))):
        for key in keys:
            assert rows[name].pop(key) is not None, (name, key)
    rows["email"]["context"].pop("expires_at")
    return {**rows, "seats_counted": counter}


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_an_invite_writes_the_same_rows_on_postgresql_and_on_sqlite(
        stack: Stack, database: str, tmp_path: Path):
    """PostgreSQL writes an invitation's rows in one statement, SQLite one by one."""
    previous = None
    if database == "sqlite":
        previous = activate({"PROVISIONING_DATABASE_URL":
                             f"sqlite:///{tmp_path / 'invites.sqlite3'}"})
        upgrade()
    try:
        admin = stack.create_account(seats=5)
        full = stack.invite(admin, email="full.member@example.com", name="Bo", role="admin",
                            group="Support", language="tr")
        free = stack.invite(admin, email="free.member@example.com", user_type="free")
        assert (full.status_code, free.status_code) == (201, 201), (full.json, free.json)
        assert written_rows(full.json["id"]) == {
            "identity": {"email": "full.member@example.com", "name": "Bo", "language": "tr",
                         "password_hash": None, "phone": None, "time_zone": None,
                         "totp_secret": None,
                         "totp_enabled": False, "totp_last_step": None},
            "member": {"user_type": "full", "status": "invited", "language": "tr",
                       "seasonal_start": None, "seasonal_end": None, "note": None,
                       "activated_at": None, "sessions_valid_after": None,
                       "inactive_reason": None, "search_name": "bo", "search_surname": "",
                       "search_email": "full.member@example.com"},
            "invitation": {"email": "full.member@example.com", "existing_identity": False,
                           "name": "Bo", "initial_password_hash": None,
                           "accepted_at": None, "revoked_at": None,
                           "sends": 1, "resend_window_start": None, "resends_in_window": 0},
            "email": {"recipient": "full.member@example.com", "recipient_name": "Bo",
                      "template": "invite_new", "language": "tr",
                      "context": {"account_name": f"Workspace {admin.email[6:12]}",
                                  "inviter_name": "Ada Admin", "invitee_name": "Bo",
                                  "email": "full.member@example.com"},
                      "status": "queued", "attempts": 0, "claimed_at": None,
                      "claim_token": None, "last_error": None, "provider_response": None,
                      "sent_at": None},
            "entry": {"actor_label": admin.email, "action": "member.invite",
                      "target_type": "member", "before": None,
                      "after": {"email": "full.member@example.com", "role": "admin",
                                "group": "Support", "user_type": "full", "language": "tr"}},
            "seats_counted": 2,  # the admin and the new full member; the free one takes none
        }
        free_rows = written_rows(free.json["id"])
        assert free_rows["entry"]["after"]["group"] == "Free users"
        assert (free_rows["member"]["user_type"], free_rows["seats_counted"]) == ("free", 2)
        refused = stack.invite(admin, email="refused.member@example.com", role="nobody")
        assert refused.status_code == 422 and refused.json["errors"][0]["field"] == "role"
        with session_scope() as session:  # the identity it inserted went with the refusal
            assert session.scalar(select(func.count()).select_from(Identity).where(
                Identity.email == "refused.member@example.com")) == 0
    finally:
        if previous is not None:
            deactivate(previous)


def test_a_refused_invite_leaves_nothing_behind(stack: Stack):
    trial = stack.create_account(plan="trial", seats=1)
    email = fresh_email("refused")
    refused = stack.invite(trial, email=email)
    assert refused.status_code == 402, refused.json
    with session_scope() as session:
        left = [session.scalar(select(func.count()).select_from(model).where(column == email))
                for model, column in ((Identity, Identity.email), (Invitation, Invitation.email),
                                      (OutboxEmail, OutboxEmail.recipient))]
        members = session.scalar(select(func.count()).select_from(Membership)
                                 .where(Membership.account_id == trial.id))
    assert left == [0, 0, 0] and members == 1


def test_r1_the_admin_check_answers_as_before(stack: Stack):
    admin, other = stack.create_account(), stack.create_account()
    users = f"/v1/accounts/{admin.id}/users"
    payload = {"email": fresh_email()}
    # Not a member of that account, or no such account: it does not exist for them.
    for path in (users, "/v1/accounts/999999/users"):
        answer = stack.api.simulate_post(path, json=payload, headers=other.headers)
        assert answer.status_code == 404 and answer.json["detail"] == "No such account."
    # An admin whose own membership is not active may not invite.
    with session_scope() as session:
        session.execute(update(Membership).where(Membership.account_id == admin.id)
                        .values(status="inactive"))
    answer = stack.api.simulate_post(users, json=payload, headers=admin.headers)
    assert answer.status_code == 403 and "not active" in answer.json["detail"]
    # A bad token is refused before anything else.
    answer = stack.api.simulate_post(users, json=payload,
                                     headers={"Authorization": "Bearer not-a-token"})
    assert answer.status_code == 401 and answer.json["code"] == "invalid_token"


class _Writes:
    """Writes an identity with a given email, in the request (``at=request``) or at commit."""

    auth = "none"

    def on_post(self, req: Any, resp: Any) -> None:
        email = req.get_param("email")  # absent: NULL, which no identity may have
        if req.get_param("at") == "commit":
            req.context.session.add(Identity(email=email))
        else:
            req.context.session.execute(insert(Identity).values(email=email))
        resp.media = {}


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
@pytest.mark.parametrize("at", ["request", "commit"])
def test_a_taken_value_answers_409_and_a_broken_statement_500(
        stack: Stack, database: str, at: str, tmp_path: Path):
    previous = None
    if database == "sqlite":
        previous = activate({"PROVISIONING_DATABASE_URL": f"sqlite:///{tmp_path / 'w.sqlite3'}"})
        upgrade()
    try:
        app = create_app()
        app.add_route("/writes", _Writes())
        client = falcon.testing.TestClient(app)
        email = fresh_email()
        assert client.simulate_post("/writes", params={"email": email, "at": at}).status_code == 200
        taken = client.simulate_post("/writes", params={"email": email, "at": at})
        assert (taken.status_code, taken.json["code"]) == (409, "conflict")
        broken = client.simulate_post("/writes", params={"at": at})
        assert (broken.status_code, broken.json["code"]) == (500, "internal_error")
        assert broken.headers["content-type"] == "application/problem+json"
        with session_scope() as session:
            assert session.scalar(select(func.count()).select_from(Identity)
                                  .where(Identity.email == email)) == 1
    finally:
        if previous is not None:
            deactivate(previous)
