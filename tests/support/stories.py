"""Steps the integration stories share: reading the outbox, finding links in emails."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.mail.models import OutboxEmail

INVITATIONS = 200  # the reliability stories' batch


INVITATION_TEMPLATES = ("invite_new", "invite_existing")


def outbox_counts(account_id: int | None = None, templates: tuple[str, ...] | None = None
                  ) -> dict[str, int]:
    """How many outbox rows (of ``templates``, or all) are in each status."""
    with session_scope() as session:
        query = select(OutboxEmail.status, func.count()).group_by(OutboxEmail.status)
        if account_id is not None:
            query = query.where(OutboxEmail.account_id == account_id)
        if templates is not None:
            query = query.where(OutboxEmail.template.in_(templates))
        return {status: count for status, count in session.execute(query).all()}


def all_sent(expected: int, account_id: int | None = None) -> bool:
    return outbox_counts(account_id).get("sent", 0) == expected


def invitation_link(message: dict[str, Any]) -> str:
    """The token of the one invitation link in an email's text part."""
    base = re.escape(settings().public_url)
    tokens = set(re.findall(base + r"/invitations/([A-Za-z0-9_-]+)", message["text"]))
    assert len(tokens) == 1, f"expected one invitation link, found {tokens}"
    return tokens.pop()


def invite_many(stack: Any, count: int) -> tuple[Any, list[str]]:
    admin = stack.create_account(seats=count + 1)
    run = uuid.uuid4().hex[:8]
    emails = [f"r{i}.{run}@example.com" for i in range(count)]
    for email in emails:
        answer = stack.invite(admin, email=email)
        assert answer.status_code == 201, answer.json
    return admin, emails


def assert_each_got_exactly_one(stack: Any, emails: list[str]) -> Counter[str]:
    """Every address holds one distinct message; returns the delivery counts seen."""
    messages = stack.sink.messages(q="@example.com")
    by_address: dict[str, set[str]] = {email: set() for email in emails}
    deliveries: Counter[str] = Counter()
    for message in messages:
        for address in message["to"] if isinstance(message["to"], list) else [message["to"]]:
            address = address.lower()
            for email in by_address:
                if email in address:
                    by_address[email].add(message["message_id"])
                    deliveries[email] += message["delivery_count"]
    missing = [email for email, ids in by_address.items() if not ids]
    doubled = [email for email, ids in by_address.items() if len(ids) > 1]
    assert not missing, f"{len(missing)} addresses got nothing, e.g. {missing[:3]}"
    assert not doubled, f"{len(doubled)} addresses got two different emails, e.g. {doubled[:3]}"
    return deliveries
