"""A refusing SMTP server, and one that is down for a while."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from provisioning.core.db import session_scope
from provisioning.mail.models import OutboxEmail
from tests.support.processes import port_open, wait_until
from tests.support.stories import all_sent


def email_rows(account_id: int) -> list[OutboxEmail]:
    with session_scope() as session:
        return list(session.scalars(select(OutboxEmail).where(
            OutboxEmail.account_id == account_id)).all())


def test_a_permanent_refusal_marks_the_email_failed_with_the_reason(make_stack: Any):
    stack = make_stack(sink_options={"reject_rate": 1.0})
    admin = stack.create_account()
    email = f"refused.{uuid.uuid4().hex[:8]}@example.com"
    member = stack.invite(admin, email=email).json

    rows = wait_until(lambda: [r for r in email_rows(admin.id) if r.status == "failed"],
                      timeout=30, message="the refused email to be marked failed")
    assert rows[0].attempts == 1, "a 5xx is not retried"
    assert rows[0].last_error.startswith("550")
    shown = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users/{member['id']}",
                                   headers=admin.headers).json
    assert shown["invitation"]["state"] == "failed"
    assert shown["invitation"]["failure"] == rows[0].last_error, "the admin sees why"
    listed = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users", params={"q": email},
                                    headers=admin.headers).json["items"][0]
    assert listed["invitation"]["failure"].startswith("550")
    assert stack.sink.messages(to=email) == []


def test_while_the_smtp_server_is_down_emails_wait_and_then_go_once(make_stack: Any):
    stack = make_stack()
    admin = stack.create_account()
    stack.sink.stop()
    emails = [f"down{i}.{uuid.uuid4().hex[:8]}@example.com" for i in range(5)]
    for email in emails:
        assert stack.invite(admin, email=email).status_code == 201

    wait_until(lambda: {r.status for r in email_rows(admin.id)} == {"deferred"}, timeout=30,
               message="the emails to be deferred")
    errors = [r.last_error or "" for r in email_rows(admin.id)]
    assert all("unreachable" in error or "lost" in error for error in errors), errors

    def shown() -> dict[str, Any]:
        return dict(stack.api.simulate_get(f"/v1/accounts/{admin.id}/users",
                                           params={"q": emails[0]},
                                           headers=admin.headers).json["items"][0]["invitation"])

    # Between its retries (a retry in flight reads "queued") the admin sees it deferred.
    wait_until(lambda: shown()["state"] == "deferred", timeout=30,
               message="the invitation to read deferred")
    assert shown()["failure"] is None, "a retry is no failure (nor the relay's news)"

    stack.sink.restart()
    assert port_open(stack.sink.smtp_port)
    wait_until(lambda: all_sent(len(emails), admin.id), timeout=60,
               message="the deferred emails to go once the server is back")
    for email in emails:
        assert len(stack.sink.messages(to=email)) == 1
    assert all(r.provider_response.startswith("250") for r in email_rows(admin.id))
