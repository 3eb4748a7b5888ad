"""The SMTP sink, run as a real process: what a test suite or a developer relies on.

Every test sends its own messages to addresses under a fresh domain, so the tests
share one sink without seeing each other's mail. Messages are looked up right
after ``sendmail`` returns, without waiting: a 250 means the message is stored.
"""

from __future__ import annotations

import os
import signal
import smtplib
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from mailsink.config import parse_config
from mailsink.parsing import parse_message
from tests.support.processes import ManagedProcess, free_port, wait_until

SENDER = "no-reply@provisioner.test"


@dataclass
class Sink:
    process: ManagedProcess
    smtp_port: int
    http: httpx.Client

    def send(self, message: EmailMessage, recipients: list[str] | None = None) -> None:
        recipients = recipients or [address.addr_spec for address in message["To"].addresses]
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as connection:
            connection.sendmail(SENDER, recipients, message.as_bytes(policy=policy.SMTP))

    def messages(self, **params: str | int) -> dict:
        response = self.http.get("/api/messages", params=params)
        assert response.status_code == 200, response.text
        return response.json()


def start_sink(name: str, db: Path, log_dir: Path, *flags: str, env: dict | None = None) -> Sink:
    smtp_port, http_port = free_port(), free_port()
    process = ManagedProcess(
        name,
        [
            sys.executable,
            "-m",
            "mailsink",
            f"--smtp-port={smtp_port}",
            f"--http-port={http_port}",
            f"--db={db}",
            *flags,
        ],
        log_dir=log_dir,
        env=env,
    ).start()
    process.wait_for_log("mailsink ready", timeout=30)
    http = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30)
    return Sink(process=process, smtp_port=smtp_port, http=http)


def stop_sink(sink: Sink) -> None:
    sink.http.close()
    sink.process.stop()


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sink]:
    workdir = tmp_path_factory.mktemp("mailsink")
    # A db path in a folder that does not exist yet: the sink creates it.
    started = start_sink("mailsink", workdir / "var" / "mail.sqlite3", workdir)
    yield started
    stop_sink(started)


