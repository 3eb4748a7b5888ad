"""Reading a bulk-import file (§6): CSV, a JSON array or NDJSON. Pure code, no I/O of its own.

Two passes, so that a bad file is refused before anything is imported:

1. ``Normaliser`` runs over the upload as it streams in. It refuses file-level
   problems (``FileProblem``: size, encoding, binary data, no email column, broken
   JSON array) and turns what it accepts into UTF-8 without BOM, with every line
   ending ``\\n`` or ``\\r\\n`` (a lone ``\\r``, as old Mac spreadsheets write, becomes
   ``\\n``). That is the only form ``read_rows`` ever sees.
2. ``read_rows`` streams ``SourceRow`` values out of the stored data, each with the
   ``Position`` to resume after it, and ``check_row`` turns one into an ``ImportRow``
   or the list of everything wrong with it (``RowError``).

How the edge cases are decided:

- The CSV header is the first non-blank *physical* line (a line of only whitespace,
  ``,`` and ``;`` is blank); column names spanning lines are not supported. An Excel
  ``sep=;`` line before it sets the delimiter; otherwise the delimiter is whichever of
  ``,`` ``;`` and tab occurs most often outside quotes in the header (``,`` on a tie).
- Binary data: any NUL character, a known binary signature at the start (ZIP/xlsx,
  xls, PDF, PNG, JPEG, GIF, gzip), or more than ``_MAX_CONTROL_CHARACTERS`` of
  ``\\x01-\\x08``, ``\\x0e-\\x1f`` in the first ``_CONTROL_WINDOW`` characters. Tab, CR,
  LF, VT and FF are never counted.
- A CSV or NDJSON line longer than ``MAX_LINE_LENGTH`` characters, or a JSON array
  element longer than that, is refused as ``line_too_long`` so memory stays bounded
  (``too_large`` is only ever the size of the whole file).
- A row that cannot be read at all (a non-object JSON element, a broken NDJSON line,
  a CSV row that runs past ``MAX_LINE_LENGTH`` characters because a quote was never
  closed) is still yielded, as ``values == {INVALID_ROW: message}``; ``check_row``
  reports it as ``invalid_row`` with that message.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import BinaryIO, NoReturn

from provisioning.errors import InvalidInput
from provisioning.validation import MAX_NAME_LENGTH, USER_TYPES, normalise_email, normalise_language

COLUMNS = (
    "email", "name", "role", "group", "user_type", "language", "phone",
    "seasonal_start", "seasonal_end",
)
MEDIA_CSV = "text/csv"
MEDIA_JSON = "application/json"
MEDIA_NDJSON = "application/x-ndjson"
# What a file's name says it holds (multipart uploads, the CLI)
MEDIA_BY_EXTENSION = {".csv": MEDIA_CSV, ".tsv": MEDIA_CSV, ".txt": MEDIA_CSV,
                      ".json": MEDIA_JSON, ".ndjson": MEDIA_NDJSON, ".jsonl": MEDIA_NDJSON}
# What a client may send as the request's media type -> how the file is read.
MEDIA_TYPES: dict[str, str] = {
    "text/csv": MEDIA_CSV,
    "application/csv": MEDIA_CSV,
    "text/plain": MEDIA_CSV,
    "application/vnd.ms-excel": MEDIA_CSV,
    "application/json": MEDIA_JSON,
    "application/x-ndjson": MEDIA_NDJSON,
    "application/jsonl": MEDIA_NDJSON,
    "application/ndjson": MEDIA_NDJSON,
}
_READABLE = (MEDIA_CSV, MEDIA_JSON, MEDIA_NDJSON)

# Header names and JSON keys an admin may use for each column. Matching lower-cases the
# name and treats spaces, "_" and "-" alike, so "E-mail", "e_mail" and "E mail" are one.
COLUMN_ALIASES: Mapping[str, tuple[str, ...]] = {
    "email": ("e-mail", "email address", "e-mail address", "emailaddress", "mail",
              "mail address"),
    "name": ("full name", "fullname", "display name", "displayname"),
    "role": ("user role",),
    "group": ("team", "department", "dept", "user group"),
    "user_type": ("user type", "usertype", "type", "seat type"),
    "language": ("lang", "locale"),
    "phone": ("phone number", "phonenumber", "mobile", "mobile phone", "mobile number",
              "telephone"),
    "seasonal_start": ("season start", "seasonal start date", "season start date"),
    "seasonal_end": ("season end", "seasonal end date", "season end date"),
}

# The key of SourceRow.values that marks a row nobody could read; its value is the reason.
INVALID_ROW = "__invalid__"
# Longest CSV/NDJSON line or JSON element (characters): an import row is far shorter,
# and the cap keeps memory bounded whatever the upload holds.
MAX_LINE_LENGTH = 1_048_576

_READ_SIZE = 65_536
_HEAD_SIZE = 8  # enough bytes to recognise a BOM or a binary signature
_CONTROL_WINDOW = 1024
_MAX_CONTROL_CHARACTERS = 4
_SHOWN_VALUE_LENGTH = 256  # longest raw value copied into a RowError
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_BINARY_SIGNATURES = (
    (b"PK\x03\x04", "a ZIP archive or an Excel workbook (.xlsx)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls)"),
    (b"%PDF-", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
)
_CONTROL_CHARACTERS = re.compile("[\x01-\x08\x0e-\x1f]")
_LONE_CR = re.compile(r"\r(?!\n)")
_SEP_LINE = re.compile("\ufeff?sep=([,;\t])[ \r\n]*", re.IGNORECASE)
_BLANK_LINE = re.compile(r"[\s,;\ufeff]*")
_QUOTED = re.compile(r'"[^"]*"')
_HEADER_SEPARATORS = re.compile(r"[\s_\-]+")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PHONE = re.compile(r"[0-9 +().\-]{1,40}")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class FileProblem(Exception):
    """A file-level problem: nothing in the file is imported."""

    def __init__(self, code: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading resumes: a byte offset into the stored data and the counts up to it.

    ``line`` is the number of line breaks before ``offset`` (for CSV and NDJSON the
    offset is always at the start of a line, so that is the lines consumed).
    """

    offset: int
    line: int
    rows: int


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One row as read: where it starts and its known columns, values as given."""

    line: int
    values: dict[str, object]
    end: Position


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    column: str
    code: str
    message: str
    value: str | None


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    email: str
    name: str | None
    role: str | None  # None when blank
    group: str | None
    user_type: str
    language: str | None
    phone: str | None
    seasonal_start: date | None
    seasonal_end: date | None


@dataclass(frozen=True)
class Catalog:
    """What the account has: role and group names keyed by their lower-cased form."""

    roles: Mapping[str, str]
    groups: Mapping[str, str]
    seasonal_seats: bool
    free_group: str = "Free users"


# --- Columns and the CSV header -------------------------------------------------------


def _header_key(name: str) -> str:
    return _HEADER_SEPARATORS.sub(" ", name.lower()).strip(" *:")


_COLUMN_SET = frozenset(COLUMNS)
_COLUMN_BY_KEY = {
    _header_key(alias): column
    for column, aliases in COLUMN_ALIASES.items()
    for alias in (column, *aliases)
}


def _column_for(name: str) -> str | None:
    """The canonical column a header name or JSON key stands for, if any."""
    # Every alias is short; a long key (JSON can hold any) must not fill the cache.
    return _cached_column_for(name) if len(name) <= 64 else None


@lru_cache(maxsize=1024)
def _cached_column_for(name: str) -> str | None:
    return _COLUMN_BY_KEY.get(_header_key(name.replace("\ufeff", "")))


@dataclass(frozen=True, slots=True)
class _Header:
    delimiter: str
    columns: tuple[tuple[int, str], ...]  # (cell index, canonical column), first one wins
    line: int


def _is_blank_line(text: str) -> bool:
    # Spreadsheets export empty rows as ",,,,": they are blank too.
    return _BLANK_LINE.fullmatch(text) is not None


def _sniff_delimiter(text: str) -> str:
    # Count outside quotes: "Doe, Jane" must not make a ';' file look comma-separated.
    bare = _QUOTED.sub("", text)
    return max((",", ";", "\t"), key=bare.count)


def _quoted_names(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(f'"{name[:50]}"' for name in names[:limit])
    if len(names) > limit:
        shown += f" and {len(names) - limit} more"
    return shown


def _parse_header(text: str, line: int, delimiter: str | None) -> _Header:
    text = text.rstrip("\r\n")
    delimiter = delimiter or _sniff_delimiter(text)
    cells = next(csv.reader([text], delimiter=delimiter), [])
    columns: dict[str, int] = {}
    found: list[str] = []
    for index, cell in enumerate(cells):
        name = cell.replace("\ufeff", "").strip()
        if not name:
            continue  # trailing empty columns and gaps carry nothing
        found.append(name)
        column = _column_for(name)
        if column is not None and column not in columns:
            columns[column] = index
    if "email" not in columns:
        raise FileProblem(
            "missing_email_column",
            f"The header row (line {line}) has no email column; the columns found are "
            f"{_quoted_names(found)}. The first row must name the columns, for example "
            "email,name,role.",
            line,
        )
    ordered = tuple(sorted((index, column) for column, index in columns.items()))
    return _Header(delimiter, ordered, line)


class _HeaderFinder:
    """Takes physical lines one by one until the header row is among them."""

    def __init__(self) -> None:
        self.line = 0
        self.header: _Header | None = None
        self._delimiter: str | None = None

    def take(self, text: str) -> _Header | None:
        self.line += 1
        if _is_blank_line(text):
            return None
        separator = _SEP_LINE.fullmatch(text) if self._delimiter is None else None
        if separator is not None:
            self._delimiter = separator.group(1)
            return None
        self.header = _parse_header(text, self.line, self._delimiter)
        return self.header


# --- Normaliser: the upload as it streams in ------------------------------------------


def _size(count: int) -> str:
    if count >= 1_048_576:
        return f"{count / 1_048_576:.3g} MB"
    if count >= 1024:
        return f"{count / 1024:.3g} KB"
    return f"{count:,} bytes"


def _unsupported(media_type: str) -> FileProblem:
    return FileProblem(
        "unsupported_media_type",
        f"Files of type {media_type!r} cannot be imported. Send CSV (text/csv), a JSON "
        "array (application/json) or NDJSON (application/x-ndjson).",
    )


def _too_long(line: int, what: str = "Line") -> FileProblem:
    return FileProblem(
        "line_too_long",
        f"{what} {line} is longer than {MAX_LINE_LENGTH:,} characters; one user's row is "
        "much shorter. Check that this is the right file.",
        line,
    )


class Normaliser:
    """Runs over the upload as it streams in, before anything is stored.

    ``feed`` each piece as it arrives (any size) and store what it returns, then
    store what ``finish`` returns. The stored data is UTF-8 without BOM. Any method
    may raise ``FileProblem``; after that the upload is refused and the object is
    not used again. Memory is bounded: only the CSV header, one partial line and
    one partial JSON element are ever held.
    """

    def __init__(self, media_type: str, max_bytes: int) -> None:
        if media_type not in _READABLE:
            raise _unsupported(media_type)
        self.media_type = media_type
        self.max_bytes = max_bytes
        self.bytes_in = 0
        self.bytes_out = 0
        self._head = b""
        self._decoder: codecs.IncrementalDecoder | None = None
        self._encoding = "utf-8"
        self._line = 1  # physical line of the next character
        self._line_length = 0  # characters of the current line seen so far
        self._pending_cr = False  # a trailing "\r" waits to see whether "\n" follows
        self._inspected = 0
        self._controls = 0
        self._has_text = False
        self._limit_lines = media_type != MEDIA_JSON
        self._headers = _HeaderFinder() if media_type == MEDIA_CSV else None
        self._header_parts: list[str] = []
        self._array = _ArrayScanner() if media_type == MEDIA_JSON else None

    def feed(self, data: bytes) -> bytes:
        """Check one piece of the upload; returns the bytes to store (maybe none yet)."""
        self.bytes_in += len(data)
        if self.bytes_in > self.max_bytes:
            raise FileProblem(
                "too_large", f"The file is larger than the limit of {_size(self.max_bytes)}."
            )
        if self._decoder is None:
            self._head += data
            if len(self._head) < _HEAD_SIZE:
                return b""
            data = self._begin()
        return self._emit(self._decode(data, final=False), final=False)

    def finish(self) -> bytes:
        """Check the end of the upload; returns the last bytes to store."""
        data = self._begin() if self._decoder is None else b""
        stored = self._emit(self._decode(data, final=True), final=True)
        if not self._has_text or (self._headers is not None and self._headers.header is None):
            raise FileProblem("empty_file", "The file is empty: it has no header and no rows.")
        if self._array is not None:
            self._array.push("", final=True)
        return stored

    def _begin(self) -> bytes:
        """Pick the encoding from the first bytes; returns them without the BOM."""
        head, self._head = self._head, b""
        for bom, encoding in _BOMS:
            if head.startswith(bom):
                self._encoding = encoding
                head = head[len(bom):]
                break
        else:
            for signature, kind in _BINARY_SIGNATURES:
                if head.startswith(signature):
                    raise FileProblem(
                        "binary_file",
                        f"The file is {kind}, not text. Save it as CSV (UTF-8) and upload "
                        "that instead.",
                        1,
                    )
        self._decoder = codecs.getincrementaldecoder(self._encoding)("strict")
        return head

    def _decode(self, data: bytes, final: bool) -> str:
        assert self._decoder is not None
        try:
            return self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            before = exc.object[: exc.start].decode(self._encoding, "replace")
            line = self._line + _LONE_CR.sub("\n", before).count("\n")
            expected = "UTF-16" if self._encoding.startswith("utf-16") else "UTF-8 or UTF-16"
            raise FileProblem(
                "encoding",
                f"The file is not {expected} text (line {line}). Save it as CSV (UTF-8) "
                "and upload it again.",
                line,
            ) from None

    def _emit(self, text: str, final: bool) -> bytes:
        if self._pending_cr:
            text = "\r" + text
            self._pending_cr = False
        if text.endswith("\r") and not final:
            text = text[:-1]
            self._pending_cr = True
        if "\r" in text:
            text = _LONE_CR.sub("\n", text)
        if not self._has_text:
            text = text.lstrip("\ufeff")  # a second BOM (files saved twice) is no content
        if not text and not final:
            return b""
        self._check_binary(text)
        if self._limit_lines:
            self._check_line_lengths(text)
        if not self._has_text:
            self._first_text(text)
        if self._headers is not None and self._headers.header is None:
            self._find_header(text, final)
        if self._array is not None:
            self._array.push(text, final=False)
        self._line += text.count("\n")
        stored = text.encode("utf-8")
        self.bytes_out += len(stored)
        return stored

    def _first_text(self, text: str) -> None:
        start = text.replace("\ufeff", "").lstrip()[:1]
        if not start:
            return
        self._has_text = True
        if self.media_type == MEDIA_NDJSON and start == "[":
            # A JSON array sent as NDJSON would fail on every line; say why once.
            raise FileProblem(
                "invalid_json",
                "The file is a JSON array, but was sent as NDJSON (one object per line). "
                "Send it as application/json.",
                1,
            )

    def _check_binary(self, text: str) -> None:
        nul = text.find("\x00")
        if nul >= 0:
            line = self._line + text.count("\n", 0, nul)
            hint = ""
            if self._encoding == "utf-8" and self._line == 1 and "\x00" in text[:_HEAD_SIZE]:
                hint = " If it is UTF-16 text, save it with a byte order mark (BOM)."
            raise FileProblem(
                "binary_file",
                f"The file contains NUL characters (line {line}), so it is not a text file."
                + hint,
                line,
            )
        if self._inspected < _CONTROL_WINDOW:
            window = text[: _CONTROL_WINDOW - self._inspected]
            self._inspected += len(window)
            self._controls += len(_CONTROL_CHARACTERS.findall(window))
            if self._controls > _MAX_CONTROL_CHARACTERS:
                raise FileProblem(
                    "binary_file",
                    "The file contains control characters typical of binary files, so it "
                    "is not a text file. Save it as CSV (UTF-8) and upload that instead.",
                    1,
                )

    def _check_line_lengths(self, text: str) -> None:
        first = text.find("\n")
        if first < 0:
            self._line_length += len(text)
            if self._line_length > MAX_LINE_LENGTH:
                raise _too_long(self._line)
            return
        if self._line_length + first > MAX_LINE_LENGTH:
            raise _too_long(self._line)
        last = text.rfind("\n")
        if last - first > MAX_LINE_LENGTH:  # only pieces this big can hide a long line
            for number, line in enumerate(text[first + 1 : last].split("\n"), 1):
                if len(line) > MAX_LINE_LENGTH:
                    raise _too_long(self._line + number)
        self._line_length = len(text) - last - 1

    def _find_header(self, text: str, final: bool) -> None:
        assert self._headers is not None
        self._header_parts.append(text)
        if "\n" not in text and not final:
            return  # the line is not complete yet
        lines = "".join(self._header_parts).split("\n")
        rest = lines.pop()
        self._header_parts = [rest]
        if final and rest:
            lines.append(rest)
        for line in lines:
            if self._headers.take(line) is not None:
                self._header_parts = []
                return


# --- The JSON array scanner -------------------------------------------------------------

_START, _FIRST, _ELEMENT, _AFTER, _END = range(5)
_NOT_WHITESPACE = re.compile(r"[^ \t\r\n]")
_ELEMENT_ENDS = ("}", "]", '"', ",")
_DECODER = json.JSONDecoder()


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


class _ArrayScanner:
    """Finds the elements of one top-level JSON array in text pushed piece by piece.

    ``json.JSONDecoder.raw_decode`` parses each element from a sliding buffer, so
    only the element being read is held. Each element comes with the Position just
    after it (byte offset into the UTF-8 text, line breaks before it, elements so far).
    """

    def __init__(self, resume: Position | None = None) -> None:
        self._buffer = ""
        self._pos = 0  # the next character to read
        self._counted = 0  # _offset and _lines count the text up to here
        self._ascii = True
        self._waiting = False  # an element is incomplete: retry once it could have ended
        if resume is None:
            self._state, self._offset, self._lines, self.count = _START, 0, 0, 0
        else:
            self._state = _AFTER
            self._offset, self._lines, self.count = resume.offset, resume.line, resume.rows

    def push(self, text: str, final: bool) -> list[tuple[object, Position]]:
        """Add text; returns the elements it completed."""
        self._count()
        buffer = self._buffer[self._pos:] + text if self._pos else self._buffer + text
        self._buffer, self._pos, self._counted = buffer, 0, 0
        self._ascii = buffer.isascii()
        found: list[tuple[object, Position]] = []
        if self._waiting and not final and not any(end in text for end in _ELEMENT_ENDS):
            self._check_size()
            return found
        self._waiting = False
        while True:
            match = _NOT_WHITESPACE.search(buffer, self._pos)
            if match is None:
                self._pos = len(buffer)
                break
            self._pos = match.start()
            char = buffer[self._pos]
            if self._state == _START:
                if char != "[":
                    self._fail(f"The file must be a JSON array of objects ([{{...}}, ...]); "
                               f"it starts with {char!r}.")
                self._pos += 1
                self._state = _FIRST
            elif char == "]" and self._state in (_FIRST, _AFTER):
                self._pos += 1
                self._state = _END
            elif self._state == _AFTER:
                if char != ",":
                    self._fail(f"Expected ',' or ']' after element {self.count}.")
                self._pos += 1
                self._state = _ELEMENT
            elif self._state in (_FIRST, _ELEMENT):
                if char == "]":
                    self._fail(f"A comma before ']' leaves element {self.count + 1} empty.")
                if not self._element(buffer, char, final, found):
                    break
            else:
                self._fail("There is more data after the end of the JSON array.")
        if final and self._state != _END:
            if self._state == _START:
                self._fail("The file must be a JSON array of objects ([{...}, ...]).")
            self._fail(f"The JSON array ends after element {self.count} without its ']'.")
        return found

    def _element(
        self, buffer: str, char: str, final: bool, found: list[tuple[object, Position]]
    ) -> bool:
        """Decode the element at the read position; False when it needs more text."""
        try:
            value, end = _DECODER.raw_decode(buffer, self._pos)
        except (ValueError, RecursionError) as exc:
            if final or len(buffer) - self._pos > MAX_LINE_LENGTH:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                self._count()
                where = self._lines + 1 + buffer.count("\n", self._pos, getattr(exc, "pos", 0))
                self._fail(f"Element {self.count + 1} (near line {where}) is not valid JSON: "
                           f"{reason}.")
            self._waiting = True
            return False
        if end == len(buffer) and not final and char not in '{["':
            self._waiting = True  # a number may go on in the next piece
            return False
        if end - self._pos > MAX_LINE_LENGTH:
            raise _too_long(self.count + 1, "Element")
        self._pos = end
        self._count()
        self.count += 1
        self._state = _AFTER
        found.append((value, Position(self._offset, self._lines, self.count)))
        return True

    def _count(self) -> None:
        """Bring the byte offset and line count up to the read position."""
        read = self._buffer[self._counted : self._pos]
        self._offset += len(read) if self._ascii else len(read.encode("utf-8"))
        self._lines += read.count("\n")
        self._counted = self._pos

    def _check_size(self) -> None:
        if len(self._buffer) - self._pos > MAX_LINE_LENGTH:
            self._waiting = False
            self.push("", final=False)  # decode now: reports the syntax error or the size

    def _fail(self, reason: str) -> NoReturn:
        raise FileProblem("invalid_json", f"The JSON is not valid: {reason}", self.count + 1)


# --- Reading the stored data ---------------------------------------------------------


def _physical_lines(stream: BinaryIO, offset: int) -> Iterator[bytes]:
    """The stored data from ``offset``, one line (with its b"\\n") at a time."""
    stream.seek(offset)
    carry = b""
    while chunk := stream.read(_READ_SIZE):
        lines = (carry + chunk if carry else chunk).split(b"\n")
        carry = lines.pop()
        for line in lines:
            yield line + b"\n"
    if carry:
        yield carry


def _mapped(record: dict[str, object]) -> dict[str, object]:
    """A JSON object's known columns, keyed canonically (the first alias wins)."""
    values: dict[str, object] = {}
    for key, value in record.items():
        column = key if key in _COLUMN_SET else _column_for(key)
        if column is not None and column not in values:
            values[column] = value
    return values


