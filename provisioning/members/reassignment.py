"""Reassignment as a job (R6): one member's leads, contacts, customers and tasks move to their
targets, and for a removal the member goes once nothing points at them.

Records move in set-based chunks, one transaction each: the chunk's id range, the
target checked (and held FOR SHARE, so it cannot be disabled or removed under the
chunk), the rows moved and the job's progress and checkpoint commit together. A worker
killed mid-chunk leaves the chunk untouched; the next turn starts where the checkpoint
says, and a record already moved no longer points at the member, so nothing moves twice.
The last transaction locks the member, moves whatever was given to them meanwhile, and
for a removal deletes the membership: no record points at a removed member, ever.
Importing this module registers the kind with ``jobs``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.orm import Session

from provisioning.accounts.models import Account
from provisioning.core import audit
from provisioning.core.config import settings
from provisioning.core.db import after_commit, session_scope
from provisioning.core.models import utcnow
from provisioning.jobs.kinds import JobKind, register
from provisioning.jobs.models import Job, JobStatus
from provisioning.jobs.runs import JobFailed, enqueue
from provisioning.jobs.states import SUCCEEDED, move
from provisioning.mail import outbox
from provisioning.members.acting import Acting
from provisioning.members.models import (
    Identity,
    Invitation,
    Membership,
    MemberStatus,
    Reassignment,
    UserType,
)
from provisioning.members.targets import RECORD_KINDS, RECORD_TABLES, owned_records

KIND = "reassignment"
EMAIL_TEMPLATE = "records_reassigned"
STOPPED, MOVED, ALL_MOVED = "stopped", "moved", "all_moved"


def empty_counts() -> dict[str, int]:
    return {kind: 0 for kind in RECORD_KINDS}


@dataclass(frozen=True)
class Plan:
    """What one reassignment moves, loaded once per turn."""

    job_id: int
    account_id: int
    member_id: int
    member_name: str
    removes: bool
    targets: dict[str, int]
    owned: dict[str, int]
    actor_id: int | None
    actor_label: str
    actor_name: str

    @classmethod
    def load(cls, session: Session, job: Job) -> Plan:
        row = session.get_one(Reassignment, job.id)
        params = job.params or {}
        targets = {kind: target for kind in RECORD_KINDS
                   if (target := getattr(row, f"{kind}_to")) is not None}
        return cls(job.id, job.account_id, row.member_id, str(params.get("member_name", "")),
                   row.removes, targets, dict(params.get("owned") or empty_counts()),
                   job.created_by_id, str(params.get("actor_label", "")),
                   str(params.get("actor_name", "")))


def pending_reassignment(session: Session, member_id: int) -> int | None:
    """The job still moving this member's records (queued or running), if any."""
    return session.scalar(
        select(Job.id).join(Reassignment, Reassignment.job_id == Job.id)
        .where(Reassignment.member_id == member_id,
               Job.status.in_((JobStatus.QUEUED.value, JobStatus.RUNNING.value)))
        .limit(1))


def queue_reassignment(session: Session, acting: Acting, member: Membership,
                       targets: Mapping[str, int], owned: Mapping[str, int], *,
                       removes: bool) -> int:
    """A job moving ``member``'s records to ``targets`` (and removing them after, with
    ``removes``); a worker takes it once the transaction commits."""
    identity = member.identity
    job = Job(account_id=member.account_id, kind=KIND, status=JobStatus.QUEUED.value,
              total=sum(owned.values()), done=0, summary=empty_counts(), checkpoint={},
              params={"member_id": member.id, "member_name": identity.name or identity.email,
                      "removes": removes, "targets": dict(targets), "owned": dict(owned),
                      "actor_label": acting.label, "actor_name": acting.name},
              created_by_id=acting.identity_id)
    session.add(job)
    session.flush()
    session.add(Reassignment(job_id=job.id, account_id=member.account_id, member_id=member.id,
                             removes=removes, **{f"{kind}_to": targets.get(kind)
                                                 for kind in RECORD_KINDS}))
    job_id = job.id
    after_commit(session, lambda: enqueue(job_id))
    return job_id


def run_reassignment(job_id: int, deadline: float) -> bool:
    """One turn: chunks until every kind is moved or the slice is over, then the end."""
    with session_scope() as session:
        plan = Plan.load(session, session.get_one(Job, job_id))
    size = settings().reassign_chunk_rows
    while True:
        step = _move_chunk(plan, size)
        if step == STOPPED:
            return True
        if step == ALL_MOVED:
            break
        if time.monotonic() > deadline:
            return False
    _finish(plan)
    return True


def _running(session: Session, job_id: int) -> Job | None:
    """The job, locked for this transaction, if it is still running (not cancelled)."""
    job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
    return job if job is not None and job.status == JobStatus.RUNNING.value else None


def _move_chunk(plan: Plan, size: int) -> str:
    """Move the next chunk of the current kind, with the job's progress, in one transaction."""
    with session_scope() as session:
        job = _running(session, plan.job_id)
        if job is None:
            return STOPPED
        checkpoint = dict(job.checkpoint or {})
        index, after = int(checkpoint.get("kind", 0)), int(checkpoint.get("after", 0))
        if index >= len(RECORD_KINDS):
            return ALL_MOVED
        kind = RECORD_KINDS[index]
        moved, boundary = 0, None
        target = plan.targets.get(kind)
        if target is not None:
            hold_target(session, plan, job, kind, target)
            moved, boundary = move_records(session.connection(), kind, plan.member_id,
                                           target, after, size, utcnow())
        _count(job, kind, moved)
        job.checkpoint = {**checkpoint, "kind": index + (boundary is None),
                          "after": boundary or 0}
    return MOVED


