"""Several SMTP connections per worker, outcomes marked in groups: each email still arrives once.

The send path runs in this process (``outbox.deliver``) against PostgreSQL, with the
real sink or, to make connections fail on cue, a small aiosmtpd server of the test's own.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from provisioning.core import dispatch
from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.core.models import utcnow
from provisioning.mail import delivery, outbox
from provisioning.mail.links import DERIVED_LINKS, derived_link
from provisioning.mail.models import EmailStatus, OutboxEmail
from provisioning.mail.sender import DeliveryError, MailSender, SmtpSender, SmtpServer
from tests.conftest import Stack
from tests.support.processes import free_port, wait_until

CONNECTIONS = 4
EMAILS = 120  # dozens of emails for each connection, several groups of outcomes


@pytest.fixture(scope="module")
def quiet_stack(make_stack: Any) -> Stack:
    """No worker: the test runs the send path itself. A short lease: abandoned rows return soon."""
    return make_stack(worker=False, outbox_lease_seconds="1")


def queue_invitations(count: int, local_part: Callable[[int], str] = "conn{}".format
                      ) -> list[str]:
    """``count`` invitation emails in the outbox; their addresses."""
    run = uuid.uuid4().hex[:8]
    addresses = [f"{local_part(i)}.{run}@example.com" for i in range(count)]
    expires_at = (utcnow() + timedelta(days=7)).isoformat()
    with session_scope() as session:
        for address in addresses:
            outbox.queue_email(
                session, account_id=None, recipient=address, recipient_name=None,
                template="invite_new", language="en",
                context={"account_name": "Acme", "inviter_name": "Ada", "invitee_name": None,
                         "email": address, "expires_at": expires_at,
                         DERIVED_LINKS: {"link": derived_link("/invitations/{token}",
                                                              "invitation", uuid.uuid4().hex)}})
    return addresses


def rows_for(addresses: list[str]) -> list[OutboxEmail]:
    with session_scope() as session:
        return list(session.scalars(
            select(OutboxEmail).where(OutboxEmail.recipient.in_(addresses))).all())


def all_marked_sent(addresses: list[str]) -> bool:
    return {row.status for row in rows_for(addresses)} == {"sent"}


def send_until_all_sent(addresses: list[str], senders: list[SmtpSender]) -> None:
    """Run the send task's body until every row is sent (retries and abandoned claims included)."""
    def sent() -> bool:
        delivery.deliver([], senders)
        return all_marked_sent(addresses)

    wait_until(sent, timeout=60, interval=0.1, message="every email marked sent")


@pytest.fixture()
def senders_to() -> Iterator[Any]:
    """Opens SMTP connections to a port; closes them after the test."""
    opened: list[SmtpSender] = []

    def open_senders(port: int, count: int = CONNECTIONS) -> list[SmtpSender]:
        opened.extend(SmtpSender(SmtpServer("127.0.0.1", port, timeout=10)) for _ in range(count))
        return opened[-count:]

    yield open_senders
    for sender in opened:
        sender.close()


def test_several_connections_deliver_a_batch_exactly_once(quiet_stack: Stack,
                                                          senders_to: Any) -> None:
    addresses = queue_invitations(EMAILS)
    send_until_all_sent(addresses, senders_to(quiet_stack.sink.smtp_port))

    deliveries = quiet_stack.sink.deliveries()
    assert {address: deliveries.get(address) for address in addresses} == {
        address: (1, 1) for address in addresses}, "one message, delivered once, per address"
    rows = rows_for(addresses)
    assert all(row.provider_response.startswith("250 ") for row in rows)
    assert all(row.attempts == 1 and row.sent_at is not None for row in rows)


