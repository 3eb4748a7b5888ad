"""Every way an invitation is sent makes the same email: invite, import, resend, renewal.

One builder (``provisioning/members/invitation_builder.py``) makes them all; these
stories would fail if one path grew its own template choice, context, Message-ID
recipe or expiry, or if a delivered link stopped hashing to the stored token hash.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import select, update

from provisioning.core.config import settings
from provisioning.core.db import make_engine, session_scope
from provisioning.core.migrate import alembic_config, upgrade
from provisioning.core.models import JSONType, utcnow
from provisioning.core.security import hash_secret, invitation_token, key_id
from provisioning.mail.models import OutboxEmail
from provisioning.members.models import Invitation
from tests.conftest import Stack
from tests.support.imports import run_import
from tests.support.members import accept
from tests.support.processes import wait_until
from tests.support.servers import PostgresServer
from tests.support.stories import invitation_link

CSV_HEADER = "email,name,language"


@pytest.fixture(scope="module")
def sent_by_each_path(stack: Stack) -> tuple[int, dict[str, str]]:
    """One invitee per way an invitation goes out, in Spanish: the account, {path: address}."""
    admin = stack.create_account(seats=20)
    elsewhere = stack.create_account()
    run = uuid.uuid4().hex[:8]
    to = {path: f"{path}.{run}@example.com" for path in (
        "invite", "invite_existing", "import", "import_existing", "first_send", "resend",
        "renewal")}
    for path in ("invite_existing", "import_existing"):  # people with a login (free there, R2)
        known = stack.invite(elsewhere, email=to[path], name="Known", user_type="free",
                             initial_password="a known password")
        assert known.status_code == 201 and accept(stack, known.json["id"]).status_code == 200
    for path in ("invite", "invite_existing", "renewal"):
        answer = stack.invite(admin, email=to[path], name=f"Named {path}", language="es")
        assert answer.status_code == 201, answer.json
    rows = [f"{to[path]},Named {path},es" for path in ("import", "import_existing", "resend")]
    invited = run_import(stack, admin, "\n".join([CSV_HEADER, *rows]).encode())
    assert invited["summary"]["created"] == 3, invited
    later = run_import(stack, admin, f"{CSV_HEADER}\n{to['first_send']},Named first,es\n".encode(),
                       invite="false")
    assert later["summary"]["created"] == 1, later

    members = {item["email"]: item["id"] for item in stack.api.simulate_get(
        f"/v1/accounts/{admin.id}/users", headers=admin.headers).json["items"]}
    with session_scope() as session:  # the rate limit's interval has passed; one has expired
        ours = Invitation.account_id == admin.id
        session.execute(update(Invitation)
                        .where(ours, Invitation.email.in_([to["resend"], to["renewal"]]))
                        .values(last_sent_at=None))
        session.execute(update(Invitation).where(ours, Invitation.email == to["renewal"])
                        .values(expires_at=utcnow()))
        renewal_nonce = session.scalars(select(Invitation.token_nonce).where(
            ours, Invitation.email == to["renewal"])).one()
    for path in ("first_send", "resend"):
        resent = stack.api.simulate_post(
            f"/v1/accounts/{admin.id}/users/{members[to[path]]}/invitation/resend",
            headers=admin.headers)
        assert resent.status_code == 200, resent.json
    renewed = stack.api.simulate_post(
        f"/v1/invitations/{invitation_token(settings().secret_key, renewal_nonce)}/renew")
    assert renewed.status_code == 202, renewed.json
    return admin.id, to


def stored(account_id: int, address: str) -> tuple[Invitation, OutboxEmail]:
    """The account's invitation to ``address`` and the email it last sent."""
    with session_scope() as session:
        invitation = session.scalars(select(Invitation).where(
            Invitation.account_id == account_id, Invitation.email == address)).one()
        email = session.get_one(OutboxEmail, invitation.last_email_id)
        session.expunge_all()
    return invitation, email


