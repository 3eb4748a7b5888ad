"""Forgetting old notifications: inbox entries, finished push messages and digest marks.

An entry older than ``notification_retention_days`` goes with its push messages (their
foreign key cascades), unless it still waits for its digest. A finished push message goes
at the same age even when its entry stays. A digest mark is only needed while its local
day can still come round in some time zone, so marks are kept a week.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, select

from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.core.models import utcnow
from provisioning.notifications.models import (
    Notification,
    NotificationDigest,
    PushMessage,
    PushStatus,
)

DIGEST_MARKS_KEPT = timedelta(days=7)
FINISHED_PUSHES = (PushStatus.SENT.value, PushStatus.FAILED.value)


def purge(*, now: datetime | None = None, chunk: int = 5_000) -> dict[str, int]:
    """Delete what is past retention, in chunks of one transaction each (no long lock);
    returns how many rows of each table went."""
    moment = now or utcnow()
    cutoff = moment - timedelta(days=settings().notification_retention_days)
    return {
        "notifications": _in_chunks(Notification, select(Notification.id).where(
            Notification.created_at < cutoff, Notification.digest_pending.is_(False)), chunk),
        "push_messages": _in_chunks(PushMessage, select(PushMessage.id).where(
            PushMessage.status.in_(FINISHED_PUSHES), PushMessage.next_attempt_at < cutoff),
            chunk),
        "digest_marks": _in_chunks(NotificationDigest, select(NotificationDigest.id).where(
            NotificationDigest.local_date < (moment - DIGEST_MARKS_KEPT).date()), chunk),
    }


def _in_chunks(model: Any, old: Select[Any], chunk: int) -> int:
    purged = 0
    while True:
        with session_scope() as session:
            ids = list(session.scalars(old.limit(chunk)))
            if ids:
                session.execute(delete(model).where(model.id.in_(ids)))
        purged += len(ids)
        if len(ids) < chunk:
            return purged
