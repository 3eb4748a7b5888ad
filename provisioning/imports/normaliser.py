"""The upload as it streams in: encoding, binary files, line limits and the header checked,
UTF-8 out.
"""

from __future__ import annotations

import codecs
import re

from provisioning.imports.formats import (
    MAX_LINE_LENGTH,
    MEDIA_CSV,
    MEDIA_JSON,
    MEDIA_NDJSON,
    READABLE,
    FileProblem,
    HeaderFinder,
    readable_size,
    too_long,
    unsupported_media,
)
from provisioning.imports.readers import ArrayScanner

_HEAD_SIZE = 8  # enough bytes to recognise a BOM or a binary signature
_CONTROL_WINDOW = 1024
_MAX_CONTROL_CHARACTERS = 4
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


class Normaliser:
    """Runs over the upload as it streams in, before anything is stored.

    ``feed`` each piece as it arrives (any size) and store what it returns, then
    store what ``finish`` returns. The stored data is UTF-8 without BOM. Any method
    may raise ``FileProblem``; after that the upload is refused and the object is
    not used again. Memory is bounded: only the CSV header, one partial line and
    one partial JSON element are ever held.
    """

    def __init__(self, media_type: str, max_bytes: int) -> None:
        if media_type not in READABLE:
            raise unsupported_media(media_type)
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
        self._headers = HeaderFinder() if media_type == MEDIA_CSV else None
        self._header_parts: list[str] = []
        self._array = ArrayScanner() if media_type == MEDIA_JSON else None

    def feed(self, data: bytes) -> bytes:
        """Check one piece of the upload; returns the bytes to store (maybe none yet)."""
        self.bytes_in += len(data)
        if self.bytes_in > self.max_bytes:
            raise FileProblem(
                "too_large",
                f"The file is larger than the limit of {readable_size(self.max_bytes)}.",
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
                raise too_long(self._line)
            return
        if self._line_length + first > MAX_LINE_LENGTH:
            raise too_long(self._line)
        last = text.rfind("\n")
        if last - first > MAX_LINE_LENGTH:  # only pieces this big can hide a long line
            for number, line in enumerate(text[first + 1 : last].split("\n"), 1):
                if len(line) > MAX_LINE_LENGTH:
                    raise too_long(self._line + number)
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
