"""Checking one row: the member rules applied to a file's cells, each problem a RowError."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING

from provisioning.core.errors import InvalidInput
from provisioning.core.validation import (
    MAX_NAME_LENGTH,
    USER_TYPES,
    normalise_email,
    normalise_language,
)
from provisioning.imports.formats import INVALID_ROW, ImportRow, RowError
from provisioning.imports.readers import json_kind

if TYPE_CHECKING:
    from provisioning.imports.formats import Catalog, SourceRow


_SHOWN_VALUE_LENGTH = 256  # longest raw value copied into a RowError
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PHONE = re.compile(r"[0-9 +().\-]{1,40}")


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
