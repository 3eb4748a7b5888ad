"""Role and group names are unique in an account, in any case (``rules.name_key``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.accounts.models import Group, Role
from provisioning.core.errors import Conflict, FieldError
from provisioning.members import rules


def refuse_taken(session: Session, kind: type[Role] | type[Group], noun: str, account_id: int,
                 name: str, except_id: int | None = None) -> None:
    """409 ``{noun}_exists`` when another role (or group) of the account has ``name``."""
    taken = session.scalars(select(kind.name).where(kind.account_id == account_id,
                                                    kind.id != (except_id or 0))).all()
    if rules.name_key(name) in {rules.name_key(existing) for existing in taken}:
        code = f"{noun}_exists"
        raise Conflict(f"A {noun} named {name!r} already exists (names ignore case).",
                       code=code, errors=[FieldError("name", "Taken.", code)])
