"""Reading the stored file back as rows: CSV, NDJSON and a JSON array, from any position."""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO, NoReturn

from provisioning.imports.formats import (
    COLUMN_SET,
    INVALID_ROW,
    MAX_LINE_LENGTH,
    MEDIA_CSV,
    MEDIA_JSON,
    MEDIA_NDJSON,
    READ_BLOCK,
    FileProblem,
    HeaderFinder,
    Position,
    SourceRow,
    column_for,
    too_long,
    unsupported_media,
)

if TYPE_CHECKING:
    from provisioning.imports.formats import _Header


_START, _FIRST, _ELEMENT, _AFTER, _END = range(5)
_NOT_WHITESPACE = re.compile(r"[^ \t\r\n]")
_ELEMENT_ENDS = ("}", "]", '"', ",")
_DECODER = json.JSONDecoder()


def json_kind(value: object) -> str:
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


class ArrayScanner:
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
            raise too_long(self.count + 1, "Element")
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


def _physical_lines(stream: BinaryIO, offset: int) -> Iterator[bytes]:
    """The stored data from ``offset``, one line (with its b"\\n") at a time."""
    stream.seek(offset)
    carry = b""
    while chunk := stream.read(READ_BLOCK):
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
        column = key if key in COLUMN_SET else column_for(key)
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
    raise unsupported_media(media_type)


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
    finder = HeaderFinder()
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
                values = {INVALID_ROW: f"Line {line} is {json_kind(record)}, not a JSON object."}
        yield SourceRow(line, values, Position(offset, line, rows))


def _json_rows(stream: BinaryIO, start: Position | None) -> Iterator[SourceRow]:
    scanner = ArrayScanner(start)
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    stream.seek(start.offset if start else 0)
    while True:
        chunk = stream.read(READ_BLOCK)
        final = not chunk
        for value, end in scanner.push(decoder.decode(chunk, final), final):
            if isinstance(value, dict):
                values = _mapped(value)
            else:
                values = {
                    INVALID_ROW: f"Element {end.rows} is {json_kind(value)}, not a JSON object."
                }
            yield SourceRow(end.rows, values, end)
        if final:
            return
