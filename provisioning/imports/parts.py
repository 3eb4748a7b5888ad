"""Writing a planned part: identities, members, invitations and emails in one transaction, by
whichever worker takes it.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    bindparam,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioning.billing.seats import settle_seats
from provisioning.core import audit, dispatch
from provisioning.core.bulk import insert_new, insert_rows, planned_per_call
from provisioning.core.db import after_commit, session_scope
from provisioning.core.errors import (
    SeatLimitReached,
)
from provisioning.core.models import utcnow
from provisioning.imports.deciding import (
    decide_rows,
    held_seats,
    seats_left,
    subscription_for,
)
from provisioning.imports.formats import (
    ImportRow,
    RowError,
)
from provisioning.imports.models import ImportPart
from provisioning.imports.models import ImportRow as StagedRow
from provisioning.imports.options import (
    CREATE,
    ERROR,
    PART_TASK,
    UNCHANGED,
    UPDATE,
    WRITING,
)
from provisioning.jobs.models import Job, JobError, JobStatus
from provisioning.mail import outbox
from provisioning.members.invitation_builder import Addressee, Inviter, new_invitations
from provisioning.members.models import Identity, Invitation, Membership, MemberStatus, UserType
from provisioning.members.rules import DEFAULT_ROLE, FREE_USERS_GROUP
from provisioning.members.search import refresh_search_keys, search_keys

if TYPE_CHECKING:
    from provisioning.imports.deciding import Outcomes
    from provisioning.imports.planning import Plan


def queue_part(session: Session, plan: Plan, part: int, decided: Outcomes) -> None:
    """The chunk's new members, to be written by the first worker free (after commit)."""
    lines = [row.line for row in decided.creates]
    session.add(ImportPart(job_id=plan.job_id, part=part, first_line=min(lines),
                           last_line=max(lines), rows=len(lines), seats=decided.seats_planned))
    job_id = plan.job_id
    after_commit(session, lambda: dispatch.send_task(PART_TASK, job_id, part))


def planned_all(plan: Plan) -> None:
    """Every row has its outcome: from now on the job waits only for its parts."""
    with session_scope() as session:
        job = session.scalars(select(Job).where(Job.id == plan.job_id).with_for_update()).one()
        if job.status == JobStatus.RUNNING.value:
            job.checkpoint = {**(job.checkpoint or {}), "phase": WRITING}
            job.heartbeat_at = utcnow()


def unwritten_parts(job_id: int) -> list[int]:
    with session_scope() as session:
        return list(session.scalars(
            select(ImportPart.part).where(ImportPart.job_id == job_id,
                                          ImportPart.written_at.is_(None))
            .order_by(ImportPart.part)).all())


def write_planned_part(plan: Plan, part_no: int, *, careful: bool = False) -> bool:
    """Write one part's new members, invitations and emails with the job's progress.

    Rows whose person had an identity at planning are checked again; a new person
    someone created meanwhile makes the insert fail on the unique email, and a seat
    taken meanwhile on a trial makes the seat count refuse. Then the whole part is
    decided again, ``careful``: every row and seat against the database, in file
    order. A row that lost such a race is skipped or reported, never written twice.
    False if the part was not ours to write: written already, being written by
    another worker, or the job stopped.
    """
    try:
        with session_scope() as session:
            part = session.scalars(
                select(ImportPart).where(ImportPart.job_id == plan.job_id,
                                         ImportPart.part == part_no)
                .with_for_update(skip_locked=True)).first()
            if part is None or part.written_at is not None:
                return False
            rows, known = _part_rows(session, plan.job_id, part)
            free_seats, refusal = None, ""
            if careful:
                free_seats, refusal = seats_left(
                    session, plan, subscription_for(session, plan),
                    lambda: held_seats(session, plan, {}) - part.seats)
            with planned_per_call(session.connection()):
                decided = decide_rows(session, plan, rows, free_seats, refusal,
                                  known=None if careful else known)
            now = utcnow()
            invitations = _write_creates(session, plan, decided, now)
            added = 0
            if decided.seats_planned:
                added = settle_seats(session, plan.account_id, now.date(),
                                     actor_id=plan.inviter_id, actor_label=plan.actor_label)
            _restage(session, plan.job_id, decided)
            # FOR KEY SHARE: the planner's chunk (FOR NO KEY UPDATE) goes on beside this part;
            # a cancel (FOR UPDATE) waits for it, or comes first and the part is not written.
            job = session.scalars(select(Job).where(Job.id == plan.job_id)
                                  .with_for_update(read=True, key_share=True)).one()
            if job.status != JobStatus.RUNNING.value:
                session.rollback()  # cancelled meanwhile: the part stays unwritten, whole
                return False
            tally = Counter(decided.outcome.values())
            part.counts = {"created": tally[CREATE], "skipped": tally[UPDATE] + tally[UNCHANGED],
                           "failed": tally[ERROR], "invitations": invitations,
                           "seats_added": added}
            part.written_at = now
            part.written_by = f"{socket.gethostname()}:{os.getpid()}"[:100]
    except (SeatLimitReached, IntegrityError):
        if careful:
            raise
        return write_planned_part(plan, part_no, careful=True)
    return True


