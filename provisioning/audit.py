"""Every admin action leaves an audit entry (R14)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from provisioning.models import AuditEntry

_INSERT = insert(AuditEntry).inline()  # nothing reads its id: no RETURNING


def record(
    session: Session,
    *,
    account_id: int | None,
    actor_id: int | None,
    actor_label: str,
    action: str,
    target_type: str,
    target_id: int | str | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Written at once in the caller's transaction: a Core insert, as nothing reads it back."""
    session.connection().execute(_INSERT, {
        "account_id": account_id,
        "actor_id": actor_id,
        "actor_label": actor_label,
        "action": action,
        "target_type": target_type,
        "target_id": None if target_id is None else str(target_id),
        "before": before,
        "after": after,
    })
