"""A worker killed with SIGKILL mid-send, then restarted: every address gets exactly one email."""

from __future__ import annotations

from typing import Any

from provisioning.core.config import settings
from tests.support.processes import wait_until
from tests.support.stories import (
    INVITATIONS,
    all_sent,
    assert_each_got_exactly_one,
    invite_many,
    outbox_counts,
)


def test_sigkill_mid_send_then_restart_leaves_one_email_per_address(make_stack: Any):
    # A slow sink keeps the worker (two processes, several connections each) busy long
    # enough to be killed in the middle.
    stack = make_stack(sink_options={"delay_ms": 250})
    admin, emails = invite_many(stack, INVITATIONS)
    wait_until(lambda: len(stack.sink.messages(q="@example.com")) >= 30, timeout=60,
               message="the first emails to arrive")
    assert stack.worker is not None
    stack.worker.kill()
    stored = len(stack.sink.messages(q="@example.com"))
    assert stored < INVITATIONS, "the worker was killed before it finished"
    assert not all_sent(INVITATIONS, admin.id)

    stack.start_worker()
    wait_until(lambda: all_sent(INVITATIONS, admin.id), timeout=180, interval=0.5,
               message=f"all sent after restart; now {outbox_counts(admin.id)}")
    deliveries = assert_each_got_exactly_one(stack, emails)
    # Only a message accepted before the kill and not yet marked can arrive twice, and
    # then under the same Message-ID (the sink counts it, it is one message): per worker
    # process, those in flight on its connections and at most two groups of outcomes.
    config = settings()
    processes = 2  # the stack's worker runs with concurrency 2
    window = processes * (config.smtp_connections + 2 * config.outbox_mark_group_size)
    assert sum(1 for count in deliveries.values() if count > 1) <= window
