"""Parsing what admins send into values the rules can trust. Pure functions, no I/O."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import email_validator
from email_validator import EmailNotValidError, validate_email

from provisioning.core.errors import FieldError, InvalidInput
from provisioning.core.security import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

LANGUAGES = ("en", "es", "pt-BR", "id", "tr", "ru")
_LANGUAGE_BY_KEY = {code.lower(): code for code in LANGUAGES} | {"pt_br": "pt-BR", "pt": "pt-BR"}
MAX_NAME_LENGTH = 200
Ruled = TypeVar("Ruled")


def normalise_email(value: Any, field: str = "email") -> str:
    """R2: trimmed, validated, and lower-cased so comparisons ignore case."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput([FieldError(field, "An email address is required.", "required")])
    address = value.strip()
    return plain_email(address) or validated_email(address, field)


def validated_email(address: str, field: str = "email") -> str:
    """email-validator's verdict on a trimmed address: the whole of RFC 5321/6531."""
    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput([FieldError(field, str(exc), "invalid_email")]) from None
    return checked.normalized.lower()


_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
# An ASCII dot-atom local part and a domain of LDH labels under an all-letter TLD.
_PLAIN_EMAIL = re.compile(
    rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{1,63}"
)
# email-validator refuses these domains and every domain under them.
_SPECIAL_USE_ENDINGS = tuple(
    mark + name.lower() for name in email_validator.SPECIAL_USE_DOMAIN_NAMES for mark in "@."
)


def plain_email(address: str) -> str | None:
    """The trimmed ``address`` normalised, when it is certainly what ``validated_email``
    returns; None leaves it to the validator.

    Covers the common plain-ASCII address (a dot-atom local part, LDH domain labels,
    a TLD of letters) in a fraction of email-validator's time (which is most of an
    import's row and a tenth of an invitation's API time). Left to the validator:
    local parts over 64 characters, addresses over 254, any "--" in the domain (R-LDH
    and Punycode "xn--" labels), and the special-use domains email-validator refuses
    (its own list, read at import).
    """
    if len(address) > 254 or _PLAIN_EMAIL.fullmatch(address) is None:
        return None
    lowered = address.lower()
    at = lowered.index("@")
    if at > 64 or lowered.find("--", at) >= 0 or lowered.endswith(_SPECIAL_USE_ENDINGS):
        return None
    return lowered


def normalise_language(value: Any, field: str = "language") -> str:
    if isinstance(value, str) and value.strip().lower() in _LANGUAGE_BY_KEY:
        return _LANGUAGE_BY_KEY[value.strip().lower()]
    raise InvalidInput(
        [FieldError(field, f"Use one of: {', '.join(LANGUAGES)}.", "invalid_language")]
    )


class Form:
    """Reads fields out of a JSON object, collecting every problem before refusing."""

    def __init__(self, body: Any) -> None:
        if not isinstance(body, Mapping):
            raise InvalidInput([FieldError("body", "Send a JSON object.", "invalid_body")])
        self.body = body
        self.errors: list[FieldError] = []

    def _string(self, name: str, required: bool) -> str | None:
        """The raw string, or None (noting a problem if it was required or not a string)."""
        value = self.body.get(name)
        if value is None:
            if required:
                self.errors.append(FieldError(name, "This field is required.", "required"))
            return None
        if not isinstance(value, str):
            self.errors.append(FieldError(name, "Must be a string.", "invalid_type"))
            return None
        return value

    def text(
        self, name: str, *, required: bool = False, max_length: int = MAX_NAME_LENGTH
    ) -> str | None:
        """A trimmed string; blank counts as absent."""
        value = self._string(name, required)
        if value is None:
            return None
        value = value.strip()
        if not value:
            if required:
                self.errors.append(FieldError(name, "This field is required.", "required"))
            return None
        if len(value) > max_length:
            self.errors.append(FieldError(name, f"At most {max_length} characters.", "too_long"))
            return None
        return value

    def only(self, allowed: Iterable[str], message: str) -> None:
        """Refuse every field of the body that is not ``allowed``, with ``message``."""
        allowed = set(allowed)
        self.errors += [FieldError(key, message, "unknown_field")
                        for key in self.body if key not in allowed]

    def secret(self, name: str, *, required: bool = False) -> str | None:
        """Like text, but never trimmed: spaces are part of a password."""
        return self._string(name, required)

    def email(self, name: str = "email") -> str | None:
        return self._checked(name, normalise_email)

    def language(self, name: str = "language") -> str | None:
        if self.body.get(name) is None:
            return None
        return self._checked(name, normalise_language)

    def moment(self, name: str) -> datetime | None:
        """A point in time, ISO 8601 (``2027-01-31T18:00:00Z``); without an offset, UTC."""
        value = self.body.get(name)
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            moment = None
        if moment is None:
            self.errors.append(FieldError(name, "Use a time like 2027-01-31T18:00:00Z.",
                                          "invalid_time"))
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    def ruled(self, rule: Callable[..., Ruled], *args: Any) -> Ruled | None:
        """What ``rule`` makes of ``args``, or None with its refusal noted."""
        try:
            return rule(*args)
        except InvalidInput as exc:
            self.errors.extend(exc.errors)
            return None

    def _checked(self, name: str, parse: Any) -> Any:
        try:
            return parse(self.body.get(name), name)
        except InvalidInput as exc:
            self.errors.extend(exc.errors)
            return None

    def finish(self) -> None:
        """Refuse with every collected problem, naming each field."""
        if self.errors:
            raise InvalidInput(self.errors)


def check_password(password: str | None, field: str = "password") -> list[FieldError]:
    if password is None:
        return [FieldError(field, "A password is required.", "required")]
    if len(password) < MIN_PASSWORD_LENGTH:
        return [
            FieldError(field, f"Use at least {MIN_PASSWORD_LENGTH} characters.", "too_short")
        ]
    if len(password) > MAX_PASSWORD_LENGTH:
        return [FieldError(field, f"At most {MAX_PASSWORD_LENGTH} characters.", "too_long")]
    return []


COMMON_PASSWORDS_FILE = Path(__file__).with_name("common-passwords.txt")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower-cased (``#`` lines are comments)."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines
                     if line.strip() and not line.startswith("#"))


def check_new_password(password: str | None, email: str, field: str = "new_password"
                       ) -> list[FieldError]:
    """A password someone chooses for their login: long enough (``check_password``), not
    their email (or its name part), and not on the common-password list."""
    problems = check_password(password, field)
    if problems or password is None:
        return problems
    lowered = password.strip().lower()
    if lowered in (email.lower(), email.lower().partition("@")[0]):
        return [FieldError(field, "Do not use your email address as your password.",
                           "same_as_email")]
    if lowered in common_passwords() or lowered.replace(" ", "") in common_passwords():
        return [FieldError(field, "This password is too common; choose another.", "too_common")]
    return []
