"""Who receives a member's records (R6), what a member owns, and the account's last admin.

A disable, a removal and each member of a bulk action name their targets the same way:
``reassign_to`` for every kind, ``reassign_leads_to`` (…) overriding it for one kind. A
target is an active, non-free member of the same account, and not the member itself; a
refusal names the field that chose it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Table, func, select
from sqlalchemy.orm import Session

from provisioning.access.policy import EVERY_PERMISSION
from provisioning.accounts.models import Account, Role
from provisioning.core.errors import Conflict, FieldError, InvalidInput
from provisioning.crm.models import Contact, Customer, Lead, Task
from provisioning.members.models import Membership, MemberStatus, UserType

RECORD_KINDS = ("leads", "contacts", "customers", "tasks")
RECORD_TABLES: dict[str, Table] = {
    kind: cast(Table, model.__table__)
    for kind, model in zip(RECORD_KINDS, (Lead, Contact, Customer, Task), strict=True)}
EVERY_KIND_FIELD = "reassign_to"
LAST_ADMIN = ("An account always keeps an active administrator: make another member an "
              "administrator first.")


def kind_field(kind: str) -> str:
    """The field that names one kind's target: ``reassign_leads_to``."""
    return f"reassign_{kind}_to"


TARGET_FIELDS = (EVERY_KIND_FIELD, *(kind_field(kind) for kind in RECORD_KINDS))


@dataclass(frozen=True)
class TargetRequest:
    """The targets as the admin gave them: a member id for each field used."""

    given: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, values: Any) -> TargetRequest:
        """From a JSON body (numbers) or query parameters (their text); blank is absent."""
        if values is not None and not isinstance(values, Mapping):
            raise InvalidInput([FieldError("body", "Send a JSON object.", "invalid_body")])
        given: dict[str, int] = {}
        errors: list[FieldError] = []
        for name in TARGET_FIELDS:
            raw = (values or {}).get(name)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                continue
            if isinstance(raw, str) and raw.strip().isdigit():
                raw = int(raw.strip())
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
                errors.append(FieldError(name, "Give the id of a member of this account.",
                                         "invalid_type"))
                continue
            given[name] = raw
        if errors:
            raise InvalidInput(errors)
        return cls(given)

    def __bool__(self) -> bool:
        return bool(self.given)

    def field_for(self, kind: str) -> str | None:
        """The field that chose this kind's target, if any did."""
        if kind_field(kind) in self.given:
            return kind_field(kind)
        return EVERY_KIND_FIELD if EVERY_KIND_FIELD in self.given else None

    def as_params(self) -> dict[str, int]:
        return dict(self.given)


def check_targets(session: Session, account_id: int, member_id: int | None,
                  request: TargetRequest, *, lock: bool = False) -> dict[str, int]:
    """Each kind's target member, checked; ``member_id`` (None: any member) may not receive
    its own records. ``lock`` holds the targets (FOR SHARE) until the transaction ends, so
    none is disabled or removed under it. Every refusal at once, each naming its field."""
    ids = sorted(set(request.given.values()))
    query = select(Membership.id, Membership.status, Membership.user_type).where(
        Membership.account_id == account_id, Membership.id.in_(ids))
    found = {row[0]: row for row in session.execute(
        query.with_for_update(read=True) if lock else query)}
    errors: list[FieldError] = []
    for name, target in request.given.items():
        row = found.get(target)
        if row is None:
            errors.append(FieldError(name, f"There is no member {target} in this account.",
                                     "unknown_member"))
        elif target == member_id:
            errors.append(FieldError(name, "A member cannot receive their own records; "
                                           "choose another member.", "target_is_member"))
        elif row.status != MemberStatus.ACTIVE.value:
            errors.append(FieldError(name, f"Member {target} is {row.status}; records go to "
                                           "an active member.", "target_inactive"))
        elif row.user_type == UserType.FREE.value:
            errors.append(FieldError(name, f"Member {target} is a free user and cannot own "
                                           "records.", "target_free"))
    if errors:
        raise InvalidInput(errors)
    return {kind: request.given[chosen] for kind in RECORD_KINDS
            if (chosen := request.field_for(kind)) is not None}


def owned_records(connection: Connection, member_id: int) -> dict[str, int]:
    """How many records of each kind point at the member (the reassignment's preview)."""
    counts = select(*(
        select(func.count()).select_from(table).where(table.c.responsible_id == member_id)
        .scalar_subquery().label(kind) for kind, table in RECORD_TABLES.items()))
    row = connection.execute(counts).one()
    return {kind: int(row[index] or 0) for index, kind in enumerate(RECORD_KINDS)}


def reassign_required(member_label: str, owned: Mapping[str, int],
                      targets: Mapping[str, int]) -> Conflict | None:
    """R6: a removal needs a target for every kind the member owns; None when covered."""
    missing = [kind for kind in RECORD_KINDS if owned.get(kind) and kind not in targets]
    if not missing:
        return None
    what = ", ".join(f"{owned[kind]} {kind}" for kind in missing)
    return Conflict(
        f"{member_label} owns {what}. Choose who receives them: {EVERY_KIND_FIELD} for "
        f"every kind, or {kind_field(missing[0])} (and the like) for one kind.",
        code="reassign_required",
        errors=[FieldError(kind_field(kind), f"{owned[kind]} {kind} need a member to "
                           "receive them.", "reassign_required") for kind in missing])


def admin_role_ids(session: Session, account_id: int) -> set[int]:
    """The account's roles that store "*": whoever holds one is an administrator."""
    return {role_id for role_id, stored in session.execute(
        select(Role.id, Role.permissions).where(Role.account_id == account_id))
        if EVERY_PERMISSION in (stored or ())}


def refuse_losing_last_admin(session: Session, member: Membership,
                             admin_roles: set[int] | None = None) -> None:
    """Refuse a change that would leave the account without an active administrator
    (409 ``last_admin``); the caller is about to take ``member`` out of that set.

    The account's row is locked (FOR NO KEY UPDATE: invites go on) so two admins disabling
    each other at once are counted one after the other.
    """
    roles = admin_role_ids(session, member.account_id) if admin_roles is None else admin_roles
    if (member.role_id not in roles or member.status != MemberStatus.ACTIVE.value
            or member.user_type == UserType.FREE.value):
        return
    session.execute(select(Account.id).where(Account.id == member.account_id)
                    .with_for_update(key_share=True))
    others = session.scalar(
        select(func.count()).select_from(Membership).where(
            Membership.account_id == member.account_id, Membership.id != member.id,
            Membership.role_id.in_(roles), Membership.user_type != UserType.FREE.value,
            Membership.status == MemberStatus.ACTIVE.value)) or 0
    if not others:
        raise Conflict(LAST_ADMIN, code="last_admin",
                       errors=[FieldError("user_id", LAST_ADMIN, "last_admin")])
