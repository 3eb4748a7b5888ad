"""Participants (R9): free users taking part in a lead or a customer. A free user sees the
records it takes part in and nothing else of the account; adding one tells it (in-app and
by email, ``participant_added``), removing one cuts its access at the next request.

Only free members are participants: everyone else reaches records through their role. Who
may change a record (``leads.edit``, ``customers.edit``) adds and removes its participants;
who may see it lists them. A free user does neither.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.core import audit
from provisioning.core.errors import Conflict, FieldError, InvalidInput, NotFound
from provisioning.core.models import utcnow
from provisioning.core.pages import decode_cursor, encode_cursor, page_size
from provisioning.core.validation import Form
from provisioning.crm.records import KINDS, Caller, Kind, acting_member
from provisioning.members.models import Identity, Membership, MemberStatus, UserType
from provisioning.notifications.publish import notify

USER_ID = "user_id"
# A participant can be invited (it sees the record once it joins) or active, not disabled.
PARTICIPANT_STATUSES = (MemberStatus.ACTIVE.value, MemberStatus.INVITED.value)


def _kind(name: str) -> Kind:
    kind = KINDS.get(name)
    if kind is None or kind.participants is None:
        raise NotFound(f"No participants on {name}.")
    return kind


def _record_name(session: Session, caller: Caller, kind: Kind, record_id: int, *,
                 lock: bool = False) -> str:
    """The record's name; another account's record is not found. ``lock`` holds it (FOR
    SHARE) so it is not deleted under the participation being added."""
    model = kind.model
    query = select(getattr(model, kind.label)).where(
        model.id == record_id, model.account_id == caller.account_id, *caller.reachable(kind))
    name = session.scalar(query.with_for_update(read=True) if lock else query)
    if name is None:
        raise NotFound(f"No such {kind.noun} in this account.")
    return str(name)


def _free_member(session: Session, account_id: int, value: Any) -> tuple[int, int]:
    """``value`` as a free member of the account who can take part: its id and identity."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput([FieldError(USER_ID, "Give a member's id (a whole number).",
                                       "invalid_type")])
    row = session.execute(
        select(Membership.identity_id, Membership.user_type, Membership.status)
        .where(Membership.id == value, Membership.account_id == account_id)
        .with_for_update(read=True)).first()
    if row is None:
        refusal = (f"There is no member {value} in this account.", "unknown_member")
    elif row.user_type != UserType.FREE.value:
        refusal = ("Only free users are participants; other members see records through "
                   "their role.", "not_free")
    elif row.status not in PARTICIPANT_STATUSES:
        refusal = ("This free user is disabled; activate them first.", "inactive_member")
    else:
        return value, row.identity_id
    raise InvalidInput([FieldError(USER_ID, *refusal)])


def _shaped(row: Any) -> dict[str, Any]:
    member_id, email, name, added_at = row
    return {"user_id": member_id, "email": email, "name": name, "added_at": added_at}


def _columns(kind: Kind) -> tuple[Any, ...]:
    table: Any = kind.participants
    return (table.member_id, Identity.email, Identity.name, table.created_at)


def add_participant(session: Session, actor: Actor, account_id: int, kind_name: str,
                    record_id: int, body: Any) -> dict[str, Any]:
    """``POST …/{kind}/{id}/participants {"user_id"}``: the free user takes part in the
    record, and hears of it."""
    kind = _kind(kind_name)
    caller = acting_member(session, actor, account_id, kind.edit)
    form = Form(body)
    raw = form.body.get(USER_ID)
    if raw is None:
        form.errors.append(FieldError(USER_ID, "Name the free user to add.", "required"))
    form.finish()
    record_name = _record_name(session, caller, kind, record_id, lock=True)
    member_id, identity_id = _free_member(session, account_id, raw)
    table: Any = kind.participants
    taken = session.scalar(select(table.id).where(table.record_id == record_id,
                                                  table.member_id == member_id))
    if taken is not None:
        raise Conflict(f"Member {member_id} already takes part in this {kind.noun}.",
                       code="already_participant",
                       errors=[FieldError(USER_ID, "Already a participant.",
                                          "already_participant")])
    session.execute(insert(table).values(
        account_id=account_id, record_id=record_id, member_id=member_id,
        added_by_id=actor.identity_id, created_at=utcnow()))
    audit.record(session, account_id=account_id, actor_id=actor.identity_id,
                 actor_label=actor.label, action="participant.add", target_type=kind.noun,
                 target_id=record_id, after={USER_ID: member_id})
    notify(session, identity_id, "participant_added", {"record_name": record_name},
           account_id=account_id)
    row = session.execute(select(*_columns(kind))
                          .join(Membership, Membership.id == table.member_id)
                          .join(Identity, Identity.id == Membership.identity_id)
                          .where(table.record_id == record_id,
                                 table.member_id == member_id)).one()
    return _shaped(row)


def remove_participant(session: Session, actor: Actor, account_id: int, kind_name: str,
                       record_id: int, member_id: int) -> None:
    """``DELETE …/{kind}/{id}/participants/{user_id}``: the free user no longer sees the
    record, from its next request on (grants are read at every request)."""
    kind = _kind(kind_name)
    caller = acting_member(session, actor, account_id, kind.edit)
    _record_name(session, caller, kind, record_id)
    table: Any = kind.participants
    gone = session.execute(delete(table).where(table.record_id == record_id,
                                               table.member_id == member_id)
                           .returning(table.id)).first()
    if gone is None:
        raise NotFound(f"Member {member_id} does not take part in this {kind.noun}.")
    audit.record(session, account_id=account_id, actor_id=actor.identity_id,
                 actor_label=actor.label, action="participant.remove", target_type=kind.noun,
                 target_id=record_id, before={USER_ID: member_id})


def list_participants(session: Session, actor: Actor, account_id: int, kind_name: str,
                      record_id: int, cursor: str | None, limit: int | None
                      ) -> tuple[list[dict[str, Any]], str | None]:
    """``GET …/{kind}/{id}/participants``: the free users taking part, first added first, a
    page at a time (keyset on the participation's row)."""
    kind = _kind(kind_name)
    caller = acting_member(session, actor, account_id, kind.view, participant_may=False)
    size = page_size(limit)
    _record_name(session, caller, kind, record_id)
    table: Any = kind.participants
    query = (select(table.id, *_columns(kind))
             .join(Membership, Membership.id == table.member_id)
             .join(Identity, Identity.id == Membership.identity_id)
             .where(table.record_id == record_id))
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(table.id > after)
    rows = session.execute(query.order_by(table.id).limit(size + 1)).all()
    page = rows[:size]
    items = [_shaped(row[1:]) for row in page]
    return items, (encode_cursor(page[-1][0]) if len(rows) > size else None)
