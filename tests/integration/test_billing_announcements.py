"""Billing events over the real worker: an invite past the purchased seats, a trial about to
end and seats nobody uses before a renewal each tell every admin once, in the admin's
language; every event reaches the billing webhook signed, retried after failures, once after
its 200, also when the worker delivering it is killed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from babel.dates import format_date
from babel.numbers import format_currency
from sqlalchemy import func, select, update

from provisioning.accounts.models import Account
from provisioning.billing import changes
from provisioning.billing.announcements import announce_billing_events, event_context
from provisioning.billing.models import BillingEvent, Subscription, WebhookStatus
from provisioning.billing.webhooks import verify_signature
from provisioning.core.db import session_scope
from provisioning.core.models import utcnow
from provisioning.mail.models import EmailStatus, OutboxEmail
from provisioning.mail.templates import render_email
from tests.conftest import AdminAccount, Stack
from tests.support.members import active_member, fresh_email
from tests.support.processes import wait_until
from tests.support.webhooks import SECRET, Receiver, billing_event, running_receiver, webhook_row

LEASE = 6.0


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


QUIET = 2  # seconds an account buys no seat before its purchases are told
ENDING_DAYS = 5  # a trial's end is told this many days ahead (the default is 3)


@pytest.fixture(scope="module")
def stack(make_stack: Any, receiver: Receiver) -> Stack:
    return make_stack(billing_webhook_url=receiver.url, billing_webhook_secret=SECRET,
                      billing_webhook_retry_base_seconds="0.3",
                      billing_webhook_retry_max_seconds="1", billing_webhook_sweep_seconds="1",
                      billing_announce_seconds="1", billing_webhook_lease_seconds=str(LEASE),
                      billing_seats_quiet_seconds=str(QUIET),
                      billing_trial_ending_days=str(ENDING_DAYS),
                      billing_webhook_timeout_seconds="4")


def admins_in_languages(stack: Stack, admin: AdminAccount) -> dict[str, str]:
    """Beside the account's first admin (English): an admin reading Brazilian Portuguese
    and a member of a custom role that manages users, reading Russian. Returns each
    one's address and language, and adds a plain member who must hear nothing."""
    _, second_admin, _ = active_member(stack, admin, role="admin", language="pt-BR",
                                       name="Ana Souza")
    role = stack.api.simulate_post(f"/v1/accounts/{admin.id}/roles", headers=admin.headers,
                                   json={"name": "People ops", "permissions": ["users.manage"]})
    assert role.status_code == 201, role.json
    _, manager, _ = active_member(stack, admin, role="People ops", language="ru",
                                  name="Ivan Petrov")
    return {admin.email: "en", second_admin: "pt-BR", manager: "ru"}


def outbox_settled(account_id: int) -> bool:
    with session_scope() as session:
        waiting = session.scalar(select(func.count()).select_from(OutboxEmail).where(
            OutboxEmail.account_id == account_id,
            OutboxEmail.status.notin_((EmailStatus.SENT.value, EmailStatus.FAILED.value))))
    return waiting == 0


def subjects_to(stack: Stack, address: str) -> list[str]:
    return [message["subject"] for message in stack.sink.messages(to=address)]


def test_an_invite_past_the_seats_tells_each_admin_once_in_their_language(
        stack: Stack) -> None:
    admin = stack.create_account(plan="base", seats=4)
    admins = admins_in_languages(stack, admin)
    _, member, _ = active_member(stack, admin, language="es")  # the fourth seat

    fifth = fresh_email("fifth")
    assert stack.invite(admin, email=fifth).status_code == 201  # a fifth seat is bought
    with session_scope() as session:
        event = session.scalars(select(BillingEvent).where(
            BillingEvent.account_id == admin.id, BillingEvent.kind == "seats_added")).one()
        context = event_context(event.kind, event.quantity, event.details, now=utcnow())
    assert (context["seats_added"], context["seats_total"]) == (1, 5)

    def told(address: str, language: str) -> list[dict[str, Any]]:
        expected = render_email("seats_increased", language, {
            **context, "recipient_name": "", "account_name": workspace_name(admin),
            "product_name": "Provisioner", "billing_url": ""}).subject
        return [message for message in stack.sink.messages(to=address)
                if message["subject"] == expected]

    wait_until(lambda: all(told(address, language) for address, language in admins.items()),
               timeout=60, message="every admin's seats email")
    for _ in range(2):
        assert announce_billing_events().events == 0
    wait_until(lambda: outbox_settled(admin.id), timeout=60, message="the outbox to settle")
    for address, language in admins.items():
        [message] = told(address, language)
        charge = format_currency(context["charge_cents"] / 100, "USD",
                                 locale=language.replace("-", "_"))
        assert charge in message["text"] and charge in message["html"]
    # the plain member and the invitee hear of their invitation only
    assert len(subjects_to(stack, member)) == 1 and len(subjects_to(stack, fifth)) == 1


