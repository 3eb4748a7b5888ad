"""The wire form of an email: what any mail reader parses back."""

from __future__ import annotations

import email
import email.policy
import random
import re
import smtplib
from datetime import UTC, datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest

from provisioning.mail.message import build_message, make_message_id
from provisioning.mail.sender import envelope_path

MESSAGE_ID = "<outbox-42.abc@example.test>"
WHEN = datetime(2026, 11, 23, 9, 30, tzinfo=timezone(timedelta(hours=3)))


def build(**changes: object) -> bytes:
    arguments: dict[str, object] = {
        "message_id": MESSAGE_ID,
        "sender": "no-reply@example.test",
        "sender_name": "Provisioner",
        "recipient": "ivan@example.test",
        "recipient_name": "Иван Петров",
        "subject": "Ana Souza приглашает вас в «Acme»",
        "text": "Здравствуйте!\n",
        "html": "<p>Здравствуйте!</p>\n",
        "date": WHEN,
    }
    arguments.update(changes)
    return build_message(**arguments)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def bodies(message: EmailMessage) -> tuple[str, str]:
    """The text and HTML parts as written (the wire form's CRLF read back as newlines)."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return (
        text.get_content().replace("\r\n", "\n"),
        html.get_content().replace("\r\n", "\n"),
    )


def head(raw: bytes) -> str:
    """The header block, unfolded, one header a line."""
    block = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return block.replace("\r\n ", " ").replace("\r\n", "\n")


def header(raw: bytes, name: str) -> str:
    match = re.search(rf"^{name}: (.*)$", head(raw), re.MULTILINE | re.IGNORECASE)
    assert match, f"no {name} header"
    return match.group(1)


@pytest.mark.parametrize(
    ("subject", "sender_name", "recipient_name"),
    [
        ("Ana Souza приглашает вас в «Acme» (Provisioner)", "Provisioner", "Иван Петров"),
        ("Ayşe Yılmaz sizi Provisioner üzerindeki Acme ekibine davet etti", "Çağrı Öztürk",
         "Şükrü Gündoğdu"),
        ("Ana Souza invited you to join Acme on Provisioner", "Provisioner", "Bruno Lima"),
        ("Convite 🎉 para a equipe de Acme", 'Souza, Ana "Admin"', "José da Silva"),
    ],
)
def test_headers_parse_back_to_what_was_given(
    subject: str, sender_name: str, recipient_name: str
) -> None:
    raw = build(subject=subject, sender_name=sender_name, recipient_name=recipient_name)
    message = parse(raw)

    assert message["Subject"] == subject
    assert message["From"].addresses[0].display_name == sender_name
    assert message["From"].addresses[0].addr_spec == "no-reply@example.test"
    assert message["To"].addresses[0].display_name == recipient_name
    assert message["To"].addresses[0].addr_spec == "ivan@example.test"
    assert message["Message-ID"] == MESSAGE_ID
    assert header(raw, "Message-ID") == MESSAGE_ID
    assert message["Date"].datetime == WHEN
    assert message["MIME-Version"] == "1.0"
    assert all(not part.defects for part in message.walk())


def test_bodies_parse_back_exactly() -> None:
    text = "\n".join(
        [
            "Здравствуйте, Иван! 🎉 Ça va? Şifre belirle.",
            ".",
            ".a line that starts with a dot",
            "From the team: a line mbox readers would mangle",
            "trailing spaces   ",
            "trailing tab\t",
            "",
            "a=b, =?utf-8?q?not-a-word?=, 100% =3D",
            "--=_boundary-lookalike",
            "x" * 2000,
            "й" * 600,
            "no newline at the end",
        ]
    )
    html = "<p>" + "Ирина " * 400 + "</p>\n<p style=\"color:#1d4ed8\">From here</p>\n"

    message = parse(build(text=text, html=html))

    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert bodies(message) == (text, html)


def test_bodies_round_trip_whatever_the_characters() -> None:
    alphabet = list("aZ .=-\t\n_Fromé€яş🎉<>\"'") + ["From ", ".\n", " \n", "=\n", "--"]
    generator = random.Random(20261123)
    for _ in range(200):
        text = "".join(generator.choices(alphabet, k=generator.randrange(0, 400)))
        html = "".join(generator.choices(alphabet, k=generator.randrange(0, 400)))
        assert bodies(parse(build(text=text, html=html))) == (text, html)


def test_carriage_returns_in_bodies_become_line_breaks() -> None:
    message = parse(build(text="one\r\ntwo\rthree\n", html="<p>a</p>\r\n"))

    assert bodies(message) == ("one\ntwo\nthree\n", "<p>a</p>\n")


def test_lines_end_in_crlf_and_stay_short() -> None:
    raw = build(
        subject="Очень длинная тема письма, " * 8,
        recipient_name="Константин Константинопольский-Преображенский " * 3,
        text=("word " * 500 + "\n") * 3,
        html="<p>" + "ü" * 3000 + "</p>",
    )

    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    header_lines, body_lines = raw.split(b"\r\n\r\n", 1)
    assert max(len(line) for line in header_lines.split(b"\r\n")) <= 998
    # Quoted-printable lines are at most 76 characters (RFC 2045 §6.7).
    assert max(len(line) for line in body_lines.split(b"\r\n")) <= 76
    assert raw.isascii()


def test_encoded_words_decode_exactly_under_rfc_2047() -> None:
    name = "Константин Константинопольский Преображенский Младший"
    subject = "Приглашение в «Acme Логистика» — " * 4
    raw = build(recipient_name=name, subject=subject)

    words = re.findall(r"=\?[^?]+\?[bBqQ]\?[^?]*\?=", head(raw))
    assert words and all(len(word) <= 75 for word in words)
    # RFC 2047 §6.2: the whitespace between encoded words is not part of the text.
    encoded_name = header(raw, "To").rsplit(" <", 1)[0]
    assert str(make_header(decode_header(encoded_name))) == name
    assert parse(raw)["Subject"] == subject.strip()
    # CPython 3.11 keeps that whitespace inside display names (gh-128110): the words
    # are cut after a space, so it shows an extra space, never a word split in two.
    shown = parse(raw)["To"].addresses[0].display_name
    assert shown.split() == name.split()


def test_long_ascii_subject_is_folded_and_parses_back() -> None:
    subject = "Ana Souza invited you to join Acme Logistics on Provisioner " * 5
    raw = build(subject=subject)

    header_lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert max(len(line) for line in header_lines) <= 78
    assert parse(raw)["Subject"] == subject.strip()


def test_text_that_looks_like_an_encoded_word_is_kept_literally() -> None:
    subject = "=?utf-8?q?hello?= is how it looks"

    assert parse(build(subject=subject))["Subject"] == subject


def test_line_breaks_in_header_values_cannot_add_headers() -> None:
    raw = build(
        subject="Hello\r\nBcc: everyone@example.test",
        recipient_name="Ivan\nX-Evil: 1",
        sender_name="Provisioner\r\n\r\n<p>body</p>",
    )
    message = parse(raw)

    assert message["Bcc"] is None and message["X-Evil"] is None
    assert message["Subject"] == "Hello Bcc: everyone@example.test"
    assert message["To"].addresses[0].display_name == "Ivan X-Evil: 1"
    assert message.get_content_type() == "multipart/alternative"


@pytest.mark.parametrize(
    "address",
    ["ivan@example.test\r\nBcc: x@example.test", "иван@example.test", "ivan", "a b@example.test",
     "ivan@exämple.test"],
)
def test_addresses_must_be_plain_ascii(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        build(recipient=address)


def test_names_may_be_left_out() -> None:
    message = parse(build(sender_name=None, recipient_name=""))

    assert message["From"] == "no-reply@example.test"
    assert message["To"].addresses[0].display_name == ""
    assert message["To"].addresses[0].addr_spec == "ivan@example.test"


def test_each_message_gets_its_own_boundary() -> None:
    first, second = parse(build()), parse(build())

    assert first.get_boundary() != second.get_boundary()
    assert first.get_boundary().startswith("=_")  # type: ignore[union-attr]


def test_extra_headers_are_added_and_builder_headers_are_protected() -> None:
    message = parse(
        build(extra_headers={"Auto-Submitted": "auto-generated", "X-Outbox-Id": "42",
                             "X-Workspace": "Acme Логистика"})
    )

    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Outbox-Id"] == "42"
    assert message["X-Workspace"] == "Acme Логистика"
    for name in ("Subject", "message-id", "Content-Type", "Content-Transfer-Encoding", "X Bad",
                 "X:Bad", "Bcc\r\n"):
        with pytest.raises(ValueError, match="header"):
            build(extra_headers={name: "x"})


def test_date_needs_a_timezone_and_defaults_to_now() -> None:
    with pytest.raises(ValueError, match="timezone"):
        build(date=datetime(2026, 11, 23, 9, 30))

    before = datetime.now(UTC).replace(microsecond=0)
    sent = parse(build(date=None))["Date"].datetime
    assert before <= sent <= datetime.now(UTC)


def test_message_id_is_kept_verbatim_and_must_be_well_formed() -> None:
    assert make_message_id("outbox-42.abc", "example.test") == MESSAGE_ID
    assert make_message_id("outbox-42.abc", "example.test") == make_message_id(
        "outbox-42.abc", "example.test"
    )
    for unique in ("has space", "a@b", "<x", "", ".lead"):
        with pytest.raises(ValueError):
            make_message_id(unique, "example.test")
    for message_id in ("outbox-42@example.test", "<a b@example.test>", "<x>", MESSAGE_ID + "\r\n"):
        with pytest.raises(ValueError, match="Message-ID"):
            build(message_id=message_id)


@pytest.mark.parametrize("address", ["ana@example.com", "a.b+c@sub.example.org", "José@example.com",
                                     '"a b"@example.com', "<ana@example.com>",
                                     "Ana <ana@example.com>", "o'brien@example.ie"])
def test_the_envelope_paths_are_what_smtplib_would_send(address: str):
    assert envelope_path(address) == smtplib.quoteaddr(address)


def test_the_date_is_written_in_the_zone_it_was_given_even_for_the_same_instant() -> None:
    in_utc = WHEN.astimezone(UTC)
    dates = [header(build(date=moment), "Date") for moment in (in_utc, WHEN, in_utc)]
    assert dates == ["Mon, 23 Nov 2026 06:30:00 +0000", "Mon, 23 Nov 2026 09:30:00 +0300",
                     "Mon, 23 Nov 2026 06:30:00 +0000"]
