"""An account's roles and groups."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import (
    CATALOG,
    Permission,
    catalog,
    refuse_beyond_grant,
    require,
    role_permissions,
    standing_of,
    unknown_permissions,
)
from provisioning.accounts.models import Group, Role
from provisioning.core import audit
from provisioning.core.errors import Conflict, FieldError
from provisioning.core.validation import Form
from provisioning.members import rules


def list_permissions(session: Session, actor: Actor, account_id: int) -> list[dict[str, str]]:
    """Every permission a role can hold, with its meaning: what a role editor offers."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    return catalog()


def list_roles(session: Session, actor: Actor, account_id: int) -> list[dict[str, object]]:
    require(session, actor, account_id, Permission.USERS_MANAGE)
    roles = session.scalars(select(Role).where(Role.account_id == account_id).order_by(Role.id))
    return [{"id": r.id, "name": r.name, "permissions": role_permissions(r.permissions),
             "builtin": r.is_builtin} for r in roles]


def create_role(session: Session, actor: Actor, account_id: int, body: Any) -> dict[str, object]:
    """A custom role: a named set of permissions from the catalog."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    form = Form(body)
    name = form.text("name", required=True, max_length=100)
    permissions = form.body.get("permissions")
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        form.errors.append(FieldError("permissions", "Send a list of permission names."))
    elif unknown := unknown_permissions(permissions):
        form.errors.append(FieldError("permissions", f"Unknown: {', '.join(unknown)}. "
                                                     f"Known: {', '.join(CATALOG)}."))
    form.finish()
    assert name is not None and isinstance(permissions, list)
    refuse_beyond_grant(standing_of(session, actor, account_id), permissions, "permissions")
    taken = session.scalars(select(Role.name).where(Role.account_id == account_id)).all()
    if rules.name_key(name) in {rules.name_key(existing) for existing in taken}:
        raise Conflict(f"A role named {name!r} already exists (names ignore case).",
                       code="role_exists")
    role = Role(account_id=account_id, name=name, permissions=sorted(set(permissions)))
    session.add(role)
    session.flush()
    audit.record(session, account_id=account_id, actor_id=actor.identity_id,
                 actor_label=actor.label, action="role.create", target_type="role",
                 target_id=role.id, after={"name": name, "permissions": role.permissions})
    return {"id": role.id, "name": role.name, "permissions": role_permissions(role.permissions),
            "builtin": False}


def list_groups(session: Session, actor: Actor, account_id: int) -> list[dict[str, object]]:
    require(session, actor, account_id, Permission.USERS_MANAGE)
    groups = session.scalars(select(Group).where(Group.account_id == account_id).order_by(Group.id))
    return [{"id": g.id, "name": g.name, "builtin": g.is_builtin} for g in groups]
