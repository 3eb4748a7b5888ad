"""Leads, contacts, customers and tasks, one implementation for the four kinds: create, read,
change, delete and list the records members own.

Every call is checked against the caller's role (R1) and kept to the account it names: a
record of another account is not found. Every write leaves an audit entry (R14).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import Permission, require_reach
from provisioning.core import audit
from provisioning.core.errors import FieldError, InvalidInput, NotFound
from provisioning.core.models import utcnow
from provisioning.core.pages import decode_cursor, encode_cursor, page_size
from provisioning.core.validation import Form
from provisioning.crm.models import (
    Contact,
    Customer,
    CustomerParticipant,
    Lead,
    LeadParticipant,
    Participation,
    Task,
)
from provisioning.members.models import Membership, MemberStatus, UserType
from provisioning.notifications.publish import notify

Record = Lead | Contact | Customer | Task
MAX_LABEL_LENGTH: int = Lead.__table__.c.name.type.length  # type: ignore[attr-defined]
RESPONSIBLE = "responsible_id"
# Who may own records: a member who is in, or on the way in, and takes part in full (R6, R9).
OWNING_STATUSES = (MemberStatus.ACTIVE.value, MemberStatus.INVITED.value)


@dataclass(frozen=True)
class Kind:
    """One kind of owned record: its table, the field that names it, who may do what."""

    plural: str  # as the URL spells it: leads
    noun: str  # in audit actions and targets: lead.create
    model: type[Record]
    label: str  # the field that names a record: name, or a task's title
    view: Permission
    edit: Permission
    delete: Permission
    times: tuple[str, ...] = ()  # further fields: points in time a client may set or clear
    participants: type[LeadParticipant | CustomerParticipant] | None = None  # free users (R9)

    def columns(self) -> list[Any]:
        """What a client reads of a record, in the order the answer lists it."""
        model = self.model
        return [model.id, getattr(model, self.label), model.responsible_id, model.created_at,
                model.updated_at, *(getattr(model, name) for name in self.times)]


KINDS: dict[str, Kind] = {kind.plural: kind for kind in (
    Kind("leads", "lead", Lead, "name", Permission.LEADS_VIEW, Permission.LEADS_EDIT,
         Permission.LEADS_DELETE, participants=LeadParticipant),
    Kind("contacts", "contact", Contact, "name", Permission.CONTACTS_VIEW,
         Permission.CONTACTS_EDIT, Permission.CONTACTS_EDIT),
    Kind("customers", "customer", Customer, "name", Permission.CUSTOMERS_VIEW,
         Permission.CUSTOMERS_EDIT, Permission.CUSTOMERS_EDIT, participants=CustomerParticipant),
    Kind("tasks", "task", Task, "title", Permission.TASKS_VIEW, Permission.TASKS_EDIT,
         Permission.TASKS_EDIT, times=("due_at", "completed_at")),
)}


@dataclass(frozen=True)
class Caller:
    """The acting member, as records see them: their membership is the default owner; a free
    user reaches only the records it takes part in (R9)."""

    actor: Actor
    account_id: int
    member_id: int
    participant_only: bool = False

    def reachable(self, kind: Kind) -> list[ColumnElement[bool]]:
        """The conditions that keep a query to the records of ``kind`` this caller reaches."""
        if not self.participant_only:
            return []
        table: type[Participation] | None = kind.participants
        if table is None:  # the policy lets free users reach no other kind
            return [kind.model.id.is_(None)]
        return [kind.model.id.in_(select(table.record_id)  # type: ignore[attr-defined]
                                  .where(table.member_id == self.member_id))]


def acting_member(session: Session, actor: Actor, account_id: int, permission: Permission,
                  *, participant_may: bool | None = None) -> Caller:
    """The caller, if the policy lets them act with ``permission`` in the account; a free
    user only where R9 lets a participant act (``policy.require_reach``)."""
    reach = require_reach(session, actor, account_id, permission,
                          participant_may=participant_may)
    return Caller(actor, account_id, reach.member_id, reach.participant_only)


def owning_member(session: Session, account_id: int, value: Any, field: str = RESPONSIBLE
                  ) -> int:
    """``value`` as the id of a member who may own records in the account: one of its
    members, active or invited, and not a free user (R6, R9). Otherwise a refusal naming
    ``field``, before anything is written (never the database's foreign-key error).

    The membership row is share-locked until the transaction ends, so a disable or a
    removal running at the same time waits for the new record and then takes it along.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput([FieldError(field, "Give a member's id (a whole number).",
                                       "invalid_type")])
    row = session.execute(
        select(Membership.status, Membership.user_type)
        .where(Membership.id == value, Membership.account_id == account_id)
        .with_for_update(read=True)
    ).first()
    if row is None:
        refusal = (f"No member with id {value} in this account.", "no_such_member")
    elif row.user_type == UserType.FREE.value:
        refusal = ("Free users own no records; choose a member who is not free.",
                   "free_member")
    elif row.status not in OWNING_STATUSES:
        refusal = ("This member is disabled; choose an active or invited member.",
                   "inactive_member")
    else:
        return value
    raise InvalidInput([FieldError(field, *refusal)])


def _kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise NotFound(f"No such kind of record: {name}.") from None


def _shaped(kind: Kind, row: Any) -> dict[str, Any]:
    return {column.key: value for column, value in zip(kind.columns(), row, strict=True)}


def _one(kind: Kind, account_id: int, record_id: int) -> Select[Any]:
    model = kind.model
    return select(model).where(model.id == record_id, model.account_id == account_id)


def _found(session: Session, kind: Kind, account_id: int, record_id: int) -> Record:
    """The record, locked for the change about to be made; another account's is not found."""
    record = session.scalars(_one(kind, account_id, record_id).with_for_update()).first()
    if record is None:
        raise NotFound(f"No such {kind.noun} in this account.")
    return record


def _view(kind: Kind, record: Record) -> dict[str, Any]:
    return _shaped(kind, [getattr(record, column.key) for column in kind.columns()])


def _fields(session: Session, caller: Caller, kind: Kind, body: Any, *, creating: bool
            ) -> dict[str, Any]:
    """What the body sets, checked: every problem at once, each naming its field."""
    form = Form(body)
    changes: dict[str, Any] = {}
    if creating or kind.label in form.body:
        label = form.text(kind.label, required=True, max_length=MAX_LABEL_LENGTH)
        if label is not None:
            changes[kind.label] = label
    for name in kind.times:
        if name in form.body:
            moment = form.moment(name)
            changes[name] = None if moment is None else moment.astimezone(UTC)
    responsible = form.body.get(RESPONSIBLE)
    if RESPONSIBLE in form.body or creating:
        if responsible is None and creating:
            responsible = caller.member_id  # whoever creates a record owns it unless told
        owner = form.ruled(owning_member, session, caller.account_id, responsible)
        if owner is not None:
            changes[RESPONSIBLE] = owner
    form.finish()
    return changes


def _record(session: Session, caller: Caller, kind: Kind, action: str, record_id: int,
            before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    audit.record(session, account_id=caller.account_id, actor_id=caller.actor.identity_id,
                 actor_label=caller.actor.label, action=f"{kind.noun}.{action}",
                 target_type=kind.noun, target_id=record_id, before=before, after=after)


def _auditable(values: dict[str, Any]) -> dict[str, Any]:
    return {name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in values.items()}


def create_record(session: Session, actor: Actor, account_id: int, kind_name: str, body: Any
                  ) -> dict[str, Any]:
    """A new record; its responsible is the caller's own membership unless the body names
    another member who may own records."""
    kind = _kind(kind_name)
    caller = acting_member(session, actor, account_id, kind.edit)
    values = _fields(session, caller, kind, body, creating=True)
    now = utcnow()
    record = kind.model(account_id=account_id, created_at=now, updated_at=now, **values)
    session.add(record)
    session.flush()
    _record(session, caller, kind, "create", record.id, None, _auditable(values))
    _tell_assignee(session, caller, kind, record, values)
    return _view(kind, record)


def get_record(session: Session, actor: Actor, account_id: int, kind_name: str,
               record_id: int) -> dict[str, Any]:
    kind = _kind(kind_name)
    caller = acting_member(session, actor, account_id, kind.view)
    model = kind.model
    row = session.execute(select(*kind.columns())
                          .where(model.id == record_id, model.account_id == account_id,
                                 *caller.reachable(kind))).first()
    if row is None:
        raise NotFound(f"No such {kind.noun} in this account.")
    return _shaped(kind, row)


def update_record(session: Session, actor: Actor, account_id: int, kind_name: str,
                  record_id: int, body: Any) -> dict[str, Any]:
    """Change the fields the body names (the responsible too, to a member who may own it)."""
    kind = _kind(kind_name)
    caller = acting_member(session, actor, account_id, kind.edit)
    values = _fields(session, caller, kind, body, creating=False)
    record = _found(session, kind, account_id, record_id)
    changed = {name: value for name, value in values.items() if getattr(record, name) != value}
    if not changed:
        return _view(kind, record)
    before = {name: getattr(record, name) for name in changed}
    for name, value in changed.items():
        setattr(record, name, value)
    record.updated_at = utcnow()
    session.flush()
    _record(session, caller, kind, "update", record.id, _auditable(before), _auditable(changed))
    _tell_assignee(session, caller, kind, record, changed)
    return _view(kind, record)


def _tell_assignee(session: Session, caller: Caller, kind: Kind, record: Record,
                   changed: dict[str, Any]) -> None:
    """A task given to someone other than the caller tells them (``task_assigned``)."""
    assignee = changed.get(RESPONSIBLE)
    if kind.noun != "task" or assignee is None or assignee == caller.member_id:
        return
    identity_id = session.scalar(select(Membership.identity_id).where(Membership.id == assignee))
    notify(session, identity_id, "task_assigned", {"task_title": getattr(record, kind.label)},
           account_id=caller.account_id)


def delete_record(session: Session, actor: Actor, account_id: int, kind_name: str,
                  record_id: int) -> None:
    """Delete a record; a lead takes its conversations, notes and messages with it."""
    kind = _kind(kind_name)
    caller = acting_member(session, actor, account_id, kind.delete)
    record = _found(session, kind, account_id, record_id)
    before = _auditable({kind.label: getattr(record, kind.label),
                         RESPONSIBLE: record.responsible_id})
    session.delete(record)
    session.flush()
    _record(session, caller, kind, "delete", record_id, before, None)


def list_records(session: Session, actor: Actor, account_id: int, kind_name: str,
                 responsible_id: int | None, cursor: str | None, limit: int | None
                 ) -> tuple[list[dict[str, Any]], str | None]:
    """The account's records of a kind in creation order, a page at a time, optionally only
    those one member is responsible for; a free user's are those it takes part in."""
    kind = _kind(kind_name)
    caller = acting_member(session, actor, account_id, kind.view)
    size = page_size(limit)
    model = kind.model
    conditions = [model.account_id == account_id, *caller.reachable(kind)]
    if responsible_id is not None:
        conditions.append(model.responsible_id == responsible_id)
    after = decode_cursor(cursor)
    if after is not None:
        conditions.append(model.id > after)
    rows = session.execute(select(*kind.columns()).where(*conditions)
                           .order_by(model.id).limit(size + 1)).all()
    items = [_shaped(kind, row) for row in rows[:size]]
    return items, (encode_cursor(items[-1]["id"]) if len(rows) > size else None)