def read_rows(
    stream: BinaryIO, media_type: str, start: Position | None = None
) -> Iterator[SourceRow]:
    """Stream the rows of stored (normalised) data, from the start or after ``start``.

    ``read_rows(stream, media, start=row.end)`` seeks to ``start.offset`` and yields
    exactly the rows after ``row``, with the same line numbers (a CSV header is read
    again from offset 0 first). Reads go in 64 KB pieces, so memory stays bounded
    whatever the size of the file. Blank lines and rows are skipped but counted.
    A row that cannot be read is yielded as ``values == {INVALID_ROW: reason}``.
    For a JSON array ``SourceRow.line`` is the element's 1-based index.
    """
    if media_type == MEDIA_CSV:
        return _csv_rows(stream, start)
    if media_type == MEDIA_NDJSON:
        return _ndjson_rows(stream, start)
    if media_type == MEDIA_JSON:
        return _json_rows(stream, start)
    raise _unsupported(media_type)


def count_rows(stream: BinaryIO, media_type: str, limit: int) -> int:
    """How many rows ``read_rows`` yields from the start, or ``limit + 1`` if more.

    A CSV line without a quote is a row of its own unless it is blank, so such lines
    are counted without being split into cells: about twenty times faster than reading
    them. From the first line with a quote on, the rows are read.
    """
    if media_type != MEDIA_CSV:
        return _counted(read_rows(stream, media_type), limit)
    header, offset = _csv_header(stream)
    delimiter = header.delimiter
    delimiter_byte = ord(delimiter)
    line, rows = header.line, 0
    for raw in _physical_lines(stream, offset):
        if b'"' in raw:
            rest = _csv_rows(stream, Position(offset, line, rows))
            return rows + _counted(rest, limit - rows)
        offset += len(raw)
        line += 1
        # The usual row starts with a visible ASCII character; anything else is looked at.
        if 0x20 < raw[0] < 0x80 and raw[0] != delimiter_byte or (
                raw.decode("utf-8").replace(delimiter, "").strip()):
            rows += 1
            if rows > limit:
                break
    return rows


