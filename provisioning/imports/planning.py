"""The worker's side: planning an import chunk by chunk in file order, resuming from the
checkpoint.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Session

from provisioning.access.policy import EVERY_PERMISSION, beyond_grant, standing_in
from provisioning.accounts.models import Account, Group, Role
from provisioning.billing.models import Subscription
from provisioning.billing.plans import prorated_charge_cents
from provisioning.billing.seats import seats_in_use
from provisioning.core import audit
from provisioning.core.bulk import among, planned_per_call, prefetched
from provisioning.core.config import settings
from provisioning.core.db import after_commit, session_scope
from provisioning.core.models import utcnow
from provisioning.imports.checks import check_row
from provisioning.imports.deciding import (
    decide_rows,
    held_seats,
    seats_left,
    subscription_for,
)
from provisioning.imports.formats import (
    Catalog,
    FileProblem,
    ImportRow,
    Position,
    RowError,
    SourceRow,
)
from provisioning.imports.models import ImportPart, JobFile
from provisioning.imports.models import ImportRow as StagedRow
from provisioning.imports.options import (
    COUNTER,
    CREATE,
    ERROR,
    PLANNING,
    UNCHANGED,
    UPDATE,
    WRITING,
    ImportOptions,
    empty_summary,
)
from provisioning.imports.parts import (
    planned_all,
    queue_part,
    record_errors,
    stage_rows,
    staged_rows,
    unwritten_parts,
    write_planned_part,
    write_updates,
)
from provisioning.imports.readers import count_rows, read_rows
from provisioning.imports.stored import open_stored_file
from provisioning.jobs.kinds import progress
from provisioning.jobs.models import Job, JobError, JobStatus
from provisioning.jobs.runs import JobFailed
from provisioning.jobs.states import FINISHED, move
from provisioning.members import rules
from provisioning.members.models import Identity


@dataclass
class Plan:
    """What one import needs to know about its account, loaded once per turn."""

    job_id: int
    account_id: int
    account_name: str
    default_language: str
    inviter_id: int | None
    inviter_name: str
    actor_label: str
    options: ImportOptions
    role_ids: dict[str, int]
    group_ids: dict[str, int]
    catalog: Catalog
    snapshot_of: int | None
    media_type: str
    size: int
    admin_role_ids: frozenset[int] = frozenset()  # roles storing "*"
    starter_is_admin: bool = True  # only an admin changes admins (else row error)

    @classmethod
    def load(cls, session: Session, job: Job) -> Plan:
        params = job.params or {}
        account = session.get_one(Account, job.account_id)
        stored = session.execute(select(Role.name, Role.id, Role.permissions)
                                 .where(Role.account_id == account.id)).all()
        roles = {name: role_id for name, role_id, _ in stored}
        starter = (standing_in(session, job.created_by_id, account.id)
                   if job.created_by_id else None)
        ungrantable = frozenset(name for name, _, permissions in stored
                                if starter is not None and beyond_grant(starter, permissions))
        groups = dict(session.execute(select(Group.name, Group.id)
                                      .where(Group.account_id == account.id)).all())
        inviter = session.get(Identity, job.created_by_id) if job.created_by_id else None
        return cls(
            job_id=job.id,
            account_id=account.id,
            account_name=account.name,
            default_language=account.default_language,
            inviter_id=job.created_by_id,
            inviter_name=(inviter.name or inviter.email) if inviter else "",
            actor_label=params.get("actor_label", ""),
            options=ImportOptions(bool(params.get("dry_run")), params.get("on_existing", "skip"),
                                  bool(params.get("invite", True))),
            role_ids=roles,
            group_ids=groups,
            catalog=Catalog(roles={rules.name_key(name): name for name in roles},
                            groups={rules.name_key(name): name for name in groups},
                            seasonal_seats=account.seasonal_seats,
                            ungrantable=ungrantable),
            snapshot_of=params.get("snapshot_of"),
            media_type=params.get("media_type", "text/csv"),
            size=int(params.get("bytes", 0)),
            admin_role_ids=frozenset(role_id for _, role_id, permissions in stored
                                     if EVERY_PERMISSION in (permissions or ())),
            starter_is_admin=starter is None or starter.is_admin,
        )


@dataclass
class Chunk:
    """Rows to apply in one transaction, and the checkpoints before and after them."""

    rows: list[ImportRow]
    errors: list[RowError]
    failed_lines: int  # rows refused by the checks (each counted once)
    start: dict[str, Any]
    end: dict[str, Any]
    fresh: bool  # read from the file (earlier chunks may hold the same email), not a snapshot


def run_import(job_id: int, deadline: float) -> bool:
    """One turn of an import job: plan chunks in file order, then write what is left.

    True when this worker has nothing left to do for the job.
    """
    with session_scope() as session:
        job = session.get_one(Job, job_id)
        plan = Plan.load(session, job)
        checkpoint = dict(job.checkpoint or {})
    if "phase" not in checkpoint:
        checkpoint = _prepare(plan)
    if checkpoint["phase"] == PLANNING:
        for chunk in _chunks(plan, checkpoint):
            if not _apply(plan, chunk):
                return True  # cancelled, or another worker took this chunk and carries on
            if time.monotonic() > deadline:
                return False
        planned_all(plan)
    # Parts no other worker has taken yet: this worker writes them itself.
    for part in unwritten_parts(plan.job_id):
        write_planned_part(plan, part)
        if time.monotonic() > deadline:
            return False
    _finish(plan)
    return True


def write_part(job_id: int, part: int) -> None:
    """The task for one planned part: write its new members; the last part finishes the job."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.status != JobStatus.RUNNING.value:
            return
        plan = Plan.load(session, job)
    if write_planned_part(plan, part):
        _finish(plan)


