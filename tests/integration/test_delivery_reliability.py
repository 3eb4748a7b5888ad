"""Reliability: a flaky SMTP server loses nothing and sends nothing twice."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from provisioning.core.db import session_scope
from provisioning.mail.models import OutboxEmail
from tests.support.processes import wait_until
from tests.support.stories import (
    INVITATIONS,
    all_sent,
    assert_each_got_exactly_one,
    invite_many,
    outbox_counts,
)


def test_with_half_the_messages_temp_failed_all_are_delivered_exactly_once(make_stack: Any):
    stack = make_stack(sink_options={"tempfail_rate": 0.5, "seed": 7})
    admin, emails = invite_many(stack, INVITATIONS)
    wait_until(lambda: all_sent(INVITATIONS, admin.id), timeout=180, interval=0.5,
               message=f"all sent; now {outbox_counts(admin.id)}")
    deliveries = assert_each_got_exactly_one(stack, emails)
    assert set(deliveries.values()) == {1}, "a temp-failed message is never stored twice"
    with session_scope() as session:
        retried = session.scalar(select(func.count()).where(
            OutboxEmail.account_id == admin.id, OutboxEmail.attempts > 1))
    assert retried and retried > INVITATIONS // 5, "the sink really refused about half"
