"""The billing webhook outbox over PostgreSQL, its sweeps driven by the test with its own clock:
retried with backoff until a 2xx, then never again; two sweeps at once send each event once;
a claim whose worker died is taken over once its lease runs out."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, func, insert, select, text, update

from provisioning.accounts.workspaces import create_account
from provisioning.billing import webhooks
from provisioning.billing.announcements import ANNOUNCE_TASK, announce_billing_events
from provisioning.billing.models import BillingEvent, BillingWebhook, WebhookStatus
from provisioning.billing.webhooks import deliver_webhooks, verify_signature
from provisioning.core import dispatch
from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.core.migrate import alembic_config, upgrade
from provisioning.core.models import utcnow
from provisioning.mail.models import OutboxEmail
from tests.conftest import Stack, activate, deactivate
from tests.support.processes import VENV_BIN, wait_until
from tests.support.webhooks import SECRET, Receiver, billing_event, running_receiver, webhook_row

RETRY_BASE = 60.0
LEASE = 30.0
SEATS = {"from": 10, "to": 11, "plan": "base", "prorated_charge_cents": 750}


class MovingClock:
    """The sweeps' clock, moved by the test."""

    def __init__(self) -> None:
        self.at = utcnow()

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def stack(make_stack: Any, receiver: Receiver) -> Stack:
    # No worker: the tests run the announcing and the sweeps themselves.
    return make_stack(worker=False, billing_webhook_url=receiver.url,
                      billing_seats_quiet_seconds="0", billing_webhook_secret=SECRET,
                      billing_webhook_batch_size="5",
                      billing_webhook_retry_base_seconds=str(RETRY_BASE),
                      billing_webhook_retry_max_seconds="3600",
                      billing_webhook_lease_seconds=str(LEASE),
                      billing_webhook_timeout_seconds="5")


def test_a_failing_receiver_gets_the_event_again_after_backoff_and_never_after_its_200(
        stack: Stack, receiver: Receiver) -> None:
    account = stack.create_account()
    event_id = billing_event(account.id, "seats_added", SEATS, receiver=receiver,
                             answers=[500, 500])
    assert announce_billing_events().webhooks >= 1
    clock = MovingClock()

    assert event_id in deliver_webhooks(now=clock).deferred
    deliver_webhooks(now=clock)  # the retry is not due yet
    assert len(receiver.of(event_id)) == 1
    clock.advance(RETRY_BASE)  # the first backoff is at most the base
    assert event_id in deliver_webhooks(now=clock).deferred
    clock.advance(2 * RETRY_BASE)
    assert event_id in deliver_webhooks(now=clock).delivered

    for _ in range(3):  # more sweeps, well past any backoff
        clock.advance(3600)
        deliver_webhooks(now=clock)
    assert announce_billing_events().webhooks == 0
    deliveries = receiver.of(event_id)
    assert [delivery.answered for delivery in deliveries] == [500, 500, 200]
    assert len({delivery.body for delivery in deliveries}) == 1  # the same event each time
    last = deliveries[-1]
    now = clock().timestamp() - 3 * 3600
    assert verify_signature(SECRET, last.signature, last.body, 300, now=now)
    assert not verify_signature(SECRET, last.signature, last.body.replace(b"750", b"1"), 300,
                                now=now)
    assert not verify_signature("another secret", last.signature, last.body, 300, now=now)
    assert json.loads(last.body) == {
        "id": event_id, "type": "seats_added", "account_id": account.id,
        "created_at": json.loads(last.body)["created_at"], "data": SEATS}
    row = webhook_row(event_id)
    assert row is not None and row.status == WebhookStatus.DELIVERED and row.attempts == 3
    assert SECRET not in (row.last_error or "")


def test_two_sweeps_at_once_post_each_event_once(stack: Stack, receiver: Receiver) -> None:
    account = stack.create_account()
    events = [billing_event(account.id, "plan_changed", {"from": "base", "to": "pro"})
              for _ in range(30)]
    announce_billing_events()
    clock = MovingClock()
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def sweep() -> None:
        try:
            start.wait()
            while deliver_webhooks(now=clock).delivered:
                pass
        except BaseException as failure:  # surfaced below, not lost in the thread
            failures.append(failure)

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures
    deliver_webhooks(now=clock)  # whatever a thread's last empty claim skipped
    assert [len(receiver.of(event_id)) for event_id in events] == [1] * len(events)
    assert all(row is not None and row.status == WebhookStatus.DELIVERED
               for row in map(webhook_row, events))