def _counted(rows: Iterator[SourceRow], limit: int) -> int:
    count = 0
    for _ in rows:
        count += 1
        if count > limit:
            break
    return count


def _csv_header(stream: BinaryIO) -> tuple[_Header, int]:
    finder = _HeaderFinder()
    offset = 0
    for raw in _physical_lines(stream, 0):
        offset += len(raw)
        header = finder.take(raw.decode("utf-8"))
        if header is not None:
            return header, offset
    raise FileProblem("empty_file", "The file is empty: it has no header and no rows.")


def _csv_rows(stream: BinaryIO, start: Position | None) -> Iterator[SourceRow]:
    header, header_end = _csv_header(stream)
    if start is None:
        offset, line, rows = header_end, header.line, 0
    else:
        offset, line, rows = start.offset, start.line, start.rows
    columns = header.columns
    physical = _physical_lines(stream, offset)
    row_start = offset

    def text_lines() -> Iterator[str]:
        # csv.reader pulls exactly the lines of one row, so after each row these
        # counters are where it ends. A row that goes on and on (a quote never closed)
        # is cut off here so memory stays bounded.
        nonlocal offset, line
        for raw in physical:
            offset += len(raw)
            line += 1
            yield raw.decode("utf-8")
            if offset - row_start > MAX_LINE_LENGTH:
                return

    while True:
        reader = csv.reader(text_lines(), delimiter=header.delimiter)
        while True:
            row_start = offset
            first = line + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                problem = f"cannot be read as CSV ({exc})"
            else:
                if offset - row_start <= MAX_LINE_LENGTH:
                    if cells and not _blank_cells(cells):
                        rows += 1
                        count = len(cells)
                        values: dict[str, object] = {
                            column: cells[index] for index, column in columns if index < count
                        }
                        yield SourceRow(first, values, Position(offset, line, rows))
                    continue
                problem = f"is longer than {MAX_LINE_LENGTH:,} characters"
            rows += 1
            reason = f"The row starting on line {first} {problem}; check for a quote that is "
            reason += "never closed." if line > first else "out of place."
            yield SourceRow(first, {INVALID_ROW: reason}, Position(offset, line, rows))
            break  # the reader may be mid-row: a fresh one starts on the next line


