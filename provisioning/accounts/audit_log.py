"""The account's audit log, newest first (R14)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import Permission, require
from provisioning.core.models import AuditEntry
from provisioning.core.pages import decode_cursor, encode_cursor, page_size


def list_audit(session: Session, actor: Actor, account_id: int, cursor: str | None,
               limit: int | None) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, a page at a time."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    limit = page_size(limit)
    query = select(AuditEntry).where(AuditEntry.account_id == account_id)
    before = decode_cursor(cursor)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    entries = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)).all()
    items = [
        {"id": e.id, "actor": e.actor_label, "action": e.action, "target_type": e.target_type,
         "target_id": e.target_id, "before": e.before, "after": e.after, "at": e.created_at}
        for e in entries[:limit]
    ]
    return items, (encode_cursor(entries[limit - 1].id) if len(entries) > limit else None)
