"""Changing a member (R1, R14): role, group, name and the admin-only note, by name as the
member rules read them; the API's PATCH and the bulk ``set_role`` / ``set_group`` call
``update`` alike.

Nobody gives a role beyond what they hold, only admins make admins, and the account's
last active admin keeps the admin role.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import refuse_beyond_grant, refuse_changing_admin
from provisioning.accounts.models import Group, Role
from provisioning.core import audit
from provisioning.core.errors import Conflict, FieldError, InvalidInput
from provisioning.core.validation import Form
from provisioning.members import rules
from provisioning.members.acting import Acting
from provisioning.members.directory import MemberView, catalog, read_member
from provisioning.members.lifecycle import locked_member
from provisioning.members.models import Invitation, Membership, MemberStatus
from provisioning.members.targets import admin_role_ids, refuse_losing_last_admin

CHANGEABLE = ("role", "group", "name", "note")
MAX_NOTE_LENGTH = 2000
UNSET = object()  # a field the request left out (a group of null is "no group")


@dataclass(frozen=True)
class MemberChanges:
    """What a PATCH asks to change; a field left out stays as it is."""

    role: str | None = None
    group: object = UNSET  # a name, None (no group), or UNSET
    name: str | None = None
    note: object = UNSET  # text, None (no note), or UNSET

    @classmethod
    def parse(cls, body: Any) -> MemberChanges:
        form = Form(body)
        form.only(CHANGEABLE, f"Change only {', '.join(CHANGEABLE)} here.")
        role = form.text("role", max_length=rules.MAX_ROLE_OR_GROUP_NAME)
        if "role" in form.body and role is None and not form.errors:
            form.errors.append(FieldError("role", "Name a role.", "required"))
        group: object = UNSET
        if "group" in form.body:
            group = form.text("group", max_length=rules.MAX_ROLE_OR_GROUP_NAME)
        name = form.text("name")
        note: object = UNSET
        if "note" in form.body:
            note = form.text("note", max_length=MAX_NOTE_LENGTH)
        form.finish()
        return cls(role, group, name, note)


def update(session: Session, acting: Acting, member_id: int, changes: MemberChanges) -> int:
    """Apply ``changes`` to one member and write one ``member.update`` entry with what was
    and what is; nothing is written when nothing changes. Returns the member's id."""
    member = locked_member(session, acting.account.id, member_id)
    refuse_changing_admin(acting.standing, member.role.permissions)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if changes.role is not None:
        role_id, role_name = rules.named(changes.role, catalog(
            session.connection(), Role, member.account_id), "role")
        if role_id != member.role_id:
            if not acting.standing.is_admin:
                refuse_beyond_grant(acting.standing, session.scalar(
                    select(Role.permissions).where(Role.id == role_id)))
            admins = admin_role_ids(session, member.account_id)
            if role_id not in admins:
                refuse_losing_last_admin(session, member, admins)
            before["role"], after["role"] = member.role.name, role_name
            member.role_id = role_id
    if changes.group is not UNSET:
        _change_group(session, member, changes.group, before, after)
    if changes.name is not None:
        _change_name(session, member, changes.name, before, after)
    if changes.note is not UNSET and changes.note != member.note:
        before["note"], after["note"] = member.note, changes.note
        member.note = changes.note if isinstance(changes.note, str) else None
    if after:
        session.flush()
        session.expire(member, ["role", "group"])
        audit.record(session, account_id=member.account_id, actor_id=acting.identity_id,
                     actor_label=acting.label, action="member.update", target_type="member",
                     target_id=member.id, before={"email": member.identity.email, **before},
                     after={"email": member.identity.email, **after})
    return member.id


def _change_group(session: Session, member: Membership, text: object,
                  before: dict[str, Any], after: dict[str, Any]) -> None:
    """The group named (any case) under the free-user rule; None leaves no group."""
    wanted = rules.group_for(text if isinstance(text, str) else None, member.user_type)
    group_id, group_name = (None, None) if wanted is None else rules.named(
        wanted, catalog(session.connection(), Group, member.account_id), "group")
    if group_id != member.group_id:
        before["group"] = member.group.name if member.group else None
        after["group"] = group_name
        member.group_id = group_id


def _change_name(session: Session, member: Membership, name: str,
                 before: dict[str, Any], after: dict[str, Any]) -> None:
    """Until they join, the name the account knows them by; then the person's own, unless
    another account knows them too (it is how they appear everywhere)."""
    if member.status == MemberStatus.INVITED.value:
        invitation = session.scalars(select(Invitation).where(
            Invitation.membership_id == member.id)).first()
        if invitation is not None and invitation.name != name:
            before["name"], after["name"] = invitation.name, name
            invitation.name = name
            return
        if invitation is not None:
            return
    identity = member.identity
    if identity.name == name:
        return
    shared = session.scalar(select(func.count()).select_from(Membership).where(
        Membership.identity_id == identity.id, Membership.id != member.id)) or 0
    if shared:
        raise Conflict("This person also belongs to another workspace, so only they can "
                       "change their name.", code="name_shared",
                       errors=[FieldError("name", "Only the person can change it.",
                                          "name_shared")])
    before["name"], after["name"] = identity.name, name
    identity.name = name


def update_member(session: Session, actor: Actor, account_id: int, member_id: int,
                  body: Any) -> MemberView:
    """``PATCH /v1/accounts/{a}/users/{u} {"role"?, "group"?, "name"?, "note"?}``."""
    acting = Acting.of(session, actor, account_id)
    try:
        changes = MemberChanges.parse(body)
    except InvalidInput:
        read_member(session, account_id, member_id)  # another account's member: 404 first
        raise
    return read_member(session, account_id, update(session, acting, member_id, changes))