def _blank_cells(cells: list[str]) -> bool:
    first = cells[0]
    if first and not first.isspace():
        return False  # the usual row, decided without looking further
    return all(not cell or cell.isspace() for cell in cells)


def _ndjson_rows(stream: BinaryIO, start: Position | None) -> Iterator[SourceRow]:
    offset, line, rows = (start.offset, start.line, start.rows) if start else (0, 0, 0)
    for raw in _physical_lines(stream, offset):
        offset += len(raw)
        line += 1
        text = raw.decode("utf-8").strip()
        if not text:
            continue
        rows += 1
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            values: dict[str, object] = {
                INVALID_ROW: f"Line {line} is not valid JSON: {exc.msg} (column {exc.colno})."
            }
        except (ValueError, RecursionError):
            values = {INVALID_ROW: f"Line {line} is not valid JSON."}
        else:
            if isinstance(record, dict):
                values = _mapped(record)
            else:
                values = {INVALID_ROW: f"Line {line} is {_json_kind(record)}, not a JSON object."}
        yield SourceRow(line, values, Position(offset, line, rows))


def _json_rows(stream: BinaryIO, start: Position | None) -> Iterator[SourceRow]:
    scanner = _ArrayScanner(start)
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    stream.seek(start.offset if start else 0)
    while True:
        chunk = stream.read(_READ_SIZE)
        final = not chunk
        for value, end in scanner.push(decoder.decode(chunk, final), final):
            if isinstance(value, dict):
                values = _mapped(value)
            else:
                values = {
                    INVALID_ROW: f"Element {end.rows} is {_json_kind(value)}, not a JSON object."
                }
            yield SourceRow(end.rows, values, end)
        if final:
            return