def _prepare(plan: Plan) -> dict[str, Any]:
    """Before the first chunk: count the rows (limits, progress) or copy the dry run's report."""
    config = settings()
    if plan.snapshot_of is None:
        try:
            with open_stored_file(plan.job_id, plan.size) as stream:
                total = count_rows(stream, plan.media_type, config.import_max_rows)
        except FileProblem as problem:
            raise JobFailed(f"{problem.message} Nothing was imported.") from None
        if total > config.import_max_rows:
            raise JobFailed(f"The file has more than {config.import_max_rows:,} rows; "
                            "split it into smaller files. Nothing was imported.")
        checkpoint: dict[str, Any] = {"phase": PLANNING, "position": None, "seats_planned": 0,
                                      "parts": 0}
        failed = 0
    else:
        checkpoint = {"phase": PLANNING, "after_line": 0, "seats_planned": 0, "parts": 0}
        total = None
    with session_scope() as session:
        job = session.scalars(select(Job).where(Job.id == plan.job_id).with_for_update()).one()
        if "phase" in (job.checkpoint or {}):
            return dict(job.checkpoint)  # another worker prepared it meanwhile
        if plan.snapshot_of is not None:
            failed = _copy_checked_errors(session, plan.snapshot_of, plan.job_id)
            job.summary = {**empty_summary(), "failed": failed}
            job.done = failed
        else:
            job.total = total
        job.checkpoint = checkpoint
        job.heartbeat_at = utcnow()
    return checkpoint


def _copy_checked_errors(session: Session, source: int, target: int) -> int:
    """A commit keeps the dry run's file-level findings; database findings are checked anew."""
    columns = (JobError.line, JobError.column, JobError.code, JobError.message, JobError.value,
               JobError.stage)
    session.execute(insert(JobError).from_select(
        ["job_id", "line", "column", "code", "message", "value", "stage"],
        select(bindparam("target", target), *columns)
        .where(JobError.job_id == source, JobError.stage == "check")))
    return session.scalar(select(func.count(func.distinct(JobError.line)))
                          .where(JobError.job_id == source, JobError.stage == "check")) or 0


def _chunks(plan: Plan, checkpoint: dict[str, Any]) -> Iterator[Chunk]:
    size = settings().import_chunk_rows
    if plan.snapshot_of is not None:
        return _snapshot_chunks(plan, checkpoint, size)
    return prefetched(_file_chunks(plan, checkpoint, size))


def _file_chunks(plan: Plan, checkpoint: dict[str, Any], size: int) -> Iterator[Chunk]:
    position = checkpoint.get("position")
    start = Position(**position) if position else None
    with open_stored_file(plan.job_id, plan.size) as stream:
        batch: list[SourceRow] = []
        marker: dict[str, Any] = {"position": position}
        for row in read_rows(stream, plan.media_type, start):
            batch.append(row)
            if len(batch) >= size:
                chunk = _checked(plan, batch, marker)
                marker = chunk.end
                yield chunk
                batch = []
        if batch:
            yield _checked(plan, batch, marker)