def test_marks_that_cannot_be_written_leave_rows_to_resend_under_the_same_message_id(
        quiet_stack: Stack, senders_to: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    addresses = queue_invitations(EMAILS)
    written = Counter[str]()
    real_write = delivery.write_marks

    def database_gone_after_the_first_group(group: list[delivery.Outcome]) -> None:
        written["groups"] += 1
        if written["groups"] > 1:
            raise ConnectionError("the database went away")
        real_write(group)

    monkeypatch.setattr(delivery, "write_marks", database_gone_after_the_first_group)
    senders = senders_to(quiet_stack.sink.smtp_port)
    with pytest.raises(delivery.MarkingFailed):
        delivery.deliver([], senders)
    unmarked = [row for row in rows_for(addresses) if row.status == "sending"]
    assert unmarked, "some emails were accepted by the server but not marked"

    monkeypatch.setattr(delivery, "write_marks", real_write)
    send_until_all_sent(addresses, senders)  # once the lease runs out, they go again

    deliveries = quiet_stack.sink.deliveries()
    assert all(deliveries[address][0] == 1 for address in addresses), \
        "a resend is the same message (same Message-ID), never a second one"
    resent = [address for address in addresses if deliveries[address][1] > 1]
    assert resent, "the rows left claimed were sent again"
    assert set(resent) <= {row.recipient for row in unmarked}


class SlowFirstSend(MailSender):
    """A connection whose first message takes longer than the claim's lease."""

    def __init__(self, sender: SmtpSender, lease_seconds: float) -> None:
        self.sender = sender
        self.lease_seconds = lease_seconds
        self.sent = 0

    def send(self, sender: str, recipient: str, message: bytes) -> str:
        if not self.sent:
            started = time.monotonic()
            wait_until(lambda: time.monotonic() - started > self.lease_seconds,
                       message="the lease to run out")
        self.sent += 1
        return self.sender.send(sender, recipient, message)


def test_rows_left_when_the_lease_runs_out_go_once_with_the_next_claim(
        quiet_stack: Stack, senders_to: Any) -> None:
    addresses = queue_invitations(10)
    [connection] = senders_to(quiet_stack.sink.smtp_port, count=1)
    slow = SlowFirstSend(connection, settings().outbox_lease_seconds)
    delivery.deliver([], [slow])
    assert slow.sent == 1, "nothing is started once another worker may claim the rows"

    send_until_all_sent(addresses, [connection])
    deliveries = quiet_stack.sink.deliveries()
    assert {address: deliveries.get(address) for address in addresses} == {
        address: (1, 1) for address in addresses}


class QueuesMoreOnFirstSend(MailSender):
    """A connection that, as it sends its first message, has more mail queued behind it."""

    def __init__(self, sender: SmtpSender, more: int) -> None:
        self.sender = sender
        self.more = more
        self.queued: list[str] = []

    def send(self, sender: str, recipient: str, message: bytes) -> str:
        if not self.queued:
            self.queued = queue_invitations(self.more)
        return self.sender.send(sender, recipient, message)


def test_mail_queued_while_a_task_sends_goes_with_that_task_once(
        quiet_stack: Stack, senders_to: Any) -> None:
    first = queue_invitations(5)
    [connection] = senders_to(quiet_stack.sink.smtp_port, count=1)
    queues_more = QueuesMoreOnFirstSend(connection, more=7)
    delivery.deliver([], [queues_more])

    addresses = first + queues_more.queued
    assert len(addresses) == 12
    assert all_marked_sent(addresses), "one task sent what came due while it was sending"
    deliveries = quiet_stack.sink.deliveries()
    assert {address: deliveries.get(address) for address in addresses} == {
        address: (1, 1) for address in addresses}


def test_a_task_that_has_drained_long_enough_hands_over_to_a_fresh_one(
        quiet_stack: Stack, senders_to: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "settings",
                        lambda: replace(settings(), outbox_drain_seconds=0.0))
    monkeypatch.setattr(outbox, "wake_sender", lambda: None)  # only the handover is counted
    sent_tasks: list[str] = []
    previous = dispatch.use_sender(lambda name, args, options: sent_tasks.append(name))
    try:
        first = queue_invitations(3)
        [connection] = senders_to(quiet_stack.sink.smtp_port, count=1)
        queues_more = QueuesMoreOnFirstSend(connection, more=4)
        delivery.deliver([], [queues_more])
    finally:
        dispatch.use_sender(previous)

    assert all_marked_sent(first)
    assert {row.status for row in rows_for(queues_more.queued)} == {"queued"}, \
        "mail that came due later is left to the next task"
    assert outbox.SEND_TASK in sent_tasks, "a fresh task was asked for"
    send_until_all_sent(queues_more.queued, [connection])


class OffersPipelining:
    """An aiosmtpd handler that says PIPELINING when asked to (aiosmtpd reads commands in
    order however they arrive, so that is all it takes)."""

    pipelining = False

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses


class HangsUpSometimes(OffersPipelining):
    """An SMTP server that stores every message and hangs up on every ``every``-th,
    after storing it and before answering: the client cannot know it arrived."""

    def __init__(self, every: int, *, pipelining: bool) -> None:
        self.every = every
        self.pipelining = pipelining
        self.stored: Counter[str] = Counter()
        self.hang_ups = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message_id = re.search(rb"^Message-ID: (\S+)", envelope.content, re.MULTILINE | re.I)
        assert message_id is not None
        with self.lock:
            self.stored[message_id.group(1).decode()] += 1
            hang_up = sum(self.stored.values()) % self.every == 0
            self.hang_ups += hang_up
        if hang_up:
            server.transport.close()
        return "250 2.0.0 stored"


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one at a time"])
def test_a_connection_dropped_mid_batch_is_reopened_and_nothing_is_lost(
        quiet_stack: Stack, senders_to: Any, pipelining: bool) -> None:
    addresses = queue_invitations(EMAILS)
    server = HangsUpSometimes(every=7, pipelining=pipelining)
    controller = Controller(server, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        send_until_all_sent(addresses, senders_to(controller.port))
    finally:
        controller.stop()

    rows = rows_for(addresses)
    assert set(server.stored) == {row.message_id for row in rows}, "every email arrived"
    assert any(count > 1 for count in server.stored.values()), "some connections were dropped"
    # Only a message whose answer was lost went again, on a fresh connection, under its own id.
    assert sum(server.stored.values()) - len(rows) <= server.hang_ups


class Refuses(OffersPipelining):
    """An SMTP server that refuses the first ``command`` with ``reply``, then takes everything;
    it offers PIPELINING when asked to."""

    def __init__(self, command: str, reply: str, *, pipelining: bool) -> None:
        self.command = command
        self.reply = reply
        self.pipelining = pipelining
        self.refusals_left = 1
        self.stored: list[bytes] = []

    def refuses(self, command: str) -> bool:
        if command != self.command or not self.refusals_left:
            return False
        self.refusals_left -= 1
        return True

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if self.refuses("MAIL"):
            return self.reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if self.refuses("RCPT"):
            return self.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuses("DATA"):
            return self.reply
        self.stored.append(envelope.content)
        return "250 2.0.0 stored"


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one at a time"])
@pytest.mark.parametrize(("command", "reply", "permanent"), [
    ("MAIL", "451 4.3.0 try later", False),
    ("RCPT", "550 5.1.1 no such user", True),
    ("DATA", "452 4.3.1 out of space", False),
])
def test_a_refusal_names_the_reply_and_the_connection_goes_on(
        command: str, reply: str, permanent: bool, pipelining: bool) -> None:
    server = Refuses(command, reply, pipelining=pipelining)
    controller = Controller(server, hostname="127.0.0.1", port=free_port())
    controller.start()
    sender = SmtpSender(SmtpServer("127.0.0.1", controller.port, timeout=10))
    try:
        with pytest.raises(DeliveryError) as refused:
            sender.send("no-reply@example.com", "first@example.com", b"Subject: one\r\n\r\nx\r\n")
        assert str(refused.value) == reply
        assert refused.value.permanent is permanent
        answer = sender.send("no-reply@example.com", "second@example.com",
                             b"Subject: two\r\n\r\n.a line that starts with a period\r\n")
        assert answer == "250 2.0.0 stored"
        assert server.stored == [b"Subject: two\r\n\r\n.a line that starts with a period\r\n"]
    finally:
        sender.close()
        controller.stop()


def test_a_claim_takes_abandoned_rows_then_retries_then_fresh_mail_each_oldest_first(
        quiet_stack: Stack) -> None:
    addresses = queue_invitations(6)
    long_ago = utcnow() - timedelta(days=9000)  # before anything else in the outbox
    with session_scope() as session:
        rows = {row.recipient: row for row in rows_for(addresses)}
        fresh_late, fresh_early, retry_late, retry_early, abandoned, not_yet = (
            rows[address] for address in addresses)
        fresh_early.next_attempt_at = long_ago + timedelta(minutes=1)
        fresh_late.next_attempt_at = long_ago + timedelta(minutes=2)
        for row, minutes in ((retry_early, 3), (retry_late, 4)):
            row.status, row.next_attempt_at = "deferred", long_ago + timedelta(minutes=minutes)
        abandoned.status, abandoned.claimed_at, abandoned.claim_token = (
            "sending", long_ago, "dead-worker")
        not_yet.status, not_yet.next_attempt_at = "deferred", utcnow() + timedelta(hours=1)
        session.add_all(rows.values())
    taken = []
    for room in (3, 2):
        with session_scope() as session:
            taken.append({row.recipient for row in outbox.claim(session, [], extra=room)})
    assert taken == [{abandoned.recipient, retry_early.recipient, retry_late.recipient},
                     {fresh_early.recipient, fresh_late.recipient}]
    with session_scope() as session:
        assert session.get_one(OutboxEmail, not_yet.id).status == "deferred"


def test_a_group_of_outcomes_sets_each_kind_its_columns_and_only_where_the_claim_holds(
        quiet_stack: Stack) -> None:
    addresses = queue_invitations(5)
    with session_scope() as session:
        ids = [row.id for row in rows_for(addresses)]
        claimed = {row.recipient: row for row in outbox.claim(session, ids)}
    sent, sent_too, deferred, failed, reclaimed = (claimed[address] for address in addresses)
    now = utcnow()
    retry_at = now + timedelta(minutes=5)

    def outcome(row: OutboxEmail, status: str, token: str | None = None,
                **values: Any) -> delivery.Outcome:
        return delivery.Outcome(row.id, token or row.claim_token or "", EmailStatus(status), values)

    delivery.write_marks([
        outcome(sent, "sent", sent_at=now, provider_response="250 first", last_error=None),
        outcome(deferred, "deferred", last_error="451 later", next_attempt_at=retry_at),
        outcome(sent_too, "sent", sent_at=now, provider_response="250 second", last_error=None),
        outcome(failed, "failed", last_error="550 no such user"),
        # another claim took this row meanwhile: an outcome under the old token changes nothing
        outcome(reclaimed, "sent", token="stale-token", sent_at=now,
                provider_response="250 late", last_error=None),
    ])

    rows = {row.recipient: row for row in rows_for(addresses)}
    columns = [(row.status, row.provider_response, row.last_error, row.sent_at is not None)
               for row in (rows[address] for address in addresses)]
    assert columns == [("sent", "250 first", None, True), ("sent", "250 second", None, True),
                       ("deferred", None, "451 later", False),
                       ("failed", None, "550 no such user", False),
                       ("sending", None, None, False)]
    assert rows[deferred.recipient].next_attempt_at == retry_at
    sent_at = rows[sent.recipient].sent_at
    assert sent_at is not None and abs(sent_at - now) < timedelta(seconds=1)


class RefusesSome(OffersPipelining):
    """A PIPELINING server that refuses the recipient ``nobody…`` and, at the end of the
    content, temp-fails mail for ``later…``; it stores the rest and counts its sessions."""

    pipelining = True

    def __init__(self) -> None:
        self.stored: Counter[str] = Counter()
        self.sessions = 0

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        self.sessions += 1
        return await super().handle_EHLO(server, session, envelope, hostname, responses)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if address.startswith("nobody"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        [recipient] = envelope.rcpt_tos
        if recipient.startswith("later"):
            return "451 4.3.0 try again later"
        self.stored[recipient] += 1
        return "250 2.0.0 stored"


def test_refusals_in_a_pipelined_stream_land_on_their_own_message(
        quiet_stack: Stack, senders_to: Any) -> None:
    kinds = ("conn", "nobody", "conn", "later", "conn", "nobody", "nobody", "later", "conn")
    addresses = queue_invitations(len(kinds) * 4, lambda i: f"{kinds[i % len(kinds)]}{i}")
    server = RefusesSome()
    controller = Controller(server, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        [connection] = senders_to(controller.port, count=1)
        delivery.deliver([], [connection])
    finally:
        controller.stop()

    rows = {row.recipient: row for row in rows_for(addresses)}
    outcomes = {address: (rows[address].status, rows[address].last_error) for address in addresses}
    expected = {"conn": ("sent", None), "nobody": ("failed", "550 5.1.1 no such user"),
                "later": ("deferred", "451 4.3.0 try again later")}
    assert outcomes == {address: expected[re.match("[a-z]+", address)[0]]  # type: ignore[index]
                        for address in addresses}
    # The claim may also take rows an earlier test left (this module's lease is 1 s).
    assert Counter({address: count for address, count in server.stored.items()
                    if address in addresses}) == Counter(
        address for address in addresses if address.startswith("conn"))
    assert server.sessions == 1, "refusals never cost the connection"