@pytest.fixture
def domain() -> str:
    """A mail domain no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}.io"


def invitation(
    to: str,
    subject: str = "Your invitation",
    text: str = "Welcome aboard.\n",
    html: str | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Provisioner <{SENDER}>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@provisioner.test>"
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def test_health(sink: Sink) -> None:
    response = sink.http.get("/api/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_to_matches_a_whole_recipient_address_ignoring_case(sink: Sink, domain: str) -> None:
    sink.send(invitation(f"Ann <a@{domain}>", subject="for a"))
    sink.send(invitation(f"ba@{domain}", subject="for ba"))

    found = sink.messages(to=f"A@{domain.upper()}")

    assert found["total"] == 1
    [message] = found["items"]
    assert message["subject"] == "for a"
    assert message["to"] == f"Ann <a@{domain}>"
    assert message["from"] == f"Provisioner <{SENDER}>"
    assert message["envelope_to"] == [f"a@{domain}"]
    assert message["delivery_count"] == 1
    assert [m["subject"] for m in sink.messages(to=f"ba@{domain}")["items"]] == ["for ba"]
    assert sink.messages(to=domain)["total"] == 0


def test_to_matches_envelope_recipients_and_the_to_header(sink: Sink, domain: str) -> None:
    # A Bcc-style delivery: the envelope recipient is not in the To header.
    sink.send(invitation(f"team@{domain}"), recipients=[f"hidden@{domain}"])

    assert sink.messages(to=f"hidden@{domain}")["total"] == 1
    assert sink.messages(to=f"team@{domain}")["total"] == 1


def test_q_finds_subject_text_html_and_addresses_ignoring_case(sink: Sink, domain: str) -> None:
    sink.send(
        invitation(
            f"carol@{domain}",
            subject=f"Quarterly report {domain}",
            text="The zebra crossing is closed.\n",
            html="<p>Über die <b>Giraffe</b></p>",
        )
    )
    sink.send(invitation(f"dave@{domain}", subject=f"Something else {domain}"))

    def subjects(q: str) -> list[str]:
        return [m["subject"] for m in sink.messages(q=q, to=f"carol@{domain}")["items"]]

    assert subjects("QUARTERLY REPORT") == [f"Quarterly report {domain}"]
    assert subjects("Zebra CROSSING") == [f"Quarterly report {domain}"]
    assert subjects("giraffe</B>") == [f"Quarterly report {domain}"]
    assert subjects("ÜBER DIE") == [f"Quarterly report {domain}"]
    assert subjects("no such words") == []
    assert sink.messages(q=f"DAVE@{domain}")["total"] == 1
    assert sink.messages(q=domain)["total"] == 2


def test_non_ascii_subject_and_encoded_bodies_are_decoded(sink: Sink, domain: str) -> None:
    message = EmailMessage()
    message["From"] = "Jürgen Müller <juergen@provisioner.test>"
    message["To"] = f"Zoë <zoe@{domain}>"
    message["Subject"] = "Grüße aus Köln – 你好"
    message.set_content("Hallo Zoë,\nschöne Grüße! ✓\n", cte="quoted-printable")
    message.add_alternative("<p>Schöne Grüße, 你好</p>", subtype="html", cte="base64")
    raw = message.as_bytes(policy=policy.SMTP)
    # Make sure the wire form really is encoded, so the sink had something to decode.
    assert b"=?utf-8?" in raw and b"sch=C3=B6ne" in raw and "Grüße".encode() not in raw

    sink.send(message)

    [stored] = sink.messages(to=f"zoe@{domain}")["items"]
    assert stored["subject"] == "Grüße aus Köln – 你好"
    assert stored["from"] == "Jürgen Müller <juergen@provisioner.test>"
    assert stored["to"] == f"Zoë <zoe@{domain}>"
    assert stored["text"] == "Hallo Zoë,\nschöne Grüße! ✓\n"
    assert stored["html"] == "<p>Schöne Grüße, 你好</p>\n"
    assert ["Subject", "Grüße aus Köln – 你好"] in stored["headers"]


def test_same_message_id_is_kept_once_with_a_delivery_count(sink: Sink, domain: str) -> None:
    message = invitation(f"erin@{domain}", message_id=f"<resent@{domain}>")
    sink.send(message)
    sink.send(message)

    found = sink.messages(to=f"erin@{domain}")

    assert found["total"] == 1
    assert found["items"][0]["message_id"] == f"<resent@{domain}>"
    assert found["items"][0]["delivery_count"] == 2

    # A resend of the same message to someone else is findable by them too.
    sink.send(message, recipients=[f"fern@{domain}"])

    [merged] = sink.messages(to=f"fern@{domain}")["items"]
    assert merged["id"] == found["items"][0]["id"]
    assert merged["delivery_count"] == 3
    assert merged["envelope_to"] == [f"erin@{domain}", f"fern@{domain}"]


def test_messages_without_message_id_are_never_merged(sink: Sink, domain: str) -> None:
    message = invitation(f"frank@{domain}")
    del message["Message-ID"]
    sink.send(message)
    sink.send(message)

    found = sink.messages(to=f"frank@{domain}")

    assert found["total"] == 2
    assert [m["delivery_count"] for m in found["items"]] == [1, 1]


def test_one_message_and_its_raw_source(sink: Sink, domain: str) -> None:
    raw = (
        f"From: {SENDER}\r\nTo: gina@{domain}\r\nSubject: raw\r\n\r\n"
        "first line\r\n.a line that starts with a dot\r\nlast line\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=30) as connection:
        connection.sendmail(SENDER, [f"gina@{domain}"], raw)
    [listed] = sink.messages(to=f"gina@{domain}")["items"]

    one = sink.http.get(f"/api/messages/{listed['id']}")
    source = sink.http.get(f"/api/messages/{listed['id']}/raw")

    assert one.status_code == 200
    assert one.json() == listed
    assert source.status_code == 200
    assert source.headers["content-type"] == "message/rfc822"
    assert source.content == raw


def test_pages_follow_the_cursor_newest_first(sink: Sink, domain: str) -> None:
    for number in range(5):
        sink.send(invitation(f"hank@{domain}", subject=f"number {number}"))

    pages = []
    params: dict[str, str | int] = {"to": f"hank@{domain}", "limit": 2}
    while True:
        page = sink.messages(**params)
        pages.append(page)
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]

    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    assert {page["total"] for page in pages} == {5}
    subjects = [m["subject"] for page in pages for m in page["items"]]
    assert subjects == [f"number {number}" for number in (4, 3, 2, 1, 0)]


def test_every_accepted_message_is_visible_at_once_under_load(sink: Sink, domain: str) -> None:
    def client(number: int) -> list[str]:
        problems = []
        with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=30) as connection:
            connection.ehlo()
            for sequence in range(25):
                address = f"load{number}-{sequence}@{domain}"
                connection.mail(SENDER)
                connection.rcpt(address)
                code, reply = connection.data(invitation(address).as_bytes(policy=policy.SMTP))
                # The 250 names the stored message, which must be readable right away.
                message_id = reply.decode().rpartition(" ")[2]
                response = sink.http.get(f"/api/messages/{message_id}")
                if code != 250 or response.status_code != 200:
                    problems.append(f"{address}: {code} {reply!r} -> {response.status_code}")
                elif response.json()["envelope_to"] != [address]:
                    problems.append(f"{address}: id {message_id} is another message")
        return problems

    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = [problem for found in pool.map(client, range(4)) for problem in found]

    assert problems == []
    assert sink.messages(q=domain, limit=1)["total"] == 100


def test_a_bad_cursor_or_limit_is_a_400_and_a_big_limit_is_capped(sink: Sink) -> None:
    assert sink.http.get("/api/messages", params={"cursor": "abc"}).status_code == 400
    assert sink.http.get("/api/messages", params={"limit": "0"}).status_code == 400
    assert sink.http.get("/api/messages", params={"limit": "5000"}).status_code == 200


def test_unknown_message_is_a_404(sink: Sink) -> None:
    for path in ("/api/messages/987654321", "/api/messages/987654321/raw"):
        response = sink.http.get(path)
        assert response.status_code == 404
        assert response.json()["status"] == 404
    assert sink.http.get("/messages/987654321").status_code == 404


def test_pages_list_and_show_messages_with_everything_escaped(sink: Sink, domain: str) -> None:
    sink.send(
        invitation(
            f"ivy@{domain}",
            subject='<script>alert("subject")</script>',
            text="<script>alert('text')</script>\n",
            html="<p>hello</p><script>alert('html')</script>",
        )
    )
    [message] = sink.messages(to=f"ivy@{domain}")["items"]

    inbox = sink.http.get("/", params={"to": f"ivy@{domain}"})
    page = sink.http.get(f"/messages/{message['id']}")

    assert inbox.status_code == 200
    assert inbox.headers["content-type"].startswith("text/html")
    assert "&lt;script&gt;alert(&#34;subject&#34;)&lt;/script&gt;" in inbox.text
    assert f'href="/messages/{message["id"]}"' in inbox.text
    assert page.status_code == 200
    assert "&lt;script&gt;alert(&#39;text&#39;)&lt;/script&gt;" in page.text
    assert '<iframe sandbox srcdoc="&lt;p&gt;hello&lt;/p&gt;&lt;script&gt;' in page.text
    assert "<script>" not in inbox.text + page.text


def test_delete_all(sink: Sink, domain: str) -> None:
    sink.send(invitation(f"jack@{domain}"))
    [message] = sink.messages(to=f"jack@{domain}")["items"]

    response = sink.http.delete("/api/messages")

    assert response.status_code == 200
    assert response.json()["deleted"] >= 1
    assert sink.messages()["total"] == 0
    assert sink.http.get(f"/api/messages/{message['id']}").status_code == 404


def test_reject_rate_one_refuses_every_message(tmp_path: Path, domain: str) -> None:
    rejecting = start_sink(
        "mailsink-reject", tmp_path / "mail.sqlite3", tmp_path, "--reject-rate=1"
    )
    try:
        with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPRecipientsRefused)) as refused:
            rejecting.send(invitation(f"kim@{domain}"))
        assert _smtp_codes(refused.value) == {550}
        assert rejecting.messages()["total"] == 0
    finally:
        stop_sink(rejecting)


def test_tempfail_rate_and_delay_from_the_environment(tmp_path: Path, domain: str) -> None:
    failing = start_sink(
        "mailsink-tempfail",
        tmp_path / "mail.sqlite3",
        tmp_path,
        env={"MAILSINK_TEMPFAIL_RATE": "1.0", "MAILSINK_DELAY_MS": "300"},
    )
    try:
        began = time.monotonic()
        with pytest.raises(smtplib.SMTPDataError) as failed:
            failing.send(invitation(f"lee@{domain}"))
        assert time.monotonic() - began >= 0.3
        assert failed.value.smtp_code == 451
        assert failing.messages()["total"] == 0
    finally:
        stop_sink(failing)


def test_sigterm_under_load_keeps_every_accepted_message(tmp_path: Path, domain: str) -> None:
    db = tmp_path / "mail.sqlite3"
    first = start_sink("mailsink-first", db, tmp_path)
    accepted: list[str] = []

    def client(number: int) -> None:
        # Sends until the sink goes away; only a 250 counts as accepted.
        try:
            with smtplib.SMTP("127.0.0.1", first.smtp_port, timeout=30) as connection:
                for sequence in range(5000):
                    address = f"c{number}-{sequence}@{domain}"
                    message = invitation(address).as_bytes(policy=policy.SMTP)
                    connection.sendmail(SENDER, [address], message)
                    accepted.append(address)
        except (smtplib.SMTPException, OSError):
            pass

    threads = [threading.Thread(target=client, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(accepted) >= 200, timeout=30, message="200 accepted messages")
    first.process.stop()
    for thread in threads:
        thread.join(timeout=30)
    first.http.close()

    assert first.process.process is not None and first.process.process.returncode == 0
    assert "mailsink stopped" in first.process.log()
    second = start_sink("mailsink-second", db, tmp_path)
    try:
        page = second.messages(q=domain, limit=1000)
        stored = {m["envelope_to"][0] for m in page["items"]}
        while page["next_cursor"]:
            page = second.messages(q=domain, limit=1000, cursor=page["next_cursor"])
            stored |= {m["envelope_to"][0] for m in page["items"]}
        assert set(accepted) <= stored
    finally:
        stop_sink(second)


def test_the_sink_exits_with_an_error_when_its_writer_dies(tmp_path: Path, domain: str) -> None:
    doomed = start_sink("mailsink-doomed", tmp_path / "mail.sqlite3", tmp_path)
    try:
        pid = doomed.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert len(children) == 1, children  # the writer process
        os.kill(int(children[0]), signal.SIGKILL)

        assert doomed.process.process is not None
        assert doomed.process.process.wait(timeout=15) == 1
        assert "writer process exited unexpectedly" in doomed.process.log()
    finally:
        stop_sink(doomed)


def test_a_flag_wins_over_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSINK_SMTP_PORT", "2600")
    monkeypatch.setenv("MAILSINK_HTTP_PORT", "8600")
    monkeypatch.setenv("MAILSINK_REJECT_RATE", "0.25")

    config = parse_config(["--smtp-port", "2700"])

    assert (config.smtp_port, config.http_port, config.reject_rate) == (2700, 8600, 0.25)
    with pytest.raises(SystemExit):
        parse_config(["--reject-rate", "0.7", "--tempfail-rate", "0.5"])


def test_parser_takes_the_first_inline_text_and_html_of_nested_parts() -> None:
    message = EmailMessage()
    message["Subject"] = "nested"
    message["To"] = '"Doe, Jane" <Jane@Example.com>, bob@example.com'
    message.set_content("plain body\n")
    message.add_alternative("<p>html body</p>\n", subtype="html")
    message.add_attachment("not the body\n", filename="notes.txt")
    message.add_attachment(b"\x00\x01", maintype="application", subtype="octet-stream")

    for linesep in ("\r\n", "\n"):
        parsed = parse_message(message.as_bytes(policy=policy.SMTP.clone(linesep=linesep)))

        assert parsed.text == "plain body\n"
        assert parsed.html == "<p>html body</p>\n"
        assert parsed.to_addresses == ["jane@example.com", "bob@example.com"]
        assert parsed.message_id is None


def test_parser_ignores_lines_that_only_start_like_the_boundary() -> None:
    raw = (
        b"Content-Type: multipart/alternative; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\n--bb is not a boundary\r\n"
        b"--b\r\nContent-Type: text/html; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>caf=E9</p>\r\n"
        b"--b--\r\nepilogue\r\n"
    )

    parsed = parse_message(raw)

    assert parsed.text == "--bb is not a boundary"
    assert parsed.html == "<p>café</p>"


def _smtp_codes(error: smtplib.SMTPException) -> set[int]:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return {code for code, _ in error.recipients.values()}
    assert isinstance(error, smtplib.SMTPResponseException)
    return {error.smtp_code}
