"""Every admin action leaves an audit entry (R14)."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict, Unpack

from sqlalchemy import bindparam, column, insert, select, table
from sqlalchemy.orm import Session

from provisioning.core.db import prefixed_values
from provisioning.core.models import AuditEntry, utcnow

_COLUMNS = ("account_id", "actor_id", "actor_label", "action", "target_type", "target_id",
            "before", "after", "created_at")
# The acting identity's membership of the account, looked up by the insert itself (the
# members package owns the table; core only names it).
_MEMBERSHIPS = table("memberships", column("id"), column("account_id"), column("identity_id"))
_ACTING_MEMBER = select(_MEMBERSHIPS.c.id).where(
    _MEMBERSHIPS.c.account_id == bindparam("audit_account_id"),
    _MEMBERSHIPS.c.identity_id == bindparam("audit_actor_id")).scalar_subquery()
# Built once, to ride in the invite path's statement too; nothing reads its id: no RETURNING.
INSERT = insert(AuditEntry).values(prefixed_values("audit_", _COLUMNS)
                                   | {"actor_member_id": _ACTING_MEMBER})


class Entry(TypedDict):
    account_id: int | None
    actor_id: int | None
    actor_label: str
    action: str
    target_type: str
    target_id: int | str | None
    before: NotRequired[dict[str, Any] | None]
    after: NotRequired[dict[str, Any] | None]


def entry(**fields: Unpack[Entry]) -> dict[str, Any]:
    """An audit entry as ``INSERT``'s parameters."""
    target_id = fields["target_id"]
    return {
        "audit_account_id": fields["account_id"],
        "audit_actor_id": fields["actor_id"],
        "audit_actor_label": fields["actor_label"],
        "audit_action": fields["action"],
        "audit_target_type": fields["target_type"],
        "audit_target_id": None if target_id is None else str(target_id),
        "audit_before": fields.get("before"),
        "audit_after": fields.get("after"),
        "audit_created_at": utcnow(),
    }


def record(session: Session, **fields: Unpack[Entry]) -> None:
    """Written at once in the caller's transaction: a Core insert, as nothing reads it back."""
    session.connection().execute(INSERT, entry(**fields))