class WorkerKilled(BaseException):
    """What a SIGKILL looks like from inside: nothing after it runs."""


def test_a_claim_whose_worker_died_is_delivered_once_after_its_lease(
        stack: Stack, receiver: Receiver) -> None:
    account = stack.create_account()
    event_id = billing_event(account.id, "trial_expired", {"plan": "trial"})
    announce_billing_events()
    clock = MovingClock()

    def dies_on_this_event(url: str, body: bytes, headers: dict[str, str],
                           timeout: float) -> None:
        if headers[webhooks.EVENT_ID_HEADER] == str(event_id):
            raise WorkerKilled
        webhooks.post(url, body, headers, timeout)

    with pytest.raises(WorkerKilled):
        deliver_webhooks(now=clock, send=dies_on_this_event)
    row = webhook_row(event_id)
    assert row is not None and row.status == WebhookStatus.SENDING

    clock.advance(LEASE / 2)
    deliver_webhooks(now=clock)  # the dead worker's claim still holds
    assert receiver.of(event_id) == []
    clock.advance(LEASE)
    assert event_id in deliver_webhooks(now=clock).delivered
    for _ in range(3):
        clock.advance(LEASE * 10)
        deliver_webhooks(now=clock)
    assert receiver.answered_ok(event_id) == 1 and len(receiver.of(event_id)) == 1


def test_without_a_url_no_webhook_is_queued(stack: Stack, receiver: Receiver) -> None:
    account = stack.create_account()
    previous = activate({"PROVISIONING_BILLING_WEBHOOK_URL": ""})
    try:
        event_id = billing_event(account.id, "plan_changed", {"from": "base", "to": "pro"})
        announced = announce_billing_events()
        assert announced.events >= 1 and announced.webhooks == 0
        assert deliver_webhooks().delivered == []
    finally:
        deactivate(previous)
    assert webhook_row(event_id) is None
    announce_billing_events()  # announced already: a URL set later does not send the past
    assert webhook_row(event_id) is None


def test_delivered_webhooks_are_purged_after_the_outbox_retention(
        stack: Stack, receiver: Receiver) -> None:
    account = stack.create_account()
    old, fresh = (billing_event(account.id, "plan_changed", {"to": "pro"}) for _ in range(2))
    announce_billing_events()
    clock = MovingClock()
    deliver_webhooks(now=clock)
    retention = timedelta(days=settings().outbox_retention_days)
    with session_scope() as session:
        session.execute(update(BillingWebhook).where(BillingWebhook.event_id == old).values(
            delivered_at=utcnow() - retention - timedelta(hours=1)))

    assert webhooks.purge() >= 1
    assert webhook_row(old) is None
    fresh_row = webhook_row(fresh)
    assert fresh_row is not None and fresh_row.status == WebhookStatus.DELIVERED
    announce_billing_events()
    assert webhook_row(old) is None  # never announced, nor sent, again


def test_writing_an_event_wakes_an_announcer_after_commit(stack: Stack) -> None:
    account = stack.create_account()
    sent: list[str] = []
    # Only the announcer's wake-ups: a trailing wake-up of the webhook sender, left by an
    # earlier test's announcing, may arrive at any moment.
    previous = dispatch.use_sender(
        lambda name, args, options: sent.append(name) if name == ANNOUNCE_TASK else None)
    try:
        billing_event(account.id, "plan_changed", {"to": "pro"})  # an ORM row
        wait_until(lambda: ANNOUNCE_TASK in sent, timeout=10, message="a wake-up")
        sent.clear()
        with session_scope() as session:  # a Core insert through the session
            session.execute(insert(BillingEvent).values(
                account_id=account.id, kind="plan_changed", quantity=0, details={},
                created_at=utcnow()))
            assert sent == []  # not before the commit
        wait_until(lambda: ANNOUNCE_TASK in sent, timeout=10, message="a wake-up")
    finally:
        dispatch.use_sender(previous)


def test_the_embedded_database_announces_once_and_delivers_after_a_retry(
        stack: Stack, tmp_path: Path) -> None:
    with running_receiver() as receiver:  # its own: event ids start again at 1 here
        previous = activate({"PROVISIONING_DATABASE_URL": f"sqlite:///{tmp_path / 'p.sqlite3'}",
                             "PROVISIONING_BROKER_URL": "filesystem://",
                             "PROVISIONING_VAR_DIR": str(tmp_path),
                             "PROVISIONING_BILLING_WEBHOOK_URL": receiver.url})
        try:
            event_id = _embedded_story(receiver)
        finally:
            deactivate(previous)
        assert [delivery.answered for delivery in receiver.of(event_id)] == [503, 200]