# --- Checking one row ------------------------------------------------------------------

def csv_safe(value: str) -> str:
    """A value for the error report that spreadsheets show as text, never run as a formula."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _shown(value: object) -> str:
    """The raw value as the error report shows it, cut to a readable length."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) > _SHOWN_VALUE_LENGTH:
        return text[: _SHOWN_VALUE_LENGTH - 1] + "…"
    return text


# Columns whose non-text JSON values are reported at once; phone and the dates are
# checked by their own rules (a phone may be a number, dates matter for seasonal users).
_TEXT_COLUMNS = frozenset(("email", "name", "role", "group", "user_type", "language"))


def _trimmed(values: Mapping[str, object], line: int, errors: list[RowError]) -> dict[str, str]:
    """Each text value trimmed, blank ones left out; non-text values are reported."""
    texts: dict[str, str] = {}
    for column, raw in values.items():
        if isinstance(raw, str):
            raw = raw.strip()
            if raw:
                texts[column] = raw
        elif raw is not None and column in _TEXT_COLUMNS:
            errors.append(_wrong_type(line, column, raw, "text"))
    return texts


def _wrong_type(line: int, column: str, raw: object, expected: str) -> RowError:
    message = f"The {column} must be {expected}, not {_json_kind(raw)}."
    return RowError(line, column, "invalid_type", message, _shown(raw))


