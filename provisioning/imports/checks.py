"""Checking one row: the member rules applied to a file's cells, each problem a RowError."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

from provisioning.access.policy import CannotGrant
from provisioning.core.errors import InvalidInput
from provisioning.core.validation import (
    MAX_NAME_LENGTH,
    normalise_email,
    normalise_language,
)
from provisioning.imports.formats import INVALID_ROW, ImportRow, RowError
from provisioning.imports.readers import json_kind
from provisioning.members import rules
from provisioning.members.rules import NoSeasonalSeats

if TYPE_CHECKING:
    from provisioning.imports.formats import Catalog, SourceRow


_SHOWN_VALUE_LENGTH = 256  # longest raw value copied into a RowError
_PHONE = re.compile(r"[0-9 +().\-]{1,40}")
Found = TypeVar("Found")


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
    message = f"The {column} must be {expected}, not {json_kind(raw)}."
    return RowError(line, column, "invalid_type", message, _shown(raw))


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
        role = _ruled(rules.named, errors, line, role_text, catalog.roles, "role")
        if role is not None and role in catalog.ungrantable:
            errors.append(RowError(line, "role", "cannot_grant", CannotGrant.ROLE, role_text))
            role = None

    user_type = _ruled(rules.user_type, errors, line, text("user_type")) or "full"
    group = _ruled(rules.group_for, errors, line, text("group"), user_type)
    if group is not None:
        group = _ruled(rules.named, errors, line, group, catalog.groups, "group")

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

    if user_type == "seasonal":
        try:
            rules.seasonal_allowed(user_type, catalog.seasonal_seats)
        except NoSeasonalSeats as exc:
            errors.append(RowError(line, "user_type", exc.code, exc.detail, text("user_type")))
    seasonal_start, seasonal_end, problems = rules.season(
        user_type, get("seasonal_start"), get("seasonal_end"))
    errors += (RowError(line, problem.field, problem.code, problem.message,
                        _shown_cell(get(problem.field)))
               for problem in problems)

    if errors:
        return errors
    return ImportRow(
        line, email, name, role, group, user_type, language, phone,
        seasonal_start, seasonal_end,
    )


# Few distinct spellings recur across a file: remember what each one means.
_language = lru_cache(maxsize=256)(normalise_language)


def _ruled(rule: Callable[..., Found], errors: list[RowError], line: int, *args: Any
           ) -> Found | None:
    """What the member rule makes of a cell, or None with its refusal added to ``errors``
    (the cell's raw text as the value; the rules name the column)."""
    try:
        return rule(*args)
    except InvalidInput as exc:
        problem = exc.errors[0]
        errors.append(RowError(line, problem.field, problem.code, problem.message,
                               _shown(args[0])))
        return None


def _shown_cell(raw: object) -> str | None:
    return None if raw is None or (isinstance(raw, str) and not raw.strip()) else _shown(
        raw.strip() if isinstance(raw, str) else raw)


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