def move_records(connection: Connection, kind: str, source: int, target: int, after: int,
                 size: int | None, now: datetime) -> tuple[int, int | None]:
    """Move ``source``'s records of ``kind`` with ids above ``after`` to ``target``: the next
    ``size`` of them (an id range, read on the (responsible, id) index), or all (None).
    Returns how many moved and the range's last id (None: none of the kind are left past
    it)."""
    table = RECORD_TABLES[kind]
    mine = [table.c.responsible_id == source, table.c.id > after]
    boundary = None if size is None else connection.scalar(
        select(table.c.id).where(*mine).order_by(table.c.id).offset(size - 1).limit(1))
    if boundary is not None:
        mine.append(table.c.id <= boundary)
    moved = connection.execute(
        update(table).where(*mine).values(responsible_id=target, updated_at=now))
    return int(getattr(moved, "rowcount", 0) or 0), boundary


def hold_target(session: Session, plan: Plan, job: Job, kind: str, target: int) -> None:
    """The target may still receive records: held FOR SHARE until the chunk commits, so a
    disable or removal of it waits; one that came first fails the job, saying so."""
    row = session.execute(
        select(Membership.status, Membership.user_type)
        .where(Membership.id == target, Membership.account_id == plan.account_id)
        .with_for_update(read=True)).first()
    if row is not None and row.status == MemberStatus.ACTIVE.value \
            and row.user_type != UserType.FREE.value:
        return
    became = ("removed" if row is None else "disabled" if row.status != MemberStatus.ACTIVE.value
              else "made a free user")
    left = max((job.total or 0) - (job.done or 0), 0)
    raise JobFailed(
        f"Member {target}, chosen to receive the {kind}, was {became} while the records "
        f"moved: {job.done or 0} records had moved and the other {left} still belong to "
        f"member {plan.member_id}; choose another member and start again.")


def _count(job: Job, kind: str, moved: int) -> None:
    summary = {**empty_counts(), **(job.summary or {})}
    summary[kind] += moved
    job.summary = summary
    job.done = (job.done or 0) + moved
    job.heartbeat_at = utcnow()


def _finish(plan: Plan) -> None:
    """The last transaction: the member locked (nobody gives them a record meanwhile), what
    was given to them while the job ran moved too, the member deleted for a removal, the
    job done, its audit entry written and each target told what they received."""
    with session_scope() as session:
        job = _running(session, plan.job_id)
        if job is None:
            return
        member = session.scalar(select(Membership.id).where(Membership.id == plan.member_id)
                                .with_for_update())
        if member is not None:
            _move_stragglers(session, plan, job)
            if plan.removes:
                delete_membership(session, member)
        move(job, SUCCEEDED)
        job.total = max(job.total or 0, job.done or 0)
        received = {**empty_counts(), **(job.summary or {})}
        audit.record(session, account_id=plan.account_id, actor_id=plan.actor_id,
                     actor_label=plan.actor_label, action="records.reassign",
                     target_type="member", target_id=plan.member_id,
                     before={"owned": plan.owned},
                     after={"moved": {kind: {"to": plan.targets[kind], "count": received[kind]}
                                      for kind in RECORD_KINDS if kind in plan.targets},
                            "removed": plan.removes and member is not None, "job": job.id})
        notify_targets(session, plan, received)


def _move_stragglers(session: Session, plan: Plan, job: Job) -> None:
    """Records given to the member while the job ran, moved in this last transaction."""
    connection = session.connection()
    for kind, count in owned_records(connection, plan.member_id).items():
        if not count:
            continue
        target = plan.targets.get(kind)
        if target is None:
            if plan.removes:
                raise JobFailed(
                    f"Member {plan.member_id} was given {count} {kind} while the job ran and "
                    f"no member was chosen to receive {kind}; they stay disabled with them. "
                    f"Remove them again choosing who receives the {kind}.")
            continue
        hold_target(session, plan, job, kind, target)
        moved, _ = move_records(connection, kind, plan.member_id, target, 0, None, utcnow())
        _count(job, kind, moved)


def delete_membership(session: Session, member_id: int) -> None:
    """The membership goes (its identity, audit entries, notes and messages stay); a pending
    invitation's link dies with it."""
    session.execute(update(Invitation)
                    .where(Invitation.membership_id == member_id,
                           Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))
    session.execute(delete(Membership).where(Membership.id == member_id))


def notify_targets(session: Session, plan: Plan, received: Mapping[str, int]) -> None:
    """One email to each member who received records, with the counts of each kind."""
    by_target: dict[int, dict[str, int]] = {}
    for kind, target in plan.targets.items():
        if received.get(kind):
            by_target.setdefault(target, empty_counts())[kind] += received[kind]
    if not by_target:
        return
    account = session.get_one(Account, plan.account_id)
    config = settings()
    for target, counts in sorted(by_target.items()):
        row = session.execute(
            select(Identity.email, Identity.name, Membership.language)
            .join(Membership, Membership.identity_id == Identity.id)
            .where(Membership.id == target)).first()
        if row is None:
            continue
        outbox.queue_email(
            session, account_id=plan.account_id, recipient=row.email,
            recipient_name=row.name or None, template=EMAIL_TEMPLATE,
            language=row.language,
            context={"recipient_name": row.name or "", "former_owner_name": plan.member_name,
                     "actor_name": plan.actor_name, "account_name": account.name,
                     "product_name": config.product_name, "app_url": config.public_url,
                     **counts})


def reassignment_view(job: Job) -> dict[str, Any]:
    """What a reassignment adds to the job: whose records, to whom, and whether they go."""
    params = job.params or {}
    return {"member_id": params.get("member_id"), "removes": bool(params.get("removes")),
            "targets": dict(params.get("targets") or {})}


REASSIGNMENT = register(JobKind(name=KIND, run=run_reassignment, view=reassignment_view))
