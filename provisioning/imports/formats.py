"""What an import file may hold: its columns and media types, the header, and the rows and
errors read from it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

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
_SEP_LINE = re.compile("\ufeff?sep=([,;\t])[ \r\n]*", re.IGNORECASE)
READABLE = (MEDIA_CSV, MEDIA_JSON, MEDIA_NDJSON)
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
_BLANK_LINE = re.compile(r"[\s,;\ufeff]*")
_QUOTED = re.compile(r'"[^"]*"')
_HEADER_SEPARATORS = re.compile(r"[\s_\-]+")


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
    # "check": found in the row itself, kept when a dry run is committed; "apply": found
    # against the database, decided again by the commit.
    stage: str = "check"


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
    """What the account has: role and group names keyed by ``members.rules.name_key``, and
    its seasonal seats on contract."""

    roles: Mapping[str, str]
    groups: Mapping[str, str]
    seasonal_seats: int
    # Roles the member who started the import may not give (access.policy.beyond_grant).
    ungrantable: frozenset[str] = frozenset()


def _header_key(name: str) -> str:
    return _HEADER_SEPARATORS.sub(" ", name.lower()).strip(" *:")


COLUMN_SET = frozenset(COLUMNS)
_COLUMN_BY_KEY = {
    _header_key(alias): column
    for column, aliases in COLUMN_ALIASES.items()
    for alias in (column, *aliases)
}


def column_for(name: str) -> str | None:
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
        column = column_for(name)
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


class HeaderFinder:
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


READ_BLOCK = 65_536


def readable_size(count: int) -> str:
    if count >= 1_048_576:
        return f"{count / 1_048_576:.3g} MB"
    if count >= 1024:
        return f"{count / 1024:.3g} KB"
    return f"{count:,} bytes"


def unsupported_media(media_type: str) -> FileProblem:
    return FileProblem(
        "unsupported_media_type",
        f"Files of type {media_type!r} cannot be imported. Send CSV (text/csv), a JSON "
        "array (application/json) or NDJSON (application/x-ndjson).",
    )


def too_long(line: int, what: str = "Line") -> FileProblem:
    return FileProblem(
        "line_too_long",
        f"{what} {line} is longer than {MAX_LINE_LENGTH:,} characters; one user's row is "
        "much shorter. Check that this is the right file.",
        line,
    )