def workspace_name(admin: AdminAccount) -> str:
    with session_scope() as session:
        return session.get_one(Account, admin.id).name


def test_a_trial_ending_event_tells_each_admin_once_even_when_announced_at_once(
        stack: Stack) -> None:
    admin = stack.create_account(plan="trial", seats=10)
    admins = admins_in_languages(stack, admin)
    ends_at = utcnow() + timedelta(days=3)
    event_id = billing_event(admin.id, "trial_ending", {"trial_ends_at": ends_at.isoformat()})
    # Two more announcers race the worker's (woken by the commit, and beat's).
    start = threading.Barrier(2)
    announced: list[int] = []

    def announce() -> None:
        start.wait()
        announced.append(announce_billing_events().events)

    threads = [threading.Thread(target=announce) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(announced) <= 1

    def told(address: str, language: str) -> list[dict[str, Any]]:
        day = format_date(ends_at.date(), "long", locale=language.replace("-", "_"))
        day = " ".join(day.split())  # a subject is one line of plain spaces
        return [message for message in stack.sink.messages(to=address)
                if day in message["subject"]]

    wait_until(lambda: all(told(address, language) for address, language in admins.items()),
               timeout=60, message="every admin's trial email")
    wait_until(lambda: outbox_settled(admin.id), timeout=60, message="the outbox to settle")
    assert announce_billing_events().events == 0
    for address, language in admins.items():
        assert len(told(address, language)) == 1, (address, language)
    assert webhook_row(event_id) is not None


def test_seats_nobody_uses_before_a_renewal_are_told_to_each_admin_once_in_their_language(
        stack: Stack) -> None:
    admin = stack.create_account(plan="base", seats=12)
    admins = admins_in_languages(stack, admin)
    renews_at = utcnow() + timedelta(days=5)
    event_id = billing_event(admin.id, "seats_unused", {
        "unused": 7, "seats": 12, "purchased": 12, "used": 5, "renews_at": renews_at.isoformat()})

    def told(address: str, language: str) -> list[dict[str, Any]]:
        expected = render_email("seats_unused", language, {
            "unused": 7, "renews_at": renews_at, "recipient_name": "",
            "account_name": workspace_name(admin), "product_name": "Provisioner",
            "billing_url": ""}).subject
        return [message for message in stack.sink.messages(to=address)
                if message["subject"] == expected]

    wait_until(lambda: all(told(address, language) for address, language in admins.items()),
               timeout=60, message="every admin's unused seats email")
    wait_until(lambda: outbox_settled(admin.id), timeout=60, message="the outbox to settle")
    assert announce_billing_events().events == 0
    for address, language in admins.items():
        [message] = told(address, language)
        day = format_date(renews_at.date(), "long", locale=language.replace("-", "_"))
        for part in (message["text"], message["html"]):
            assert day in part and " 7 " in " ".join(part.split()), (address, language)
            assert "/settings/billing" in part
    assert "7 unused seats" in told(admin.email, "en")[0]["subject"]
    assert webhook_row(event_id) is not None


def test_a_trial_is_told_the_day_it_ends_whatever_the_notice_or_the_day_it_ended(
        stack: Stack) -> None:
    now = utcnow()
    ends_at = {"ending": now + timedelta(days=ENDING_DAYS, hours=-1),
               "ended": now - timedelta(days=1)}  # no recalculation saw it ending
    admins: dict[str, AdminAccount] = {}
    for trial, end in ends_at.items():
        admin = stack.create_account(plan="trial")
        with session_scope() as session:
            session.execute(update(Subscription).where(Subscription.account_id == admin.id)
                            .values(trial_ends_at=end, current_period_end=end))
        changes.recalculate_billing(admin.id)
        admins[trial] = admin

    wait_until(lambda: all(subjects_to(stack, admin.email) for admin in admins.values()),
               timeout=60, message="each admin's trial email")
    told = {"ending": "ends", "ended": "ended"}
    for trial, admin in admins.items():
        [message] = stack.sink.messages(to=admin.email)
        on_day = f"{told[trial]} on {format_date(ends_at[trial].date(), 'long', locale='en')}"
        assert message["subject"] == f"The trial of {workspace_name(admin)} {on_day}"
        for part in (message["text"], message["html"]):
            assert f"Provisioner trial of {workspace_name(admin)} {on_day}." in part
            assert "3 days" not in part


def test_the_webhook_gets_an_event_again_after_two_500s_and_never_after_its_200(
        stack: Stack, receiver: Receiver) -> None:
    admin = stack.create_account()
    event_id = billing_event(admin.id, "plan_changed", {"from": "base", "to": "pro"},
                             receiver=receiver, answers=[500, 500])

    wait_until(lambda: receiver.answered_ok(event_id), timeout=60,
               message="the third delivery, answered 200")
    # Later events are announced and sent by later sweeps, well past the retry backoff.
    for _ in range(2):
        later = billing_event(admin.id, "plan_changed", {"from": "pro", "to": "base"})
        wait_until(lambda: receiver.answered_ok(later), timeout=60,  # noqa: B023
                   message="a later event delivered")
    deliveries = receiver.of(event_id)
    assert [delivery.answered for delivery in deliveries] == [500, 500, 200]
    for delivery in deliveries:
        assert verify_signature(SECRET, delivery.signature, delivery.body, 300)
    row = webhook_row(event_id)
    assert row is not None and row.status == WebhookStatus.DELIVERED and row.attempts == 3


def test_a_worker_killed_mid_delivery_leaves_the_event_to_be_delivered_once(
        stack: Stack, receiver: Receiver) -> None:
    admin = stack.create_account()
    held = threading.Event()
    event_id = billing_event(admin.id, "period_renewed", {"plan": "base"}, receiver=receiver,
                             hold=held)
    wait_until(lambda: receiver.of(event_id), timeout=60, interval=0.02,
               message="the worker's POST to arrive")
    assert stack.worker is not None
    stack.worker.kill()  # while the receiver holds its request
    held.set()
    row = webhook_row(event_id)
    assert row is not None and row.status == WebhookStatus.SENDING

    stack.start_worker()
    wait_until(lambda: receiver.answered_ok(event_id), timeout=90,
               message="the event delivered by the new worker")
    later = billing_event(admin.id, "plan_changed", {"from": "base", "to": "pro"})
    wait_until(lambda: receiver.answered_ok(later), timeout=60, message="a later event")
    assert [delivery.answered for delivery in receiver.of(event_id)] == [None, 200]
    row = webhook_row(event_id)
    assert row is not None and row.status == WebhookStatus.DELIVERED and row.attempts == 2


def test_seats_bought_one_after_another_are_told_in_one_email(stack: Stack) -> None:
    admin = stack.create_account(plan="base", seats=1)
    started = time.monotonic()
    invited = [fresh_email("burst") for _ in range(3)]
    for email in invited:  # each buys a seat: three purchases within the quiet period
        assert stack.invite(admin, email=email).status_code == 201
    assert time.monotonic() - started < QUIET, "the burst outlasted the quiet period"
    with session_scope() as session:
        purchases = session.scalars(select(BillingEvent).where(
            BillingEvent.account_id == admin.id, BillingEvent.kind == "seats_added")).all()
        charge = sum(event.details["prorated_charge_cents"] for event in purchases)
    assert len(purchases) == 3
    wait_until(lambda: subjects_to(stack, admin.email), timeout=60,
               message="the seats email after the quiet period")
    wait_until(lambda: outbox_settled(admin.id), timeout=60, message="the outbox to settle")
    [message] = stack.sink.messages(to=admin.email)
    expected = render_email("seats_increased", "en", {
        "seats_added": 3, "seats_total": 4, "charge_cents": charge, "currency": "USD",
        "recipient_name": "", "account_name": workspace_name(admin),
        "product_name": "Provisioner", "billing_url": ""})
    assert message["subject"] == expected.subject
    assert format_currency(charge / 100, "USD", locale="en") in message["text"]
