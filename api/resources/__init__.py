"""Falcon resources: parse, authorise, call one service, shape the answer."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

import falcon

from provisioning.core.errors import FieldError, InvalidInput


def body(req: falcon.Request) -> Any:
    """The JSON body, or None when empty (services say which fields were missing)."""
    return req.get_media(default_when_empty=None)


def shaped(value: Any, omit: frozenset[str] = frozenset()) -> Any:
    """A service's answer as JSON-ready dicts, without the top-level fields ``omit`` names;
    unlike ``asdict`` it deep-copies nothing."""
    if is_dataclass(value) and not isinstance(value, type):
        return {field.name: shaped(getattr(value, field.name)) for field in fields(value)
                if field.name not in omit}
    return value


def int_param(req: falcon.Request, name: str, default: int | None = None) -> int | None:
    raw = req.get_param(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput([FieldError(name, "Must be a whole number.")]) from None


def page_query(req: falcon.Request) -> tuple[str | None, int | None]:
    """A list's ``cursor`` and ``limit`` from the query string (SPEC §10)."""
    return req.get_param("cursor"), int_param(req, "limit")


def page_body(found: tuple[list[Any], str | None]) -> dict[str, Any]:
    """A list page's body (SPEC §10): ``{"items": [...], "next_cursor": str|null}``."""
    items, next_cursor = found
    return {"items": items, "next_cursor": next_cursor}


def bool_param(req: falcon.Request, name: str) -> bool:
    """A switch in the query string (``true``/``false``, ``1``/``0``), off when absent."""
    raw = req.get_param(name)
    if raw in (None, ""):
        return False
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise InvalidInput([FieldError(name, "Use true or false.")])
