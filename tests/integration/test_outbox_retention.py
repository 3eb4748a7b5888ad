"""Sent and failed emails are forgotten after the retention period, except what is still read."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from provisioning.core.db import session_scope
from provisioning.core.models import utcnow
from provisioning.mail import outbox
from provisioning.mail.models import EmailStatus, OutboxEmail
from provisioning.members.models import Invitation
from tests.support.processes import wait_until
from tests.support.stories import all_sent


def test_old_finished_emails_are_purged_but_an_open_invitations_last_email_stays(
        make_stack: Any):
    stack = make_stack()
    admin = stack.create_account()
    run = uuid.uuid4().hex[:8]
    names = ("open", "revoked", "expired", "recent")
    members = {name: stack.invite(admin, email=f"{name}.{run}@example.com").json
               for name in names}
    wait_until(lambda: all_sent(len(names), admin.id), timeout=30, message="the invitations")
    with session_scope() as session:
        email_of = dict(session.execute(
            select(Invitation.membership_id, Invitation.last_email_id)
            .where(Invitation.account_id == admin.id)).all())
        emails = {name: email_of[members[name]["id"]] for name in names}
        deferred = outbox.queue_email(session, account_id=admin.id, recipient=f"later.{run}@x.io",
                                      recipient_name=None, template="invite_new",
                                      language="en", context={})
        long_ago = utcnow() - timedelta(days=40)
        session.execute(update(OutboxEmail).where(OutboxEmail.id == deferred)
                        .values(status=EmailStatus.DEFERRED.value))
        session.execute(update(OutboxEmail)
                        .where(OutboxEmail.id.in_([emails["open"], emails["revoked"],
                                                   emails["expired"], deferred]))
                        .values(next_attempt_at=long_ago))
        session.execute(update(Invitation).where(Invitation.last_email_id == emails["revoked"])
                        .values(revoked_at=utcnow()))
        session.execute(update(Invitation).where(Invitation.last_email_id == emails["expired"])
                        .values(expires_at=utcnow() - timedelta(days=1)))

    assert outbox.purge(chunk=1) == 2  # one row per chunk: the loop goes on until done
    with session_scope() as session:
        left = set(session.scalars(select(OutboxEmail.id).where(
            OutboxEmail.account_id == admin.id)))
    assert left == {emails["open"], emails["recent"], deferred}
    shown = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users/{members['open']['id']}",
                                   headers=admin.headers).json
    assert shown["invitation"]["state"] == "sent"
    assert outbox.purge() == 0