def shape(invitation: Invitation, email: OutboxEmail) -> dict[str, Any]:
    """What must not differ between the paths, once each row is checked against its own."""
    context = dict(email.context)
    assert context.pop("derived_links") == {"link": {
        "path": "/invitations/{token}", "purpose": "invitation", "nonce": invitation.token_nonce,
        "key": key_id(settings().secret_key)}}
    assert datetime.fromisoformat(context.pop("expires_at")) == invitation.expires_at
    assert invitation.expires_at - invitation.last_sent_at == timedelta(
        days=settings().invitation_ttl_days)
    assert invitation.token_hash == hash_secret(invitation_token(settings().secret_key,
                                                                 invitation.token_nonce))
    assert context.pop("email") == email.recipient == invitation.email
    assert context.pop("invitee_name") == email.recipient_name
    recipe = r"<[0-9a-f]{24}@" + re.escape(settings().mail_domain) + r">"
    return {"template": email.template, "language": email.language,
            "context": sorted(context), "message_id": bool(re.fullmatch(recipe, email.message_id)),
            "account": email.account_id == invitation.account_id,
            "inviter": bool(context["inviter_name"])}


def test_invite_import_resend_and_renewal_queue_the_same_email(
        sent_by_each_path: tuple[int, dict[str, str]]):
    account_id, to = sent_by_each_path
    alike = {"language": "es", "context": ["account_name", "inviter_name"],
             "message_id": True, "account": True, "inviter": True}
    for path, address in to.items():
        template = "invite_existing" if path.endswith("_existing") else "invite_new"
        assert shape(*stored(account_id, address)) == {**alike, "template": template}, path


def test_each_delivered_link_hashes_to_the_stored_token_hash(
        stack: Stack, sent_by_each_path: tuple[int, dict[str, str]]):
    account_id, to = sent_by_each_path
    for path, address in to.items():
        invitation, email = stored(account_id, address)
        message = wait_until(lambda address=address, email=email: next(
            (m for m in stack.sink.messages(to=address) if m["message_id"] == email.message_id),
            None), timeout=60, message=f"the {path} email in the sink")
        assert hash_secret(invitation_link(message)) == invitation.token_hash, path
        assert "invitation_nonce" not in message["text"] and invitation.token_nonce not in (
            message["text"] + message["html"]), path


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_the_migration_gives_unsent_invitation_emails_a_derived_link(
        postgres: PostgresServer, tmp_path: Path, database: str):
    url = (postgres.create_database(f"builder_{uuid.uuid4().hex[:6]}")
           if database == "postgresql" else f"sqlite:///{tmp_path / 'builder.sqlite3'}")
    upgrade(url, "0007")
    outbox = sa.table("outbox_emails", *(sa.column(name) for name in (
        "id", "recipient", "template", "language", "message_id", "status", "attempts",
        "next_attempt_at", "created_at")), sa.column("context", JSONType))
    now = utcnow()
    contexts = {"queued": {"email": "a@x.io", "invitation_nonce": "n-queued"},
                "deferred": {"email": "b@x.io", "invitation_nonce": "n-deferred"},
                "sent": {"email": "c@x.io", "invitation_nonce": "n-sent"},
                "failed": {"email": "d@x.io"}}
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(outbox.insert(), [
                {"id": index, "recipient": context["email"], "template": "invite_new",
                 "language": "en", "message_id": f"<m{index}@x.io>", "status": status,
                 "attempts": 0, "next_attempt_at": now, "created_at": now, "context": context}
                for index, (status, context) in enumerate(contexts.items(), 1)])

        def read() -> dict[str, Any]:
            with engine.connect() as connection:
                return dict(connection.execute(sa.select(outbox.c.status, outbox.c.context)
                                               .order_by(outbox.c.id)).all())

        def invitation_columns() -> set[str]:
            return {column["name"] for column in sa.inspect(engine).get_columns("invitations")}

        upgrade(url)
        after = read()
        for status in ("queued", "deferred"):
            assert after[status] == {"email": contexts[status]["email"], "derived_links": {
                "link": {"path": "/invitations/{token}", "purpose": "invitation",
                         "nonce": f"n-{status}"}}}
        assert (after["sent"], after["failed"]) == (contexts["sent"], contexts["failed"])
        assert "expired_at" not in invitation_columns()

        command.downgrade(alembic_config(url), "0007")
        assert read() == contexts and "expired_at" in invitation_columns()
    finally:
        engine.dispose()