def _embedded_story(receiver: Receiver) -> int:
    """On a SQLite database of its own: a trial's admin told once, its webhook retried once."""
    upgrade()
    with session_scope() as session:
        account_id = create_account(
            session, name="Embedded", admin_email=f"admin-{uuid.uuid4().hex[:8]}@example.com",
            admin_password="correct horse battery", plan="trial", seats=5).account_id
    ends = (utcnow() + timedelta(days=3)).isoformat()
    event_id = billing_event(account_id, "trial_ending", {"trial_ends_at": ends},
                             receiver=receiver, answers=[503])
    assert announce_billing_events().events == 1
    assert announce_billing_events().events == 0
    with session_scope() as session:
        emails = session.scalar(select(func.count()).select_from(OutboxEmail).where(
            OutboxEmail.account_id == account_id, OutboxEmail.template == "trial_ending"))
    assert emails == 1
    clock = MovingClock()
    assert event_id in deliver_webhooks(now=clock).deferred
    clock.advance(RETRY_BASE)
    assert event_id in deliver_webhooks(now=clock).delivered
    clock.advance(3600)
    assert deliver_webhooks(now=clock).delivered == []
    return event_id


def test_an_event_whose_details_cannot_make_its_email_holds_back_no_other(
        stack: Stack) -> None:
    account = stack.create_account()
    broken = billing_event(account.id, "trial_ending", {"trial_ends_at": "soon"})
    sound = billing_event(account.id, "trial_ending",
                          {"trial_ends_at": (utcnow() + timedelta(days=3)).isoformat()})

    announced = announce_billing_events()
    assert announced.events >= 2 and announced.emails == 1  # the account's one admin
    with session_scope() as session:
        contexts = session.scalars(select(OutboxEmail.context).where(
            OutboxEmail.account_id == account.id, OutboxEmail.template == "trial_ending")).all()
    assert len(contexts) == 1
    assert webhook_row(broken) is not None and webhook_row(sound) is not None


def test_the_upgrade_marks_the_events_already_there_as_announced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'before.sqlite3'}"
    upgrade(url, "0013")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO accounts (id, name, default_language, "
                                "seasonal_seats, created_at) VALUES (1, 'Old', 'en', 0, "
                                "'2026-01-01 00:00:00')"))
        connection.execute(text("INSERT INTO billing_events (account_id, kind, quantity, "
                                "details, created_at) VALUES (1, 'seats_added', 1, '{}', "
                                "'2026-01-02 00:00:00')"))
    upgrade(url)
    with engine.begin() as connection:
        assert connection.execute(text(
            "SELECT event_id FROM billing_announcements")).scalars().all() == [1]
        assert connection.execute(text("SELECT count(*) FROM billing_webhooks")).scalar() == 0
    command.downgrade(alembic_config(url), "0013")  # and back down cleanly
    engine.dispose()


def test_webhooks_that_failed_for_good_go_once_more_when_asked(
        stack: Stack, receiver: Receiver) -> None:
    account = stack.create_account()
    attempts = settings().billing_webhook_max_attempts
    event_id = billing_event(account.id, "plan_changed", {"from": "base", "to": "pro"},
                             receiver=receiver, answers=[500] * attempts)
    announce_billing_events()
    clock = MovingClock()
    for _ in range(attempts):
        deliver_webhooks(now=clock)
        clock.advance(7200)  # past the longest backoff
    row = webhook_row(event_id)
    assert row is not None and (row.status, row.attempts) == (WebhookStatus.FAILED, attempts)

    def retry(*options: str) -> dict[str, int]:
        done = subprocess.run([str(VENV_BIN / "provision"), "retry-webhooks", *options],
                              env={**os.environ, **stack.env}, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    assert retry("--since", tomorrow) == {"queued": 0}  # only events written since then
    assert retry() == {"queued": 1}
    assert event_id in deliver_webhooks(now=clock).delivered
    assert [delivery.answered for delivery in receiver.of(event_id)] == [500] * attempts + [200]
    assert retry() == {"queued": 0}  # delivered: nothing left to send again
    clock.advance(7200)
    deliver_webhooks(now=clock)
    assert len(receiver.of(event_id)) == attempts + 1