def _date(raw: object, line: int, errors: list[RowError], column: str) -> date | None:
    if raw is not None and not isinstance(raw, str):
        errors.append(_wrong_type(line, column, raw, "a date written as YYYY-MM-DD"))
        return None
    text = raw.strip() if raw else ""
    if not text:
        errors.append(
            RowError(line, column, "required",
                     f"Seasonal users need a {column} date (YYYY-MM-DD).", None)
        )
        return None
    # date.fromisoformat alone would also take "20261231" and "2026-W53-4".
    if _ISO_DATE.fullmatch(text) is not None:
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    errors.append(
        RowError(line, column, "invalid_date",
                 "Write the date as YYYY-MM-DD, for example 2026-12-31.", _shown(text))
    )
    return None


def check_row(row: SourceRow, catalog: Catalog) -> ImportRow | list[RowError]:
    """The row as a user to import, or every problem it has (not just the first).

    Values are trimmed and a blank value counts as absent. Duplicate emails are the
    caller's concern. Text that looks like a formula is kept as it is: it is stored
    as text, and ``csv_safe`` neutralises it in the error report.
    """
    values = row.values
    line = row.line
    if INVALID_ROW in values:
        return [RowError(line, "row", "invalid_row", str(values[INVALID_ROW]), None)]
    errors: list[RowError] = []
    get = values.get
    text = _trimmed(values, line, errors).get

    email = ""
    email_raw = get("email")
    email_text = text("email")
    if email_text is not None:
        try:
            email = normalise_email(email_text)
        except InvalidInput as exc:
            problem = exc.errors[0]
            errors.append(
                RowError(line, "email", problem.code, problem.message, _shown(email_text))
            )
    elif email_raw is None or isinstance(email_raw, str):  # else: already invalid_type
        errors.append(RowError(line, "email", "required", "An email address is required.", None))

    name = text("name")
    if name is not None and len(name) > MAX_NAME_LENGTH:
        errors.append(
            RowError(line, "name", "too_long", f"The name has {len(name)} characters; at most "
                     f"{MAX_NAME_LENGTH} are allowed.", _shown(name))
        )

    role = None  # blank: a new member gets the default role, an update keeps theirs
    role_text = text("role")
    if role_text is not None:
        found = catalog.roles.get(role_text.lower())
        if found is None:
            errors.append(
                RowError(line, "role", "unknown_role",
                         f'There is no role named "{role_text}" in this account.',
                         _shown(role_text))
            )
        else:
            role = found

    user_type = "full"
    user_type_text = text("user_type")
    if user_type_text is not None:
        if user_type_text.lower() in USER_TYPES:
            user_type = user_type_text.lower()
        else:
            errors.append(
                RowError(line, "user_type", "invalid_user_type",
                         f"Use one of: {', '.join(USER_TYPES)}.", _shown(user_type_text))
            )

    group_text = text("group")
    group = _group(group_text, user_type, catalog, line, errors)

    language = None
    language_text = text("language")
    if language_text is not None:
        try:
            language = _language(language_text)
        except InvalidInput as exc:
            errors.append(
                RowError(line, "language", "invalid_language", exc.errors[0].message,
                         _shown(language_text))
            )

    phone = None
    phone_raw = get("phone")
    if phone_raw is not None:
        phone = _phone(phone_raw, line, errors)

    seasonal_start = seasonal_end = None
    if user_type == "seasonal":  # dates given for anyone else are ignored
        if not catalog.seasonal_seats:
            errors.append(
                RowError(line, "user_type", "seasonal_not_available",
                         "This account has no seasonal seats on its contract, so it cannot "
                         "have seasonal users.", user_type_text)
            )
        seasonal_start = _date(get("seasonal_start"), line, errors, "seasonal_start")
        seasonal_end = _date(get("seasonal_end"), line, errors, "seasonal_end")
        if seasonal_start and seasonal_end and seasonal_end < seasonal_start:
            errors.append(
                RowError(line, "seasonal_end", "seasonal_window",
                         f"The season ends ({seasonal_end}) before it starts "
                         f"({seasonal_start}).", str(seasonal_end))
            )

    if errors:
        return errors
    return ImportRow(
        line, email, name, role, group, user_type, language, phone,
        seasonal_start, seasonal_end,
    )