def _checked(plan: Plan, batch: list[SourceRow], start: dict[str, Any]) -> Chunk:
    """Run the row checks (pure, outside any transaction) and de-duplicate within the chunk."""
    rows: list[ImportRow] = []
    errors: list[RowError] = []
    failed = 0
    first_line: dict[str, int] = {}
    for source in batch:
        result = check_row(source, plan.catalog)
        if isinstance(result, list):
            errors.extend(result)
            failed += 1
            continue
        earlier = first_line.get(result.email)
        if earlier is not None:
            errors.append(_duplicate(result, earlier))
            failed += 1
            continue
        first_line[result.email] = result.line
        rows.append(result)
    end = batch[-1].end
    return Chunk(rows=rows, errors=errors, failed_lines=failed, start=start,
                 end={"position": {"offset": end.offset, "line": end.line, "rows": end.rows}},
                 fresh=True)


def _duplicate(row: ImportRow, first: int) -> RowError:
    return RowError(line=row.line, column="email", code="duplicate_in_file",
                    message=f"The same email as line {first}; the first row wins.",
                    value=row.email)


def _snapshot_chunks(plan: Plan, checkpoint: dict[str, Any], size: int) -> Iterator[Chunk]:
    after = int(checkpoint.get("after_line", 0))
    source = plan.snapshot_of
    assert source is not None
    while True:
        with session_scope() as session:
            rows = staged_rows(session, source, StagedRow.line > after, limit=size)
        if not rows:
            return
        yield Chunk(rows=rows, errors=[], failed_lines=0, start={"after_line": after},
                    end={"after_line": rows[-1].line}, fresh=False)
        after = rows[-1].line


def _apply(plan: Plan, chunk: Chunk) -> bool:
    """Plan one chunk and record it with the checkpoint in one transaction.

    Every row gets its outcome here, in file order; updates are written at once
    and the new members become a part that any worker may write. False if the
    job is not ours to go on with (cancelled, or another worker got here first).
    """
    with session_scope() as session:
        # The subscription before the job row: the order every part's writer locks them in.
        subscription = subscription_for(session, plan)
        job = session.scalars(select(Job).where(Job.id == plan.job_id)
                              .with_for_update(key_share=True)).one()
        checkpoint = dict(job.checkpoint or {})
        if job.status != JobStatus.RUNNING.value or not _at(checkpoint, chunk.start):
            return False
        connection = session.connection()
        errors = list(chunk.errors)
        failed = chunk.failed_lines
        rows = chunk.rows
        with planned_per_call(connection):
            if chunk.fresh:
                rows, duplicates = _drop_earlier_duplicates(session, plan.job_id, rows)
                errors += duplicates
                failed += len(duplicates)
            free_seats, refusal = seats_left(
                session, plan, subscription, lambda: held_seats(session, plan, checkpoint))
            decided = decide_rows(session, plan, rows, free_seats, refusal)
        errors += decided.errors
        tally = Counter(decided.outcome.values())
        failed += tally[ERROR]
        counts = {"failed": failed, COUNTER[UPDATE]: tally[UPDATE],
                  COUNTER[UNCHANGED]: tally[UNCHANGED]}
        now = utcnow()
        if plan.options.dry_run:
            counts[COUNTER[CREATE]] = tally[CREATE]
            if plan.options.invite:
                counts["invitations"] = len(decided.creates)
        else:  # new members count once their part is written
            write_updates(session, plan, decided, now)
            if decided.creates:
                parts = int(checkpoint.get("parts", 0))
                queue_part(session, plan, parts, decided)
                checkpoint["parts"] = parts + 1
        record_errors(connection, plan.job_id, errors)
        stage_rows(connection, plan.job_id, rows, decided)
        _add_to_summary(job, counts)
        # Every row of the chunk once: refused by the checks, or decided (errors included);
        # new members count when written.
        job.done = (job.done or 0) + failed - tally[ERROR] + len(rows) - (
            0 if plan.options.dry_run else len(decided.creates))
        job.checkpoint = {**checkpoint, **chunk.end,
                          "seats_planned": int(checkpoint.get("seats_planned", 0))
                          + (decided.seats_planned if plan.options.dry_run else 0)}
        job.heartbeat_at = now
    return True


def _add_to_summary(job: Job, counts: Mapping[str, int]) -> None:
    summary = dict(job.summary or empty_summary())
    for key, count in counts.items():
        summary[key] = summary.get(key, 0) + count
    job.summary = summary


def _at(checkpoint: dict[str, Any], start: dict[str, Any]) -> bool:
    """The job's checkpoint is where this chunk begins (no other worker got here first)."""
    return all(checkpoint.get(key) == value for key, value in start.items())


