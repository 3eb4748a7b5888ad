"""The account's audit log, newest first (R14), filtered by who acted, what they did, to
what, and when."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import Permission, require
from provisioning.core.errors import FieldError, InvalidInput
from provisioning.core.models import AuditEntry
from provisioning.core.pages import decode_cursor, encode_cursor, page_size

FILTERS = ("actor", "action", "target", "since", "until")


def _moment(name: str, text: str, errors: list[FieldError]) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "+"))
    except ValueError:
        errors.append(FieldError(name, "Use a time like 2027-01-31T18:00:00Z.", "invalid_time"))
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def list_audit(session: Session, actor: Actor, account_id: int, cursor: str | None,
               limit: int | None, filters: dict[str, str | None] | None = None
               ) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, a page at a time. ``actor`` is the acting member's id, ``action`` a
    name such as ``member.disable``, ``target`` the target's id, ``since`` and ``until``
    times (ISO 8601, ``since`` included, ``until`` not)."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    limit = page_size(limit)
    query = select(AuditEntry).where(AuditEntry.account_id == account_id)
    given = {name: value.strip() for name, value in (filters or {}).items()
             if name in FILTERS and value is not None and value.strip()}
    errors: list[FieldError] = []
    if "actor" in given:
        if given["actor"].isdigit():
            query = query.where(AuditEntry.actor_member_id == int(given["actor"]))
        else:
            errors.append(FieldError("actor", "Give the acting member's id.", "invalid"))
    if "action" in given:
        query = query.where(AuditEntry.action == given["action"])
    if "target" in given:
        query = query.where(AuditEntry.target_id == given["target"][:64])
    since = _moment("since", given["since"], errors) if "since" in given else None
    until = _moment("until", given["until"], errors) if "until" in given else None
    if errors:
        raise InvalidInput(errors)
    if since is not None:
        query = query.where(AuditEntry.created_at >= since)
    if until is not None:
        query = query.where(AuditEntry.created_at < until)
    before = decode_cursor(cursor)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    entries = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)).all()
    items = [
        {"id": e.id, "actor_id": e.actor_member_id, "actor": e.actor_label,
         "action": e.action, "target_type": e.target_type, "target_id": e.target_id,
         "before": e.before, "after": e.after, "at": e.created_at}
        for e in entries[:limit]
    ]
    return items, (encode_cursor(entries[limit - 1].id) if len(entries) > limit else None)
