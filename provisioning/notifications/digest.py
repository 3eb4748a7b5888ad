"""The daily digest: one email per person per local day, gathering what waited for it.

Beat runs ``send_digests`` every few minutes. Per time zone in use it works out the local
date and time of day once, then, set-based, inserts a ``notification_digests`` row for
every person in that zone whose digest time has passed today and who has entries waiting;
``ON CONFLICT DO NOTHING`` on (person, local date) lets only one run, worker or retry win
each person's day, and only the winners' emails are queued, in the same transaction.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time
from sqlalchemy import Connection, and_, exists, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.core.models import utcnow
from provisioning.core.validation import LANGUAGES
from provisioning.mail.outbox import Email, queue_emails
from provisioning.members.models import Identity
from provisioning.notifications.models import (
    Notification,
    NotificationDigest,
    NotificationSettings,
)

log = logging.getLogger(__name__)
DIGEST_TEMPLATE = "digest"
DIGEST_TASK = "provisioning.send_digests"


@dataclass(frozen=True)
class DigestRun:
    zones: int
    digests: int


def send_digests(*, now: datetime | None = None) -> DigestRun:
    """Queue today's digest for everyone whose local digest time has passed; returns how
    many zones were looked at and digests queued. ``now`` is the clock (tests pass theirs)."""
    moment = now or utcnow()
    with session_scope() as session:
        zones = list(session.scalars(
            select(NotificationSettings.time_zone).distinct().where(_gets_digest())))
    digests = 0
    for zone in zones:
        local = moment.astimezone(ZoneInfo(zone))
        while True:
            with session_scope() as session:
                made = _digest_zone(session, zone, local.date(), local.strftime("%H:%M"),
                                    moment)
            digests += made
            if made < settings().notification_digest_batch_size:
                break
    return DigestRun(len(zones), digests)


def _gets_digest() -> Any:
    return and_(NotificationSettings.email_mode == "digest", NotificationSettings.enabled,
                NotificationSettings.channel_email)


def _digest_zone(session: Session, zone: str, day: date, time_of_day: str,
                 now: datetime) -> int:
    """One batch of one zone's digests: claim the day, queue the emails, let the entries go."""
    pending = exists().where(Notification.identity_id == NotificationSettings.identity_id,
                             Notification.digest_pending, Notification.created_at <= now)
    done_today = exists().where(NotificationDigest.identity_id == NotificationSettings.identity_id,
                                NotificationDigest.local_date == day)
    due = (select(NotificationSettings.identity_id,
                  literal(day, NotificationDigest.local_date.type),
                  literal(now, NotificationDigest.created_at.type))
           .where(_gets_digest(), NotificationSettings.time_zone == zone,
                  NotificationSettings.digest_time <= time_of_day, pending, ~done_today)
           .limit(settings().notification_digest_batch_size))
    connection = session.connection()
    claimed = connection.execute(
        _insert(connection).from_select(["identity_id", "local_date", "created_at"], due)
        .on_conflict_do_nothing(index_elements=["identity_id", "local_date"])
        .returning(NotificationDigest.identity_id)).scalars().all()
    if not claimed:
        return 0
    people = list(claimed)
    entries: dict[int, list[Any]] = defaultdict(list)
    for entry in session.execute(
            select(Notification.identity_id, Notification.text, Notification.created_at)
            .where(Notification.identity_id.in_(people), Notification.digest_pending,
                   Notification.created_at <= now)
            .order_by(Notification.identity_id, Notification.id)):
        entries[entry.identity_id].append(entry)
    session.execute(update(Notification).where(
        Notification.identity_id.in_(people), Notification.digest_pending,
        Notification.created_at <= now).values(digest_pending=False))
    recipients = session.execute(
        select(Identity.id, Identity.email, Identity.name, Identity.language,
               NotificationSettings.digest_time)
        .join(NotificationSettings, NotificationSettings.identity_id == Identity.id)
        .where(Identity.id.in_(people))).all()
    zone_info = ZoneInfo(zone)
    emails = [_digest_email(person, entries[person.id], zone, zone_info, day)
              for person in recipients]
    queue_emails(session, emails)
    return len(emails)


def _insert(connection: Connection) -> Any:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(NotificationDigest)


def _digest_email(person: Any, entries: list[Any], zone: str, zone_info: ZoneInfo,
                  day: date) -> Email:
    """One person's digest in their language, each line's time in their zone."""
    language = person.language if person.language in LANGUAGES else settings().default_language
    locale = language.replace("-", "_")
    lines = []
    for entry in entries:
        local = entry.created_at.astimezone(zone_info)
        lines.append({"time": clock_time(local.hour, local.minute, locale), "text": entry.text})
    return Email(account_id=None, recipient=person.email, recipient_name=person.name or None,
                 template=DIGEST_TEMPLATE, language=language,
                 context={"recipient_name": person.name or "", "entries": lines,
                          "count": len(lines), "day": long_date(day, locale),
                          "digest_time": person.digest_time, "time_zone": zone})


# Babel takes ~50 µs a call, most of a digest's making; the times of day and the day repeat.
@lru_cache(maxsize=8192)
def clock_time(hour: int, minute: int, locale: str) -> str:
    """A time of day as ``locale`` writes it, short (09:05, 9:05 AM)."""
    return format_time(time(hour, minute), "short", locale=locale)


@lru_cache(maxsize=256)
def long_date(day: date, locale: str) -> str:
    """A date as ``locale`` writes it in full (4 March 2030, 4 марта 2030 г.)."""
    return format_date(day, "long", locale=locale)
