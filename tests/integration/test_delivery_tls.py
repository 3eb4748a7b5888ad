"""A relay that wants TLS and a login, as production ones do: the real sink set up that way.

The sink gets a certificate from a throwaway CA; it then requires STARTTLS (or speaks TLS
from the first byte) and, given a login, AUTH before any mail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from provisioning.core.db import session_scope
from provisioning.mail.models import OutboxEmail
from provisioning.mail.sender import DeliveryError, SmtpSender, SmtpServer
from tests.support.processes import wait_until
from tests.support.servers import MailSink, start_mailsink
from tests.support.stories import all_sent
from tests.support.tls import TlsFiles, make_tls_files

USER, PASSWORD = "mailer", "relay password 1"
LOGIN = f"{USER}:{PASSWORD}"


@pytest.fixture(scope="module")
def tls(log_dir: Path) -> TlsFiles:
    return make_tls_files(log_dir / "test_delivery_tls-ca")


@pytest.fixture(scope="module")
def sinks(log_dir: Path, tls: TlsFiles) -> Iterator[dict[str, MailSink]]:
    """One sink for each way in: STARTTLS, TLS from the first byte; both want the login."""
    started = {
        "starttls": start_mailsink(log_dir, name="tls-starttls-mailsink", tls_cert=tls.certificate,
                                   tls_key=tls.key, auth=LOGIN),
        "tls": start_mailsink(log_dir, name="tls-implicit-mailsink", tls_cert=tls.certificate,
                              tls_key=tls.key, implicit_tls=True, auth=LOGIN),
    }
    yield started
    for sink in started.values():
        sink.stop()


def message(recipient: str) -> bytes:
    return (f"From: Provisioner <no-reply@example.com>\r\nTo: {recipient}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@example.com>\r\nSubject: Hello\r\n\r\n"
            "Welcome aboard.\r\n").encode()


def send_one(server: SmtpServer) -> tuple[str, str | DeliveryError]:
    """One message through a fresh connection: its recipient and the outcome."""
    recipient = f"tls.{uuid.uuid4().hex[:8]}@example.com"
    sender = SmtpSender(server)
    try:
        return recipient, sender.send("no-reply@example.com", recipient, message(recipient))
    except DeliveryError as refused:
        return recipient, refused
    finally:
        sender.close()


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_message_goes_over_tls_with_the_login(sinks: dict[str, MailSink], tls: TlsFiles,
                                                security: str):
    sink = sinks[security]
    recipient, outcome = send_one(SmtpServer("127.0.0.1", sink.smtp_port, 10, security,
                                             USER, PASSWORD, tls.ca))
    assert isinstance(outcome, str) and outcome.startswith("250"), outcome
    assert len(sink.messages(to=recipient)) == 1


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_what_the_relay_refuses_for_its_set_up_waits_and_is_never_sent(
        sinks: dict[str, MailSink], tls: TlsFiles, security: str):
    """A wrong password, an untrusted certificate, a missing login or missing TLS: each is
    a temporary failure saying what is wrong, so the email waits until the set-up is fixed."""
    sink = sinks[security]
    port = sink.smtp_port
    cases = {
        "SMTP login refused: 535": SmtpServer("127.0.0.1", port, 10, security, USER, "wrong",
                                              tls.ca),
        "certificate not trusted": SmtpServer("127.0.0.1", port, 10, security, USER, PASSWORD),
        "530": SmtpServer("127.0.0.1", port, 10, security, ca_file=tls.ca),
    }
    if security == "starttls":
        cases["530 Must issue a STARTTLS"] = SmtpServer("127.0.0.1", port, 10)
    for reason, server in cases.items():
        recipient, outcome = send_one(server)
        assert isinstance(outcome, DeliveryError), (reason, outcome)
        assert reason in str(outcome), (reason, outcome)
        assert not outcome.permanent, reason
        assert sink.messages(to=recipient) == []


def test_a_relay_without_starttls_is_not_sent_to_in_the_clear(make_stack: Any):
    plain = make_stack(worker=False)
    recipient, outcome = send_one(SmtpServer("127.0.0.1", plain.sink.smtp_port, 10, "starttls",
                                             USER, PASSWORD))
    assert isinstance(outcome, DeliveryError) and not outcome.permanent
    assert "STARTTLS" in str(outcome)
    assert plain.sink.messages(to=recipient) == []


def email_rows(account_id: int) -> list[OutboxEmail]:
    with session_scope() as session:
        return list(session.scalars(select(OutboxEmail).where(
            OutboxEmail.account_id == account_id)).all())


def test_a_wrong_relay_password_loses_nothing_and_the_fix_sends_each_email_once(
        make_stack: Any, tls: TlsFiles):
    """The worker logs in over STARTTLS with the settings. With a wrong password the
    invitations wait (deferred, the reason kept); with the right one each goes once."""
    stack = make_stack(worker=False, sink_options={"tls_cert": tls.certificate,
                                                   "tls_key": tls.key, "auth": LOGIN},
                       smtp_security="starttls", smtp_username=USER,
                       smtp_password="not the password", smtp_ca_file=str(tls.ca))
    stack.start_worker()
    admin = stack.create_account()
    emails = [f"relay{i}.{uuid.uuid4().hex[:8]}@example.com" for i in range(3)]
    for email in emails:
        assert stack.invite(admin, email=email).status_code == 201

    def shown_state() -> str:
        return str(stack.api.simulate_get(
            f"/v1/accounts/{admin.id}/users", params={"q": emails[0]},
            headers=admin.headers).json["items"][0]["invitation"]["state"])

    # Each retry (a fraction of a second apart here) takes an email out of `deferred` for a
    # moment and puts it back: the member list shows `deferred` between two of them.
    wait_until(lambda: {r.status for r in email_rows(admin.id)} == {"deferred"}
               and shown_state() == "deferred", timeout=30,
               message="the emails to be deferred, and shown so")
    assert all("SMTP login refused: 535" in (r.last_error or "") for r in email_rows(admin.id))
    assert stack.sink.total() == 0

    assert stack.worker is not None
    stack.worker.stop()
    stack.env["PROVISIONING_SMTP_PASSWORD"] = PASSWORD
    stack.start_worker()
    wait_until(lambda: all_sent(len(emails), admin.id), timeout=60,
               message="the waiting emails to go once the password is right")
    stack.worker.stop()  # a warm shutdown: whatever it was still sending has landed
    for email in emails:
        [received] = stack.sink.messages(to=email)
        assert received["delivery_count"] == 1