def _part_rows(session: Session, job_id: int, part: ImportPart
               ) -> tuple[list[ImportRow], dict[str, int]]:
    """The part's new members in file order, and the identities the plan found for them."""
    in_part = (StagedRow.line.between(part.first_line, part.last_line),
               StagedRow.outcome == CREATE)
    known = {email: identity_id for email, identity_id in session.connection().execute(
        select(StagedRow.email, StagedRow.identity_id).where(
            StagedRow.job_id == job_id, StagedRow.identity_id.is_not(None), *in_part))
        if identity_id is not None}
    return staged_rows(session, job_id, *in_part), known


def _restage(session: Session, job_id: int, decided: Outcomes) -> None:
    """Rows that lost a race since the plan: their outcome and error, as they are now."""
    changed = [{"job": job_id, "row_line": line, "now": ERROR if outcome == ERROR else UNCHANGED}
               for line, outcome in decided.outcome.items() if outcome != CREATE]
    if changed:
        staged = cast(Table, StagedRow.__table__)
        session.connection().execute(
            update(staged).where(staged.c.job_id == bindparam("job"),
                                 staged.c.line == bindparam("row_line"))
            .values(outcome=bindparam("now")), changed)
    record_errors(session.connection(), job_id, decided.errors)


def write_updates(session: Session, plan: Plan, decided: Outcomes, now: datetime) -> None:
    """Names, roles and groups of existing members (on_existing=update), set-based, and an
    audit entry for each member changed (R14), with what it was and what it is."""
    # ORM bulk UPDATE by primary key: one executemany per table
    names = [{"id": identity_id, "name": changes["name"], "updated_at": now}
             for _, identity_id, _, _, _, changes in decided.updates if "name" in changes]
    if names:
        session.execute(update(Identity), names)
        refresh_search_keys(session.connection(), identity_ids=[n["id"] for n in names])
    places = [{"id": member_id, "role_id": changes.get("role_id", role_id),
               "group_id": changes.get("group_id", group_id)}
              for _, _, member_id, role_id, group_id, changes in decided.updates
              if "role_id" in changes or "group_id" in changes]
    if places:
        session.execute(update(Membership), places)
    if decided.updates:
        session.connection().execute(audit.INSERT, [
            _member_update_entry(plan, row, member_id, role_id, group_id, changes)
            for row, _, member_id, role_id, group_id, changes in decided.updates])


def _member_update_entry(plan: Plan, row: ImportRow, member_id: int, role_id: int,
                         group_id: int | None, changes: dict[str, Any]) -> dict[str, Any]:
    roles = {key: name for name, key in plan.role_ids.items()}
    groups = {key: name for name, key in plan.group_ids.items()}
    before: dict[str, Any] = {"email": row.email}
    after: dict[str, Any] = {"email": row.email}
    if "name" in changes:
        before["name"], after["name"] = changes["name_before"], changes["name"]
    if "role_id" in changes:
        before["role"], after["role"] = roles.get(role_id), roles.get(changes["role_id"])
    if "group_id" in changes:
        before["group"] = groups.get(group_id) if group_id is not None else None
        after["group"] = groups.get(changes["group_id"])
    return audit.entry(account_id=plan.account_id, actor_id=plan.inviter_id,
                       actor_label=plan.actor_label, action="member.update",
                       target_type="member", target_id=member_id, before=before, after=after)


