"""Forgetting old notifications: inbox entries, finished push messages and digest marks.

An entry older than ``notification_retention_days`` goes with its push messages (their
foreign key cascades), unless it still waits for its digest. A finished push message goes
at the same age even when its entry stays. A digest mark is only needed while its local
day can still come round in some time zone, so marks are kept a week.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from provisioning.core.config import settings
from provisioning.core.db import delete_in_chunks
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
        "notifications": delete_in_chunks(Notification, select(Notification.id).where(
            Notification.created_at < cutoff, Notification.digest_pending.is_(False)), chunk),
        "push_messages": delete_in_chunks(PushMessage, select(PushMessage.id).where(
            PushMessage.status.in_(FINISHED_PUSHES), PushMessage.next_attempt_at < cutoff),
            chunk),
        "digest_marks": delete_in_chunks(NotificationDigest, select(NotificationDigest.id).where(
            NotificationDigest.local_date < (moment - DIGEST_MARKS_KEPT).date()), chunk),
    }

