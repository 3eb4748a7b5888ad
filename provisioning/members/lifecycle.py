"""A member's life after joining (R5-R7, R14): disable, activate and remove, each with the
reassignment of the member's records (R6) when it is asked for or needed.

Each action is one function on a locked membership (``disable``, ``activate``, ``remove``)
that the API's single action and every member of a bulk action call alike; the API's
functions (``disable_member`` …) check the policy (R1) and answer with the member, and
with the job when records are to move.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor, end_sessions
from provisioning.access.policy import refuse_changing_admin
from provisioning.billing import seats
from provisioning.billing.seats import HOLDING_STATUSES, SeatCount, consumes_seat, take_seat
from provisioning.core import audit
from provisioning.core.errors import Conflict, FieldError, NotFound, SeatLimitReached
from provisioning.core.models import utcnow
from provisioning.jobs.models import Job
from provisioning.jobs.runs import job_view
from provisioning.members.acting import Acting
from provisioning.members.directory import MemberView, read_member
from provisioning.members.models import InactiveReason, Invitation, Membership, MemberStatus
from provisioning.members.reassignment import (
    delete_membership,
    pending_reassignment,
    queue_reassignment,
)
from provisioning.members.seasons import season_today, status_on_joining
from provisioning.members.targets import (
    TargetRequest,
    check_targets,
    owned_records,
    reassign_required,
    refuse_losing_last_admin,
)


@dataclass(frozen=True)
class Done:
    """What an action did to one member: the member (None once removed) and the job that
    moves its records, if one was queued."""

    member_id: int
    job_id: int | None = None


@dataclass(frozen=True)
class Answer:
    """An action's answer to the API: the member as it is now, and the queued job."""

    member: MemberView
    job: dict[str, Any] | None = None


def locked_member(session: Session, account_id: int, member_id: int) -> Membership:
    """The account's member, locked until the transaction ends (two actions on one member
    go one after the other)."""
    member = session.scalars(
        select(Membership).where(Membership.id == member_id,
                                 Membership.account_id == account_id)
        .with_for_update(of=Membership)  # the member's row, not its role's or group's
        .execution_options(populate_existing=True)).first()
    if member is None:
        raise NotFound("No such member in this account.")
    return member


def snapshot(member: Membership) -> dict[str, Any]:
    """A member as its audit entries show it, before and after."""
    return {"email": member.identity.email, "status": member.status,
            "role": member.role.name, "group": member.group.name if member.group else None,
            "user_type": member.user_type}


def refuse_while_moving(session: Session, member_id: int) -> None:
    """One reassignment of a member at a time, and no change of status under it."""
    job_id = pending_reassignment(session, member_id)
    if job_id is not None:
        raise Conflict(f"Job {job_id} is moving this member's records; wait for it to finish "
                       f"or cancel it.", code="reassignment_running",
                       errors=[FieldError("user_id", f"Job {job_id} is running.",
                                          "reassignment_running")])


def disable(session: Session, acting: Acting, member_id: int, request: TargetRequest) -> Done:
    """R5: the member turns inactive at once, their sessions stop working in the account
    at the next request, their seat is freed (R7); with targets, a job moves their records."""
    member = locked_member(session, acting.account.id, member_id)
    refuse_changing_admin(acting.standing, member.role.permissions)
    if member.status == MemberStatus.INVITED.value:
        raise Conflict("This member has not joined yet: revoke the invitation instead.",
                       code="not_joined")
    targets = check_targets(session, member.account_id, member.id, request) if request else {}
    refuse_while_moving(session, member.id)
    # An inactive seasonal member waiting for the season is disabled too: only an admin
    # brings a disabled member back, never the schedule.
    if (member.status == MemberStatus.ACTIVE.value
            or member.inactive_reason == InactiveReason.SEASON.value):
        refuse_losing_last_admin(session, member)
        before = snapshot(member)
        _leave(session, member)
        audit.record(session, account_id=member.account_id, actor_id=acting.identity_id,
                     actor_label=acting.label, action="member.disable", target_type="member",
                     target_id=member.id, before=before, after=snapshot(member))
    job_id = None
    if targets:
        owned = owned_records(session.connection(), member.id)
        if any(owned.values()):
            job_id = queue_reassignment(session, acting, member, targets, owned, removes=False)
    return Done(member.id, job_id)


def _leave(session: Session, member: Membership) -> None:
    """Out of the account's working members: inactive, seat freed, sessions ended."""
    seats.free_seat(session, member.account_id, user_type=member.user_type,
                    status=member.status)
    member.status = MemberStatus.INACTIVE.value
    member.inactive_reason = InactiveReason.DISABLED.value
    session.flush()
    end_sessions(session, member.identity_id, member.account_id)


