"""A person's in-app notifications: listed newest first a page at a time, and marked read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.core.errors import FieldError, InvalidInput, NotFound
from provisioning.core.models import utcnow
from provisioning.core.pages import MAX_PAGE, decode_cursor, encode_cursor, page_size
from provisioning.notifications.models import Notification


@dataclass(frozen=True)
class InboxEntry:
    id: int
    event: str
    text: str
    at: datetime
    read: bool


@dataclass(frozen=True)
class InboxPage:
    items: list[InboxEntry]
    next_cursor: str | None
    unread: int


def _entry(row: Notification) -> InboxEntry:
    return InboxEntry(row.id, row.event, row.text, row.created_at, row.read_at is not None)


def _mine(actor: Actor) -> Any:
    return (Notification.identity_id == actor.identity_id) & Notification.in_app


def list_inbox(session: Session, actor: Actor, cursor: str | None, limit: int | None,
               unread_only: bool = False) -> InboxPage:
    """The caller's in-app entries, newest first; ``unread`` counts those not yet read."""
    size = page_size(limit)
    after = decode_cursor(cursor)
    query = select(Notification).where(_mine(actor))
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    if after is not None:
        query = query.where(Notification.id < after)
    rows = list(session.scalars(query.order_by(Notification.id.desc()).limit(size + 1)))
    more = len(rows) > size
    rows = rows[:size]
    unread = session.scalar(select(func.count()).select_from(Notification).where(
        _mine(actor), Notification.read_at.is_(None))) or 0
    return InboxPage([_entry(row) for row in rows],
                     encode_cursor(rows[-1].id) if more and rows else None, unread)


def mark_read(session: Session, actor: Actor, entry_id: int) -> InboxEntry:
    """Mark one of the caller's entries read (again is harmless)."""
    row = session.scalars(select(Notification).where(
        _mine(actor), Notification.id == entry_id)).first()
    if row is None:
        raise NotFound("No such notification in your inbox.")
    if row.read_at is None:
        row.read_at = utcnow()
    return _entry(row)


def mark_many_read(session: Session, actor: Actor, body: Any) -> int:
    """Mark the caller's entries among ``{"ids": [...]}`` read; returns how many changed.
    Ids that are not the caller's are passed over, never revealed."""
    ids = body.get("ids") if isinstance(body, dict) else None
    if (not isinstance(ids, list) or not ids or len(ids) > MAX_PAGE
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
        raise InvalidInput([FieldError("ids", f"Send a list of 1 to {MAX_PAGE} notification "
                                       "ids.", "invalid")])
    changed = session.execute(update(Notification).where(
        _mine(actor), Notification.id.in_(ids), Notification.read_at.is_(None))
        .values(read_at=utcnow()))
    return int(changed.rowcount)  # type: ignore[attr-defined]