class SeenEmails:
    """The emails a job has staged so far, as hashes held by this process.

    Looking every row of a chunk up in the staged rows' index costs more than
    checking the rows; the set answers "maybe seen" at once and only the maybes
    are looked up, which also rules out a hash collision and gives the first line.
    It catches up from the database, so chunks another worker planned count too.
    """

    def __init__(self) -> None:
        self.hashes: set[int] = set()
        self.last_line = 0

    def catch_up(self, connection: Connection, job_id: int) -> None:
        for line, email in connection.execute(
                select(StagedRow.line, StagedRow.email)
                .where(StagedRow.job_id == job_id, StagedRow.line > self.last_line)):
            self.hashes.add(hash(email))
            self.last_line = max(self.last_line, line)

    def add(self, rows: Sequence[ImportRow]) -> None:
        """Rows this process staged, once their transaction has committed."""
        self.hashes.update(hash(row.email) for row in rows)
        if rows:
            self.last_line = max(self.last_line, rows[-1].line)


_seen: dict[int, SeenEmails] = {}
SEEN_JOBS = 4  # jobs whose emails a process keeps; an older one is caught up again


def _seen_emails(job_id: int) -> SeenEmails:
    if job_id not in _seen:
        while len(_seen) >= SEEN_JOBS:
            del _seen[next(iter(_seen))]
        _seen[job_id] = SeenEmails()
    return _seen[job_id]


def _drop_earlier_duplicates(
    session: Session, job_id: int, rows: list[ImportRow]
) -> tuple[list[ImportRow], list[RowError]]:
    """Rows whose email an earlier chunk of the same file already had: the first wins."""
    if not rows:
        return rows, []
    connection = session.connection()
    seen = _seen_emails(job_id)
    seen.catch_up(connection, job_id)
    maybe = [row.email for row in rows if hash(row.email) in seen.hashes]
    earlier: dict[str, int] = {}
    if maybe:
        earlier = dict(connection.execute(
            select(StagedRow.email, StagedRow.line).where(
                StagedRow.job_id == job_id, among(connection, StagedRow.email, maybe))).all())
    kept = [row for row in rows if row.email not in earlier]
    after_commit(session, lambda: seen.add(kept))
    return kept, [_duplicate(row, earlier[row.email]) for row in rows if row.email in earlier]


def _finish(plan: Plan) -> None:
    """Mark the job done, write its one audit entry (R14) and drop the uploaded file."""
    with session_scope() as session:
        # Looked at unlocked first: a part written while the planner works does not wait for it.
        job = session.get_one(Job, plan.job_id)
        if job.status in FINISHED or _waiting_for_parts(session, job):
            return
        session.refresh(job, with_for_update=True)
        if job.status in FINISHED or _waiting_for_parts(session, job):
            return
        move(job, JobStatus.SUCCEEDED)
        if plan.options.dry_run:
            job.summary = {**(job.summary or {}), "seats": _seat_impact(session, plan, int(
                (job.checkpoint or {}).get("seats_planned", 0)))}
        done, summary = progress(session, job)
        if job.total is None or job.total < done:
            job.total = done
        session.execute(delete(JobFile).where(JobFile.job_id == plan.job_id))
        audit.record(session, account_id=plan.account_id, actor_id=plan.inviter_id,
                     actor_label=plan.actor_label,
                     action="members.import_dry_run" if plan.options.dry_run
                     else "members.import",
                     target_type="job", target_id=plan.job_id,
                     after={"options": plan.options.as_params(), "total": job.total,
                            "summary": summary})


def _waiting_for_parts(session: Session, job: Job) -> bool:
    """Rows are still being planned, or a planned part is not written yet."""
    if (job.checkpoint or {}).get("phase") != WRITING:
        return True
    return session.scalar(select(ImportPart.part).where(
        ImportPart.job_id == job.id, ImportPart.written_at.is_(None)).limit(1)) is not None


def _seat_impact(session: Session, plan: Plan, new_seats: int) -> dict[str, Any]:
    """What committing the dry run would do to seats and the bill (R8)."""
    subscription = session.scalars(
        select(Subscription).where(Subscription.account_id == plan.account_id)).one()
    in_use = seats_in_use(session, plan.account_id, utcnow().date())
    to_add = max(in_use + new_seats - subscription.seats_purchased, 0)
    return {"in_use": in_use, "new": new_seats, "purchased": subscription.seats_purchased,
            "to_add": to_add, "plan": subscription.plan,
            "prorated_charge_cents": prorated_charge_cents(subscription, to_add, utcnow())}
