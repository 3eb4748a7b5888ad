"""Lists a page at a time: one page-size rule and one opaque cursor for every list."""

from __future__ import annotations

import base64

from provisioning.core.errors import FieldError, InvalidInput

MAX_PAGE = 1000
DEFAULT_PAGE = 50


def page_size(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_PAGE
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput([FieldError("limit", f"Use a limit from 1 to {MAX_PAGE}.")])
    return limit


def encode_cursor(last_id: int) -> str:
    """An opaque cursor for "after this id"."""
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "id":
            raise ValueError(raw)
        return int(value)
    except ValueError:
        raise InvalidInput([FieldError("cursor", "This cursor is not valid.")]) from None