# Few distinct spellings recur across a file: remember what each one means.
_language = lru_cache(maxsize=256)(normalise_language)


def _group(
    text: str | None, user_type: str, catalog: Catalog, line: int, errors: list[RowError]
) -> str | None:
    free = catalog.free_group
    if user_type == "free":
        if text is None or text.lower() == free.lower():
            return free
        errors.append(
            RowError(line, "group", "invalid_group",
                     f'Free users always belong to the "{free}" group; leave the group empty.',
                     _shown(text))
        )
        return None
    if text is None:
        return None
    if text.lower() == free.lower():
        errors.append(
            RowError(line, "group", "invalid_group",
                     f'Only free users can be in the "{free}" group; set user_type to free.',
                     _shown(text))
        )
        return None
    found = catalog.groups.get(text.lower())
    if found is None:
        errors.append(
            RowError(line, "group", "unknown_group",
                     f'There is no group named "{text}" in this account.', _shown(text))
        )
    return found


def _phone(raw: object, line: int, errors: list[RowError]) -> str | None:
    # JSON senders often write phone numbers as numbers.
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    elif isinstance(raw, float) and raw.is_integer():
        raw = str(int(raw))
    elif not isinstance(raw, str):
        errors.append(_wrong_type(line, "phone", raw, "text or a number"))
        return None
    phone = raw.strip()
    if not phone:
        return None
    if _PHONE.fullmatch(phone) is None or sum(char.isdigit() for char in phone) < 5:
        errors.append(
            RowError(line, "phone", "invalid_phone",
                     "Use at most 40 characters of digits, spaces and + ( ) - . with at "
                     "least 5 digits.", _shown(raw))
        )
        return None
    return phone