def activate(session: Session, acting: Acting, member_id: int) -> Done:
    """R5: an inactive member works again, after the seat check of R7/R8 (402
    ``seat_limit`` says why not). Sessions a disable ended stay dead: they log in again."""
    member = locked_member(session, acting.account.id, member_id)
    refuse_changing_admin(acting.standing, member.role.permissions)
    if (member.status == MemberStatus.ACTIVE.value
            or member.inactive_reason == InactiveReason.SEASON.value):
        return Done(member.id)  # working, or waiting for its season: nothing to undo
    if member.status == MemberStatus.INVITED.value:
        raise Conflict("This member has not joined yet: they become active by accepting "
                       "their invitation.", code="not_joined")
    refuse_while_moving(session, member.id)
    before = snapshot(member)
    # a seasonal member outside the window waits for it, inactive, holding no seat (R10)
    member.status, member.inactive_reason = status_on_joining(
        member.user_type, member.seasonal_start, member.seasonal_end)
    session.flush()
    today = season_today()
    if consumes_seat(member.user_type, member.status, member.seasonal_start,
                     member.seasonal_end, today):
        purchased, full_taken = session.connection().execute(seats.COUNT_SEAT, {
            "seat_account_id": member.account_id,
            "seat_change": seats.seat_change(member.user_type)}).one()
        try:
            take_seat(session, member.account_id, today, SeatCount(purchased, full_taken),
                      actor_id=acting.identity_id, actor_label=acting.label)
        except SeatLimitReached as refused:
            raise SeatLimitReached(
                f"{member.identity.email} cannot be activated: {refused.detail}",
                code="seat_limit", errors=refused.errors) from None
    audit.record(session, account_id=member.account_id, actor_id=acting.identity_id,
                 actor_label=acting.label, action="member.activate", target_type="member",
                 target_id=member.id, before=before, after=snapshot(member))
    return Done(member.id)


def remove(session: Session, acting: Acting, member_id: int, request: TargetRequest) -> Done:
    """R5/R6: the membership goes (the identity, audit entries, notes and messages stay)
    and its seat is freed. A member who owns records needs a target for every kind they own
    (409 ``reassign_required``); then they are disabled at once and a job moves the records
    and deletes the membership in its last transaction."""
    member = locked_member(session, acting.account.id, member_id)
    refuse_changing_admin(acting.standing, member.role.permissions)
    targets = check_targets(session, member.account_id, member.id, request) if request else {}
    refuse_while_moving(session, member.id)
    owned = owned_records(session.connection(), member.id)
    refused = reassign_required(member.identity.email, owned, targets)
    if refused is not None:
        raise refused
    refuse_losing_last_admin(session, member)
    before = snapshot(member)
    _revoke_invitation(session, member.id)
    if member.status in HOLDING_STATUSES:
        _leave(session, member)
    else:
        end_sessions(session, member.identity_id, member.account_id)
    if not any(owned.values()):
        delete_membership(session, member.id)
        _record_removal(session, acting, member.id, before, None)
        return Done(member.id)
    job_id = queue_reassignment(session, acting, member, targets, owned, removes=True)
    _record_removal(session, acting, member.id, before,
                    {"status": member.status, "job": job_id, "targets": targets})
    return Done(member.id, job_id)


def _revoke_invitation(session: Session, member_id: int) -> None:
    """A member on the way out can no longer join through a pending invitation."""
    session.execute(update(Invitation)
                    .where(Invitation.membership_id == member_id,
                           Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))


def _record_removal(session: Session, acting: Acting, member_id: int, before: dict[str, Any],
                    after: dict[str, Any] | None) -> None:
    audit.record(session, account_id=acting.account.id, actor_id=acting.identity_id,
                 actor_label=acting.label, action="member.remove", target_type="member",
                 target_id=member_id, before=before, after=after)


def _answer(session: Session, account_id: int, done: Done) -> Answer:
    view = read_member(session, account_id, done.member_id)
    if done.job_id is None:
        return Answer(view)
    return Answer(view, _job(session, done.job_id))


def _job(session: Session, job_id: int) -> dict[str, Any]:
    return job_view(session, session.get_one(Job, job_id))


def disable_member(session: Session, actor: Actor, account_id: int, member_id: int,
                   body: Any) -> Answer:
    """``POST …/users/{u}/disable {"reassign_to"?, "reassign_leads_to"? …}``."""
    acting = Acting.of(session, actor, account_id)
    request = TargetRequest.parse(body)
    return _answer(session, account_id, disable(session, acting, member_id, request))


def activate_member(session: Session, actor: Actor, account_id: int, member_id: int) -> Answer:
    """``POST …/users/{u}/activate``."""
    acting = Acting.of(session, actor, account_id)
    return _answer(session, account_id, activate(session, acting, member_id))


def remove_member(session: Session, actor: Actor, account_id: int, member_id: int,
                  request: TargetRequest) -> Answer:
    """``DELETE …/users/{u}?reassign_to=`` …: the member as they were, once removed; as
    they are (inactive) while the job moves their records."""
    acting = Acting.of(session, actor, account_id)
    before = read_member(session, account_id, member_id)
    done = remove(session, acting, member_id, request)
    if done.job_id is None:
        return Answer(before)
    return _answer(session, account_id, done)


def member_records(session: Session, actor: Actor, account_id: int,
                   member_id: int) -> dict[str, int]:
    """``GET …/users/{u}/records``: what the member owns, the reassignment's preview."""
    Acting.of(session, actor, account_id)
    read_member(session, account_id, member_id)  # 404 for another account's member
    return owned_records(session.connection(), member_id)
