"""A person's own profile: name, phone, language, time zone, two-factor state and photo.

The profile belongs to the identity, across accounts. What an account's admins write
about a member (the admin-only note, R12) is the membership's and never shown here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

import phonenumbers
from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.core.config import settings
from provisioning.core.errors import FieldError, InvalidInput
from provisioning.core.validation import MAX_NAME_LENGTH, normalise_language
from provisioning.members.models import Identity
from provisioning.profile.models import ProfilePhoto

UNSET: Any = object()  # a field the request did not name: left as it is


@dataclass(frozen=True)
class Profile:
    id: int
    email: str
    name: str
    phone: str | None
    language: str
    time_zone: str | None
    two_factor: bool
    photo_url: str | None


def photo_url(identity_id: int, etag: str | None) -> str | None:
    """Where the photo is served; the version makes a new photo a new URL for caches."""
    return None if etag is None else f"/v1/identities/{identity_id}/photo?v={etag[:12]}"


def read_profile(session: Session, actor: Actor) -> Profile:
    identity = session.get_one(Identity, actor.identity_id)
    etag = session.scalar(select(ProfilePhoto.etag).where(
        ProfilePhoto.identity_id == identity.id).limit(1))
    return Profile(id=identity.id, email=identity.email, name=identity.name or "",
                   phone=identity.phone, language=identity.language
                   or settings().default_language, time_zone=identity.time_zone,
                   two_factor=bool(identity.totp_enabled), photo_url=photo_url(identity.id, etag))


def update_profile(session: Session, actor: Actor, *, name: Any = UNSET, phone: Any = UNSET,
                   language: Any = UNSET, time_zone: Any = UNSET) -> Profile:
    """Change the fields given (None clears phone and time zone); every problem is named."""
    errors: list[FieldError] = []
    changes: dict[str, Any] = {}
    if name is not UNSET:
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME_LENGTH:
            errors.append(FieldError("name", f"Give a name of 1 to {MAX_NAME_LENGTH} "
                                             "characters.", "invalid_name"))
        else:
            changes["name"] = name.strip()
    for field, parse, value in (("phone", normalise_phone, phone),
                                ("language", normalise_language, language),
                                ("time_zone", normalise_time_zone, time_zone)):
        if value is UNSET:
            continue
        if value is None and field != "language":
            changes[field] = None
            continue
        try:
            changes[field] = parse(value, field)
        except InvalidInput as refused:
            errors.extend(refused.errors)
    if errors:
        raise InvalidInput(errors)
    identity = session.get_one(Identity, actor.identity_id)
    for field, value in changes.items():
        setattr(identity, field, value)
    session.flush()
    return read_profile(session, actor)


def normalise_phone(value: Any, field: str = "phone") -> str:
    """A phone number in international form, stored as E.164 (+5511987654321)."""
    refused = InvalidInput([FieldError(field, "Give a phone number in international form, "
                                              "e.g. +55 11 98765-4321.", "invalid_phone")])
    if not isinstance(value, str) or len(value) > 40:
        raise refused
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise refused from None
    if not phonenumbers.is_valid_number(number):
        raise refused
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def normalise_time_zone(value: Any, field: str = "time_zone") -> str:
    """An IANA time zone name (``Europe/Lisbon``)."""
    if isinstance(value, str) and value.strip() in _time_zones():
        return value.strip()
    raise InvalidInput([FieldError(field, "Use an IANA time zone name, e.g. Europe/Lisbon.",
                                   "invalid_time_zone")])
