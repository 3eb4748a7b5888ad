"""An account's roles (R1, R14): the built-in ``admin`` and ``member`` and the custom roles an
admin makes, edits and deletes. Built-in roles are marked (``is_builtin``) and never change;
a role is deleted only once nobody holds it; nobody gives a permission they do not hold."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
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
from provisioning.accounts import names
from provisioning.accounts.models import Role
from provisioning.core import audit
from provisioning.core.errors import Conflict, FieldError, NotFound
from provisioning.core.validation import Form
from provisioning.members import rules
from provisioning.members.models import Membership

EDITABLE = ("name", "permissions")


def list_permissions(session: Session, actor: Actor, account_id: int) -> list[dict[str, str]]:
    """Every permission a role can hold, with its meaning: what a role editor offers."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    return catalog()


def list_roles(session: Session, actor: Actor, account_id: int) -> list[dict[str, object]]:
    require(session, actor, account_id, Permission.USERS_MANAGE)
    roles = session.scalars(select(Role).where(Role.account_id == account_id).order_by(Role.id))
    return [_view(role) for role in roles]


def _permissions(form: Form, *, required: bool) -> list[str] | None:
    """The permission names the body gives, from the catalog; None when left out."""
    permissions = form.body.get("permissions")
    if permissions is None and not required:
        return None
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        form.errors.append(FieldError("permissions", "Send a list of permission names."))
    elif unknown := unknown_permissions(permissions):
        form.errors.append(FieldError("permissions", f"Unknown: {', '.join(unknown)}. "
                                                     f"Known: {', '.join(CATALOG)}."))
    else:
        return sorted(set(permissions))
    return None


def _view(role: Role) -> dict[str, object]:
    return {"id": role.id, "name": role.name, "permissions": role_permissions(role.permissions),
            "builtin": role.is_builtin}


def create_role(session: Session, actor: Actor, account_id: int, body: Any) -> dict[str, object]:
    """A custom role: a named set of permissions from the catalog."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    form = Form(body)
    name = form.text("name", required=True, max_length=rules.MAX_ROLE_OR_GROUP_NAME)
    permissions = _permissions(form, required=True)
    form.finish()
    assert name is not None and permissions is not None
    refuse_beyond_grant(standing_of(session, actor, account_id), permissions, "permissions")
    names.refuse_taken(session, Role, "role", account_id, name)
    role = Role(account_id=account_id, name=name, permissions=permissions)
    session.add(role)
    session.flush()
    audit.record(session, account_id=account_id, actor_id=actor.identity_id,
                 actor_label=actor.label, action="role.create", target_type="role",
                 target_id=role.id, after={"name": name, "permissions": role.permissions})
    return _view(role)


def _custom_role(session: Session, account_id: int, role_id: int) -> Role:
    """The account's role, locked; a built-in one is refused (409 ``builtin_role``)."""
    role = session.scalars(select(Role).where(Role.id == role_id, Role.account_id == account_id)
                           .with_for_update()).first()
    if role is None:
        raise NotFound("No such role in this account.")
    if role.is_builtin:
        raise Conflict(f"The built-in role {role.name!r} cannot be changed or deleted.",
                       code="builtin_role")
    return role


def update_role(session: Session, actor: Actor, account_id: int, role_id: int, body: Any
                ) -> dict[str, object]:
    """``PATCH …/roles/{id} {"name"?, "permissions"?}``: rename a custom role or change what
    it holds. Its holders act with the new set from their next request. Whoever edits it
    holds what it held and what it will hold: nobody widens a role beyond their own."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    form = Form(body)
    form.only(EDITABLE, f"Change only {', '.join(EDITABLE)} here.")
    name = form.text("name", max_length=rules.MAX_ROLE_OR_GROUP_NAME)
    if "name" in form.body and name is None and not form.errors:
        form.errors.append(FieldError("name", "Name the role.", "required"))
    permissions = _permissions(form, required=False)
    form.finish()
    role = _custom_role(session, account_id, role_id)
    standing = standing_of(session, actor, account_id)
    refuse_beyond_grant(standing, role.permissions, "permissions")
    if permissions is not None:
        refuse_beyond_grant(standing, permissions, "permissions")
    before: dict[str, object] = {}
    after: dict[str, object] = {}
    if name is not None and name != role.name:
        names.refuse_taken(session, Role, "role", account_id, name, role.id)
        before["name"], after["name"] = role.name, name
        role.name = name
    if permissions is not None and permissions != sorted(role.permissions or ()):
        before["permissions"], after["permissions"] = role.permissions, permissions
        role.permissions = permissions
    if after:
        session.flush()
        audit.record(session, account_id=account_id, actor_id=actor.identity_id,
                     actor_label=actor.label, action="role.update", target_type="role",
                     target_id=role.id, before=before, after=after)
    return _view(role)


def delete_role(session: Session, actor: Actor, account_id: int, role_id: int) -> None:
    """``DELETE …/roles/{id}``: only a custom role nobody holds (409 ``role_in_use``)."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    role = _custom_role(session, account_id, role_id)
    refuse_beyond_grant(standing_of(session, actor, account_id), role.permissions,
                        "permissions")
    holders = session.scalar(select(func.count()).select_from(Membership)
                             .where(Membership.role_id == role.id)) or 0
    if holders:
        raise Conflict(f"{holders} member(s) hold the role {role.name!r}: give them another "
                       f"role first.", code="role_in_use")
    before = {"name": role.name, "permissions": role.permissions}
    session.delete(role)
    session.flush()
    audit.record(session, account_id=account_id, actor_id=actor.identity_id,
                 actor_label=actor.label, action="role.delete", target_type="role",
                 target_id=role_id, before=before)
