"""Turn the raw bytes of a received email into the fields the sink stores and shows.

The stdlib feed parser is too slow for a sink that must take 1,000 messages/s on
one core: it works line by line and compiles a fresh regular expression for every
new MIME boundary, which alone cost more than storing the message. So this module
splits headers and MIME parts with plain byte operations and leaves the fiddly
parts to the stdlib: ``email.header`` for RFC 2047 words, ``email.utils`` for
unusual address lists and ``binascii`` for base64 and quoted-printable.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.utils import getaddresses

# Nesting deeper than this is not a real email; stop rather than recurse without end.
MAX_MIME_DEPTH = 10

# One ``; name=value`` parameter of a MIME header, the value a token or a quoted string.
_PARAMETER = re.compile(
    r';\s*(?P<name>[^\s=;"]+)\s*=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<token>[^\s;"]*))'
)
_QUOTED_PAIR = re.compile(r"\\(.)")
# An address list with any of these needs the full RFC 5322 parser.
_ADDRESS_SPECIALS = frozenset('"(\\:;')


@dataclass(frozen=True)
class ParsedMessage:
    """What the sink keeps of one message besides its raw source."""

    message_id: str | None
    from_header: str
    to_header: str
    subject: str
    date_header: str
    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    # Lower-cased addresses from the To header, for whole-address search.
    to_addresses: list[str]


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse ``raw`` (an RFC 5322 message) into decoded headers and body parts."""
    header_block, body = _split_entity(raw)
    raw_headers = _parse_headers(header_block)
    headers = [(name, decode_header_value(value)) for name, value in raw_headers]
    first: dict[str, str] = {}
    for name, value in headers:
        first.setdefault(name.lower(), value)
    bodies: dict[str, str] = {}
    _collect_bodies(raw_headers, body, bodies, depth=0)
    return ParsedMessage(
        message_id=first.get("message-id", "").strip() or None,
        from_header=first.get("from", ""),
        to_header=first.get("to", ""),
        subject=first.get("subject", ""),
        date_header=first.get("date", ""),
        headers=headers,
        text=bodies.get("text/plain"),
        html=bodies.get("text/html"),
        to_addresses=_addresses([value for name, value in raw_headers if name.lower() == "to"]),
    )


def decode_header_value(value: str) -> str:
    """Decode the RFC 2047 encoded words of an unfolded header value."""
    if "=?" not in value:
        return value.strip()
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return value.strip()


def _split_entity(raw: bytes) -> tuple[bytes, bytes]:
    """Split at the first empty line into the header block and the body."""
    if raw.startswith((b"\r\n", b"\n")):
        return b"", raw[raw.index(b"\n") + 1 :]
    crlf = raw.find(b"\r\n\r\n")
    lf = raw.find(b"\n\n")
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return raw[:lf], raw[lf + 2 :]
    if crlf >= 0:
        return raw[:crlf], raw[crlf + 4 :]
    return raw, b""


def _parse_headers(block: bytes) -> list[tuple[str, str]]:
    """Header names and unfolded raw values, in order; lines without a colon are dropped."""
    # UTF-8 covers both ASCII and SMTPUTF8 headers; anything else is shown with U+FFFD.
    headers: list[tuple[str, str]] = []
    for line in block.decode("utf-8", "replace").split("\n"):
        line = line.rstrip("\r")
        if line[:1] in (" ", "\t"):
            if headers:
                name, value = headers[-1]
                headers[-1] = (name, value + line)
            continue
        name, colon, value = line.partition(":")
        if colon and name and not name[-1].isspace():
            headers.append((name, value.lstrip(" \t")))
    return headers


def _content_type(value: str) -> tuple[str, dict[str, str]]:
    """The lower-cased media type and the parameters of a Content-Type value."""
    media_type = value.partition(";")[0].strip().lower()
    if media_type.count("/") != 1:
        media_type = "text/plain"  # the default of RFC 2045 §5.2
    parameters = {
        match["name"].lower(): (
            _QUOTED_PAIR.sub(r"\1", match["quoted"])
            if match["quoted"] is not None
            else match["token"]
        )
        for match in _PARAMETER.finditer(value)
    }
    return media_type, parameters


def _collect_bodies(
    headers: list[tuple[str, str]], body: bytes, bodies: dict[str, str], depth: int
) -> None:
    """Put the first inline text/plain and text/html parts of ``body`` into ``bodies``."""
    first: dict[str, str] = {}
    for name, value in headers:
        first.setdefault(name.lower(), value)
    content_type, parameters = _content_type(first.get("content-type", "text/plain"))
    if content_type.startswith("multipart/"):
        boundary = parameters.get("boundary")
        if not boundary or depth >= MAX_MIME_DEPTH:
            return
        for part in _split_multipart(body, boundary.encode("utf-8", "replace")):
            header_block, part_body = _split_entity(part)
            _collect_bodies(_parse_headers(header_block), part_body, bodies, depth + 1)
            if len(bodies) == 2:
                return
        return
    if content_type not in ("text/plain", "text/html") or content_type in bodies:
        return
    if first.get("content-disposition", "").lower().startswith("attachment"):
        return
    payload = _decode_transfer_encoding(body, first.get("content-transfer-encoding", ""))
    charset = parameters.get("charset") or "utf-8"
    try:
        text = payload.decode(charset, "replace")
    except LookupError:  # an unknown charset name
        text = payload.decode("utf-8", "replace")
    bodies[content_type] = text.replace("\r\n", "\n")


def _split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """The encapsulated parts between the boundary delimiter lines (RFC 2046 §5.1.1)."""
    delimiter = b"--" + boundary
    parts: list[bytes] = []
    start: int | None = None  # where the current part's content begins
    # Prefixing a newline lets a delimiter on the very first line be found like the others.
    text = b"\n" + body
    position = text.find(b"\n" + delimiter)
    while position >= 0:
        after = position + 1 + len(delimiter)
        line_end = text.find(b"\n", after)
        rest = text[after : line_end if line_end >= 0 else len(text)]
        closing = rest.startswith(b"--")
        if closing or not rest.strip():
            if start is not None:
                # The line break before a delimiter belongs to the delimiter.
                end = position - 1 if text[position - 1 : position] == b"\r" else position
                parts.append(text[start:end])
            if closing or line_end < 0:
                break
            start = line_end + 1
        position = text.find(b"\n" + delimiter, after)
    return parts


def _decode_transfer_encoding(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    try:
        if encoding == "base64":
            return binascii.a2b_base64(body)
        if encoding == "quoted-printable":
            return binascii.a2b_qp(body)
    except (binascii.Error, ValueError):
        pass  # shown undecoded, as the stdlib parser does
    return body


def _addresses(values: list[str]) -> list[str]:
    """Lower-cased addresses of To values, each once, in order."""
    unique: dict[str, None] = {}
    for value in values:
        if _ADDRESS_SPECIALS.isdisjoint(value):
            # The common ``Name <a@b>, c@d`` needs no tokenizer (a quarter of the parse).
            for element in value.split(","):
                _, bracket, address = element.rpartition("<")
                address = address.partition(">")[0] if bracket else element
                _add_address(unique, address.strip())
        else:
            for _, address in getaddresses([value]):
                _add_address(unique, address)
    return list(unique)


def _add_address(unique: dict[str, None], address: str) -> None:
    if "@" in address:
        unique[address.lower()] = None
