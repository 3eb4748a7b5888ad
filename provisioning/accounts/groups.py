"""An account's groups (R1, R14): Sales, Marketing, Support … and the built-in "Free users",
which holds the free users and nobody else (R9) and is never renamed or deleted. Names are
unique whatever their case (``rules.name_key``); every change writes an audit entry.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import Permission, require
from provisioning.accounts import names
from provisioning.accounts.models import Group
from provisioning.core import audit
from provisioning.core.errors import Conflict, FieldError, InvalidInput, NotFound
from provisioning.core.validation import Form
from provisioning.members import rules
from provisioning.members.models import Membership

MOVE_TO = "move_to"


def _view(group: Group) -> dict[str, object]:
    return {"id": group.id, "name": group.name, "builtin": group.is_builtin}


def list_groups(session: Session, actor: Actor, account_id: int) -> list[dict[str, object]]:
    require(session, actor, account_id, Permission.USERS_MANAGE)
    groups = session.scalars(select(Group).where(Group.account_id == account_id).order_by(Group.id))
    return [_view(group) for group in groups]


def _name(body: Any) -> str:
    form = Form(body)
    form.only(("name",), "Only the name can be set here.")
    name = form.text("name", required=True, max_length=rules.MAX_ROLE_OR_GROUP_NAME)
    form.finish()
    assert name is not None
    return name


def _group(session: Session, account_id: int, group_id: int, *, changing: bool) -> Group:
    """The account's group, locked; the built-in one refused when it is to change."""
    group = session.scalars(select(Group).where(Group.id == group_id,
                                                Group.account_id == account_id)
                            .with_for_update()).first()
    if group is None:
        raise NotFound("No such group in this account.")
    if changing and group.is_builtin:
        raise Conflict(f"The built-in group {group.name!r} cannot be renamed or deleted.",
                       code="builtin_group")
    return group


def _record(session: Session, actor: Actor, account_id: int, action: str, group_id: int,
            before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    audit.record(session, account_id=account_id, actor_id=actor.identity_id,
                 actor_label=actor.label, action=f"group.{action}", target_type="group",
                 target_id=group_id, before=before, after=after)


def create_group(session: Session, actor: Actor, account_id: int, body: Any
                 ) -> dict[str, object]:
    """``POST …/groups {"name"}``."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    name = _name(body)
    names.refuse_taken(session, Group, "group", account_id, name)
    group = Group(account_id=account_id, name=name, is_builtin=False)
    session.add(group)
    session.flush()
    _record(session, actor, account_id, "create", group.id, None, {"name": name})
    return _view(group)


def rename_group(session: Session, actor: Actor, account_id: int, group_id: int, body: Any
                 ) -> dict[str, object]:
    """``PATCH …/groups/{id} {"name"}``; its members stay in it."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    name = _name(body)
    group = _group(session, account_id, group_id, changing=True)
    if name != group.name:
        names.refuse_taken(session, Group, "group", account_id, name, group.id)
        before = {"name": group.name}
        group.name = name
        session.flush()
        _record(session, actor, account_id, "update", group.id, before, {"name": name})
    return _view(group)


def _move_target(session: Session, account_id: int, group: Group, raw: str | None
                 ) -> Group | None:
    """The group ``?move_to=`` names: another ordinary group of the account."""
    if raw is None or not raw.strip():
        return None
    if not raw.strip().isdigit():
        raise InvalidInput([FieldError(MOVE_TO, "Give a group id.", "invalid_type")])
    target = session.scalars(select(Group).where(Group.id == int(raw),
                                                 Group.account_id == account_id)
                             .with_for_update(read=True)).first()
    if target is None:
        refusal = (f"There is no group {raw.strip()} in this account.", "unknown_group")
    elif target.id == group.id:
        refusal = ("Move the members to another group than the one being deleted.",
                   "same_group")
    elif target.is_builtin:
        refusal = (f'Only free users can be in the "{target.name}" group.', "invalid_group")
    else:
        return target
    raise InvalidInput([FieldError(MOVE_TO, *refusal)])


def delete_group(session: Session, actor: Actor, account_id: int, group_id: int,
                 move_to: str | None) -> None:
    """``DELETE …/groups/{id}?move_to=``: refused while members are in it (409
    ``group_in_use``), unless ``move_to`` names the group they move to first."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    group = _group(session, account_id, group_id, changing=True)
    target = _move_target(session, account_id, group, move_to)
    in_group = Membership.group_id == group.id
    members = session.scalar(select(func.count()).select_from(Membership).where(in_group)) or 0
    if members and target is None:
        raise Conflict(f"{members} member(s) are in the group {group.name!r}: move them with "
                       f"?{MOVE_TO}=<group id>, or change their group first.",
                       code="group_in_use", errors=[FieldError(MOVE_TO, "Required while "
                                                               "members are in the group.",
                                                               "group_in_use")])
    if members and target is not None:
        session.execute(update(Membership).where(in_group).values(group_id=target.id))
    before = {"name": group.name, "members": members}
    session.delete(group)
    session.flush()
    _record(session, actor, account_id, "delete", group_id, before,
            {"moved_to": target.id if target is not None and members else None})
