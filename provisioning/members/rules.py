"""The member rules every path applies, written once: the API's invite, the import, and
the bulk actions and SCIM to come call these and report what they refuse, each problem a
``FieldError`` naming its field and code. Pure: no I/O.

- Role and group names match whatever their case (``name_key``).
- Free users always belong to the built-in "Free users" group, and nobody else does.
- User types are ``full``, ``free`` and ``seasonal``, in any case.
- A season is two dates written YYYY-MM-DD, the end not before the start; dates given
  for anyone but a seasonal member are ignored.
- Seasonal members only where the contract has seasonal seats (R10).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from provisioning.access.policy import MEMBER_ROLE
from provisioning.core.errors import Conflict, FieldError, InvalidInput
from provisioning.core.validation import Form, check_password

DEFAULT_ROLE = MEMBER_ROLE  # a new member's role unless the invite names another
FREE_USERS_GROUP = "Free users"
USER_TYPES = ("full", "free", "seasonal")
MAX_ROLE_OR_GROUP_NAME = 100
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
Found = TypeVar("Found")


class NoSeasonalSeats(Conflict):
    """R10: seasonal members only where the account has seasonal seats on contract."""

    code = "no_seasonal_seats"

    def __init__(self) -> None:
        super().__init__("This account has no seasonal seats on its contract, so it cannot "
                         "have seasonal users.", errors=[FieldError(
                             "user_type", "No seasonal seats on the contract.",
                             "no_seasonal_seats")])


def refused(field: str, code: str, message: str) -> InvalidInput:
    return InvalidInput([FieldError(field, message, code)])


def name_key(name: str) -> str:
    """The one case rule for role and group names: "Sales", "SALES" and "sales" are one."""
    return name.strip().casefold()


def user_type(text: str | None) -> str:
    """The user type a text names, in any case; none given is ``full``."""
    if text is None:
        return USER_TYPES[0]
    key = text.strip().lower()
    if key not in USER_TYPES:
        raise refused("user_type", "invalid_user_type", f"Use one of: {', '.join(USER_TYPES)}.")
    return key


def named(text: str, catalog: Mapping[str, Found], field: str) -> Found:
    """What ``catalog`` (keyed by ``name_key``) holds under the role or group ``text``
    names (``field`` is ``role`` or ``group``)."""
    found = catalog.get(name_key(text))
    if found is None:
        raise refused(field, f"unknown_{field}",
                      f'There is no {field} named "{text.strip()}" in this account.')
    return found


def group_for(text: str | None, member_type: str) -> str | None:
    """The group a member of this type joins: a free user the built-in one (given or
    not), anyone else the group named, or none."""
    free_group_named = text is not None and name_key(text) == name_key(FREE_USERS_GROUP)
    if member_type == "free":
        if text is None or free_group_named:
            return FREE_USERS_GROUP
        raise refused("group", "invalid_group", f'Free users always belong to the '
                      f'"{FREE_USERS_GROUP}" group; leave the group empty.')
    if free_group_named:
        raise refused("group", "invalid_group", f'Only free users can be in the '
                      f'"{FREE_USERS_GROUP}" group; set user_type to free.')
    return text


def season_date(raw: object, field: str) -> date:
    """A season's date: text written YYYY-MM-DD and nothing else."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise refused(field, "required", f"Seasonal users need a {field} date (YYYY-MM-DD).")
    if not isinstance(raw, str):
        raise refused(field, "invalid_type",
                      f"The {field} must be a date written as text, YYYY-MM-DD.")
    text = raw.strip()
    # date.fromisoformat alone would also take "20261231" and "2026-W53-4".
    if _ISO_DATE.fullmatch(text) is not None:
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise refused(field, "invalid_date", "Write the date as YYYY-MM-DD, for example 2026-12-31.")


def season(member_type: str, start: object, end: object
           ) -> tuple[date | None, date | None, list[FieldError]]:
    """A seasonal member's window and every problem with it; (None, None) for anyone else."""
    if member_type != "seasonal":
        return None, None, []
    errors: list[FieldError] = []
    dates: list[date | None] = []
    for field, raw in (("seasonal_start", start), ("seasonal_end", end)):
        try:
            dates.append(season_date(raw, field))
        except InvalidInput as exc:
            errors.extend(exc.errors)
            dates.append(None)
    first, last = dates
    if first is not None and last is not None and last < first:
        errors.append(FieldError("seasonal_end", f"The season ends ({last}) before it starts "
                                 f"({first}).", "seasonal_window"))
    return first, last, errors


def seasonal_allowed(member_type: str, seasonal_seats: int) -> None:
    """R10: refuse a seasonal member where the contract has no seasonal seats."""
    if member_type == "seasonal" and seasonal_seats <= 0:
        raise NoSeasonalSeats()


@dataclass(frozen=True)
class InviteRequest:
    """An invite as the API receives it, read by the rules above; the role and group are
    names, looked up in the account by ``name_key``."""

    email: str
    name: str | None
    role: str
    group: str | None
    user_type: str
    language: str | None
    initial_password: str | None
    seasonal_start: date | None
    seasonal_end: date | None

    @classmethod
    def parse(cls, body: Any) -> InviteRequest:
        form = Form(body)
        email = form.email()
        name = form.text("name")
        role = form.text("role", max_length=MAX_ROLE_OR_GROUP_NAME) or DEFAULT_ROLE
        group_text = form.text("group", max_length=MAX_ROLE_OR_GROUP_NAME)
        type_text = form.text("user_type", max_length=MAX_ROLE_OR_GROUP_NAME)
        member_type = form.ruled(user_type, type_text) or USER_TYPES[0]
        group = form.ruled(group_for, group_text, member_type)
        language = form.language()
        password = form.secret("initial_password")
        if password is not None:
            form.errors += check_password(password, "initial_password")
        start, end, problems = season(member_type, form.body.get("seasonal_start"),
                                      form.body.get("seasonal_end"))
        form.errors += problems
        form.finish()
        assert email is not None
        return cls(email, name, role, group, member_type, language, password, start, end)