def _write_creates(session: Session, plan: Plan, decided: Outcomes, now: datetime) -> int:
    """Identities, memberships, invitations and their emails for new members, set-based."""
    if not decided.creates:
        return 0
    connection = session.connection()
    fresh = [row for row in decided.creates if row.email not in decided.identities]
    identity_ids = insert_new(
        connection, Identity,
        ("email", "name", "language", "phone", "totp_enabled", "created_at", "updated_at"),
        [(row.email, row.name or "", row.language, row.phone, False, now, now) for row in fresh])
    for row, identity_id in zip(fresh, identity_ids, strict=True):
        decided.identities[row.email] = (identity_id, False)
    free_group = plan.group_ids.get(FREE_USERS_GROUP)
    members = [(plan.account_id, decided.identities[row.email][0],
                plan.role_ids[row.role or DEFAULT_ROLE],
                free_group if row.user_type == UserType.FREE.value
                else (plan.group_ids[row.group] if row.group else None),
                row.user_type, MemberStatus.INVITED.value, row.language or plan.default_language,
                row.seasonal_start, row.seasonal_end, plan.inviter_id, now,
                # a new identity's name is the file's; an existing one's is refreshed below
                *search_keys(row.name or "", row.email).values())
               for row in decided.creates]
    member_columns = ("account_id", "identity_id", "role_id", "group_id", "user_type", "status",
                      "language", "seasonal_start", "seasonal_end", "invited_by_id",
                      "created_at", "search_name", "search_surname", "search_email")
    fresh_emails = {row.email for row in fresh}
    existing = [decided.identities[row.email][0] for row in decided.creates
                if row.email not in fresh_emails]
    if not plan.options.invite:
        insert_rows(connection, Membership, member_columns, members)
        refresh_search_keys(connection, identity_ids=existing)
        return 0  # members wait as "not sent"; resending an invitation sends the first
    member_ids = insert_new(connection, Membership, member_columns, members)
    sent = _write_invitations(session, plan, decided, member_ids, now)
    refresh_search_keys(connection, identity_ids=existing)
    return sent


def _write_invitations(session: Session, plan: Plan, decided: Outcomes,
                       member_ids: list[int], now: datetime) -> int:
    """One invitation and one outbox email per new member (in ``decided.creates`` order),
    made by the invite's own builder and written set-based (COPY on PostgreSQL)."""
    made = new_invitations(
        Inviter(plan.account_id, plan.account_name, plan.inviter_name),
        (Addressee(row.email, row.name, row.language or plan.default_language,
                   decided.identities[row.email][1]) for row in decided.creates), now)
    email_ids = outbox.queue_emails(session, [invitation.email for invitation in made])
    insert_rows(session.connection(), Invitation,
                ("account_id", "membership_id", "email", "token_nonce", "token_hash",
                 "invited_by_id", "existing_identity", "expires_at", "sends", "last_sent_at",
                 "resends_in_window", "last_email_id", "created_at", "name"),
                ((plan.account_id, member_id, row.email, invitation.token_nonce,
                  invitation.token_hash, plan.inviter_id, decided.identities[row.email][1],
                  invitation.expires_at, 1, now, 0, email_id, now, row.name)
                 for row, member_id, invitation, email_id
                 in zip(decided.creates, member_ids, made, email_ids, strict=True)))
    return len(email_ids)


def stage_rows(connection: Connection, job_id: int, rows: Sequence[ImportRow],
           decided: Outcomes) -> None:
    identities = decided.identities  # new members' existing identities
    insert_rows(connection, StagedRow, ("job_id", *STAGED_FIELDS, "outcome", "identity_id"),
                ((job_id, row.line, row.email, row.name, row.role, row.group, row.user_type,
                  row.language, row.phone, row.seasonal_start, row.seasonal_end,
                  decided.outcome.get(row.line), identities.get(row.email, (None,))[0])
                 for row in rows))


STAGED_FIELDS = ("line", "email", "name", "role", "group", "user_type", "language", "phone",
                 "seasonal_start", "seasonal_end")


def staged_rows(session: Session, job_id: int, *criteria: ColumnElement[bool],
                 limit: int | None = None) -> list[ImportRow]:
    """Staged rows back as checked rows, in file order (plain tuples: no ORM object per row)."""
    columns = [getattr(StagedRow, name) for name in STAGED_FIELDS]
    query = (select(*columns).where(StagedRow.job_id == job_id, *criteria)
             .order_by(StagedRow.line).limit(limit))
    return [ImportRow(*values) for values in session.connection().execute(query)]


def record_errors(connection: Connection, job_id: int, errors: Sequence[RowError]) -> None:
    insert_rows(connection, JobError,
                ("job_id", "line", "column", "code", "message", "value", "stage"),
                ((job_id, e.line, e.column, e.code, e.message, e.value,
                  e.stage) for e in errors))
