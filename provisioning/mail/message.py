"""A lean builder for the wire form of one email (RFC 5322 + MIME, multipart/alternative).

``email.message.EmailMessage`` spends most of its time parsing the headers it is
given back (FLOORS.md: ~700 messages/s); this writes the bytes directly.
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import lru_cache

# RFC 5322 §2.1.1: lines SHOULD stay within 78 characters (998 is the hard limit).
MAX_HEADER_LINE = 78
# 45 UTF-8 bytes are 60 base64 characters: with "=?UTF-8?B??=" a word stays under 75 (RFC 2047 §2).
ENCODED_WORD_BYTES = 45
# An ASCII word longer than this cannot share a header line within 998 octets.
MAX_PLAIN_WORD = 900
# A quoted display name longer than this is encoded instead, so it can be folded.
MAX_QUOTED_NAME = 200

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
# A plain ``local@domain`` of dot-atoms: the builder takes only these; the SMTP envelope
# sends them as they are.
PLAIN_ADDRESS = re.compile(rf"{_DOT_ATOM}@{_DOT_ATOM}\Z")
_MESSAGE_ID = re.compile(rf"<{_DOT_ATOM}@{_DOT_ATOM}>\Z")
_DOT_ATOM_TEXT = re.compile(rf"{_DOT_ATOM}\Z")
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")
_BUILDER_FIELDS = frozenset({"date", "from", "to", "subject", "message-id", "mime-version"})


def make_message_id(unique: str, domain: str) -> str:
    """A Message-ID ``<unique@domain>``; the same arguments give the same id (retries dedupe)."""
    for part in (unique, domain):
        if not _DOT_ATOM_TEXT.match(part):
            raise ValueError(f"{part!r} cannot be part of a Message-ID")
    return f"<{unique}@{domain}>"


def build_message(
    *,
    message_id: str,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    html: str,
    date: datetime | None = None,
    sender_name: str | None = None,
    recipient_name: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> bytes:
    """The bytes of a multipart/alternative email: the text part, then the HTML part.

    Both parts are UTF-8 quoted-printable with CRLF line endings; the subject, the
    display names and extra header values are RFC 2047 encoded when not plain
    ASCII, and any run of whitespace in them (line breaks included) becomes one
    space. ``date`` must be timezone-aware (default: now, in UTC). Addresses must
    be ASCII (pass the IDNA form of an internationalised domain).
    """
    if not _MESSAGE_ID.match(message_id):
        raise ValueError(f"malformed Message-ID {message_id!r}")
    moment = date or datetime.now(UTC)
    if moment.utcoffset() is None:
        raise ValueError("the Date of an email needs a timezone")
    # "=_" cannot occur in quoted-printable output, so no body line can match the boundary.
    boundary = "=_" + secrets.token_hex(16)
    lines = [
        "Date: " + _date(moment.replace(microsecond=0), moment.utcoffset()),
        _address_field("From", sender, sender_name),
        _address_field("To", recipient, recipient_name),
        _unstructured_field("Subject", subject),
        "Message-ID: " + message_id,
        "MIME-Version: 1.0",
    ]
    for name, value in (extra_headers or {}).items():
        lines.append(_unstructured_field(_extra_field_name(name), value))
    lines.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"')
    head = "\r\n".join(lines).encode("ascii")
    delimiter = b"\r\n--" + boundary.encode("ascii")
    return b"".join(
        (
            head,
            b"\r\n",
            delimiter,
            b'\r\nContent-Type: text/plain; charset="utf-8"'
            b"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
            _quoted_printable(text),
            delimiter,
            b'\r\nContent-Type: text/html; charset="utf-8"'
            b"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
            _quoted_printable(html),
            delimiter,
            b"--\r\n",
        )
    )


@lru_cache(maxsize=64)
def _date(moment: datetime, offset: timedelta | None) -> str:
    """The Date field's value; a bulk send stamps hundreds of emails within one second.
    (Equal instants compare equal across zones: the offset belongs in the key.)"""
    return format_datetime(moment)


def _quoted_printable(body: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line breaks and lines of at most 76 characters."""
    normalised = body.replace("\r\n", "\n").replace("\r", "\n")
    return binascii.b2a_qp(normalised.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


def _extra_field_name(name: str) -> str:
    """Check that a caller's header name is a valid field the builder does not own."""
    lowered = name.lower()
    if not _FIELD_NAME.match(name) or lowered in _BUILDER_FIELDS or lowered.startswith("content-"):
        raise ValueError(f"header {name!r} cannot be added to an email")
    return name


def _address_field(field: str, address: str, display_name: str | None) -> str:
    """``Field: "Name" <address>``, the name quoted or encoded as its characters need."""
    if not PLAIN_ADDRESS.match(address):
        raise ValueError(f"{field} address {address!r} is not a plain ASCII address")
    name = " ".join((display_name or "").split())
    if not name:
        return f"{field}: {address}"
    if _is_plain(name) and len(name) <= MAX_QUOTED_NAME:
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return _fold(field, [f'"{quoted}"', f"<{address}>"])
    return _fold(field, [*_encoded_words(name), f"<{address}>"])


def _unstructured_field(field: str, value: str) -> str:
    """``Field: value`` folded at spaces, or as encoded-words when not plain ASCII."""
    collapsed = " ".join(value.split())
    words = collapsed.split(" ")
    if _is_plain(collapsed) and max(map(len, words)) <= MAX_PLAIN_WORD:
        return _fold(field, words)
    return _fold(field, list(_encoded_words(collapsed)))


def _is_plain(value: str) -> bool:
    """Printable ASCII that no reader would take for an RFC 2047 encoded-word."""
    return value.isascii() and value.isprintable() and "=?" not in value


def _encoded_words(value: str) -> Iterator[str]:
    """RFC 2047 B-encoded words of whole characters, each at most 75 long.

    A word ends after a space where it can: the space stays inside it (RFC 2047
    §6.2 drops the whitespace between words), and parsers that wrongly keep that
    whitespace in display names (CPython before gh-128110) then never split a name
    mid-word.
    """
    chunk = ""
    size = 0
    for character in value:
        width = len(character.encode("utf-8"))
        while size + width > ENCODED_WORD_BYTES:
            cut = chunk.rfind(" ") + 1 or len(chunk)
            yield _encoded_word(chunk[:cut])
            chunk = chunk[cut:]
            size = len(chunk.encode("utf-8"))
        chunk += character
        size += width
    if chunk:
        yield _encoded_word(chunk)


def _encoded_word(text: str) -> str:
    encoded = binascii.b2a_base64(text.encode("utf-8"), newline=False).decode("ascii")
    return f"=?UTF-8?B?{encoded}?="


def _fold(field: str, words: list[str]) -> str:
    """Join words with spaces, breaking the line before a word that would pass 78 characters."""
    line_length = len(field) + 1
    parts = [field + ":"]
    for word in words:
        if line_length + 1 + len(word) > MAX_HEADER_LINE and line_length > len(field) + 1:
            parts.append("\r\n ")
            line_length = 1
        else:
            parts.append(" ")
            line_length += 1
        parts.append(word)
        line_length += len(word)
    return "".join(parts)
