"""A person's notification settings: read with the defaults filled in, and changed (SPEC §8).

Settings belong to the identity (the person), not to one membership, and are read in the
person's own time zone, kept here beside them (an IANA name, UTC until set).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import update
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.core.errors import FieldError, InvalidInput
from provisioning.notifications import catalog
from provisioning.notifications.models import Notification, NotificationSettings

_DIGEST_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
CHANGEABLE = ("enabled", "channels", "events", "email_mode", "digest_time", "time_zone",
              "telegram_chat_id")


@dataclass(frozen=True)
class Preferences:
    """What ``GET /v1/me/notifications`` answers."""

    enabled: bool
    channels: dict[str, bool]
    events: dict[str, bool]
    email_mode: str
    digest_time: str
    time_zone: str
    telegram_chat_id: str | None

    @property
    def digest_on(self) -> bool:
        """Emails gathered into the daily digest rather than sent one by one."""
        return self.enabled and self.channels["email"] and self.email_mode == "digest"

    def wants(self, event: str) -> bool:
        return self.enabled and self.events.get(event, True)


def preferences_of(row: NotificationSettings | None) -> Preferences:
    """The settings a row holds, or a new member's defaults where there is none."""
    if row is None:
        return Preferences(catalog.DEFAULT_ENABLED, dict(catalog.DEFAULT_CHANNELS),
                           dict.fromkeys(catalog.EVENTS, True), catalog.DEFAULT_EMAIL_MODE,
                           catalog.DEFAULT_DIGEST_TIME, catalog.DEFAULT_TIME_ZONE, None)
    stored = row.events or {}
    return Preferences(
        enabled=row.enabled,
        channels={channel: bool(getattr(row, f"channel_{channel}"))
                  for channel in catalog.CHANNELS},
        events={event: bool(stored.get(event, True)) for event in catalog.EVENTS},
        email_mode=row.email_mode, digest_time=row.digest_time, time_zone=row.time_zone,
        telegram_chat_id=row.telegram_chat_id)


def notification_settings(session: Session, actor: Actor) -> Preferences:
    """The caller's notification settings."""
    return preferences_of(session.get(NotificationSettings, actor.identity_id))


def change_notification_settings(session: Session, actor: Actor, body: Any) -> Preferences:
    """Change the caller's settings; what the body leaves out stays as it was.

    Entries waiting for a digest the person no longer gets are let go, so turning
    notifications (or the digest) off never sends yesterday's lines later.
    """
    row = session.get(NotificationSettings, actor.identity_id, with_for_update=True)
    current = preferences_of(row)
    changed = read_change(body, current)
    if row is None:
        row = NotificationSettings(identity_id=actor.identity_id)
        session.add(row)
    row.enabled = changed.enabled
    for channel in catalog.CHANNELS:
        setattr(row, f"channel_{channel}", changed.channels[channel])
    row.events = dict(changed.events)
    row.email_mode = changed.email_mode
    row.digest_time = changed.digest_time
    row.time_zone = changed.time_zone
    row.telegram_chat_id = changed.telegram_chat_id
    if not changed.digest_on:
        session.execute(update(Notification).where(
            Notification.identity_id == actor.identity_id, Notification.digest_pending)
            .values(digest_pending=False))
    session.flush()
    return changed


def read_change(body: Any, current: Preferences) -> Preferences:
    """The settings after ``body``, every problem named by its field (``channels.email``)."""
    if not isinstance(body, dict):
        raise InvalidInput([FieldError("body", "Send a JSON object.", "invalid_body")])
    problems = [FieldError(name, f"Unknown setting; use: {', '.join(CHANGEABLE)}.", "unknown")
                for name in body if name not in CHANGEABLE]
    enabled = _flag(body, "enabled", current.enabled, problems)
    channels = _flags(body, "channels", catalog.CHANNELS, current.channels, problems)
    events = _flags(body, "events", tuple(catalog.EVENTS), current.events, problems)
    email_mode = body.get("email_mode", current.email_mode)
    if email_mode not in catalog.EMAIL_MODES:
        problems.append(FieldError("email_mode", "Use instant or digest.", "invalid"))
    digest_time = body.get("digest_time", current.digest_time)
    if not (isinstance(digest_time, str) and _DIGEST_TIME.fullmatch(digest_time)):
        problems.append(FieldError("digest_time", "Use a time of day like 09:00 (HH:MM, 24 h).",
                                   "invalid_time"))
    time_zone = body.get("time_zone", current.time_zone)
    if not (isinstance(time_zone, str) and is_time_zone(time_zone)):
        problems.append(FieldError("time_zone", "Use an IANA time zone, e.g. Asia/Jakarta.",
                                   "invalid_time_zone"))
    chat = body.get("telegram_chat_id", current.telegram_chat_id)
    if chat is not None and (isinstance(chat, bool) or not isinstance(chat, str | int)
                             or not 0 < len(str(chat)) <= 64):
        problems.append(FieldError("telegram_chat_id", "Use the chat's id (a number or "
                                   "@channel name).", "invalid"))
    if problems:
        raise InvalidInput(problems)
    return Preferences(enabled, channels, events, email_mode, digest_time, time_zone,
                       None if chat is None else str(chat))


def _flag(body: dict[str, Any], name: str, current: bool, problems: list[FieldError]) -> bool:
    value = body.get(name, current)
    if not isinstance(value, bool):
        problems.append(FieldError(name, "Use true or false.", "invalid_type"))
        return current
    return value


def _flags(body: dict[str, Any], name: str, known: tuple[str, ...], current: dict[str, bool],
           problems: list[FieldError]) -> dict[str, bool]:
    """An object of on/off switches: only the names given change."""
    given = body.get(name, {})
    if not isinstance(given, dict):
        problems.append(FieldError(name, "Send an object of names and true or false.",
                                   "invalid_type"))
        return dict(current)
    merged = dict(current)
    for key, value in given.items():
        if key not in known:
            problems.append(FieldError(f"{name}.{key}", f"Unknown; use: {', '.join(known)}.",
                                       "unknown"))
        elif not isinstance(value, bool):
            problems.append(FieldError(f"{name}.{key}", "Use true or false.", "invalid_type"))
        else:
            merged[key] = value
    return merged


@lru_cache(maxsize=1024)
def is_time_zone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows."""
    if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
