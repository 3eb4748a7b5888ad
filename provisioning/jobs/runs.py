"""Jobs: slow work the workers do, in slices, visible to the account's admins.

A job's row is the truth. The broker carries only its id; a worker runs a job
for one slice of time, commits a checkpoint with every chunk, and hands the
rest back to the queue, so one account's million-row import takes turns with
everyone else's work. A job whose worker died is found by its stale heartbeat
and resumed from its last checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import Permission, require
from provisioning.core import audit, dispatch
from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.core.errors import Conflict, FieldError, InvalidInput, NotFound
from provisioning.core.models import utcnow
from provisioning.core.pages import decode_cursor, encode_cursor, page_size
from provisioning.jobs.kinds import KINDS, Progress, progress, progress_of, view_extension
from provisioning.jobs.models import Job, JobError, JobStatus
from provisioning.jobs.reports import csv_report, csv_safe
from provisioning.jobs.states import FINISHED, move

log = logging.getLogger(__name__)

JOB_TASK = "provisioning.run_job"
MAX_FAILURES = 3


class JobFailed(Exception):
    """The job cannot go on; the message tells the admin why in one sentence."""


def enqueue(job_id: int, *, countdown: float | None = None) -> None:
    options = {} if countdown is None else {"countdown": countdown}
    dispatch.send_task(JOB_TASK, job_id, **options)


def list_jobs(session: Session, actor: Actor, account_id: int, kind: str | None,
              status: str | None, cursor: str | None, limit: int | None
              ) -> tuple[list[dict[str, Any]], str | None]:
    """An account's jobs (of one kind, or every kind), newest first, a page at a time;
    ``status`` filters."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    if status is not None and status not in set(JobStatus):
        raise InvalidInput([FieldError(
            "status", f"Use one of {', '.join(JobStatus)}.", "invalid")])
    size = page_size(limit)
    query = select(Job).where(Job.account_id == account_id)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if status is not None:
        query = query.where(Job.status == status)
    before = decode_cursor(cursor)
    if before is not None:
        query = query.where(Job.id < before)
    found = list(session.scalars(query.order_by(Job.id.desc()).limit(size + 1)))
    page = found[:size]
    progress_by_job = progress_of(session, page)
    items = [job_view(session, job, progress_by_job[job.id]) for job in page]
    return items, (encode_cursor(page[-1].id) if len(found) > size else None)


def job_view(session: Session, job: Job, known: Progress | None = None) -> dict[str, Any]:
    """What any job shows (SPEC §10), with what its kind adds."""
    done, summary = known or progress(session, job)
    elapsed = None
    if job.started_at is not None:
        elapsed = ((job.finished_at or utcnow()) - job.started_at).total_seconds()
    view: dict[str, Any] = {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "total": job.total,
        "done": done,
        "summary": summary,
        "error": job.error,
        "errors_url": f"/v1/jobs/{job.id}/errors.csv",
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "elapsed_seconds": None if elapsed is None else round(elapsed, 3),
        "rows_per_second": round(done / elapsed, 1) if elapsed and done else None,
    }
    return {**view, **view_extension(job)}


def visible_job(session: Session, actor: Actor, job_id: int, *, lock: bool = False) -> Job:
    """The job, if ``actor`` administers its account; anyone else is told it does not exist."""
    query = select(Job).where(Job.id == job_id)
    job = session.scalars(query.with_for_update() if lock else query).first()
    if job is None:
        raise NotFound("No such job.")
    try:
        require(session, actor, job.account_id, Permission.USERS_MANAGE)
    except NotFound:
        raise NotFound("No such job.") from None
    return job


def get_job(session: Session, actor: Actor, job_id: int) -> dict[str, Any]:
    return job_view(session, visible_job(session, actor, job_id))


def cancel_job(session: Session, actor: Actor, job_id: int) -> dict[str, Any]:
    """Stop a job at its next chunk: what is already written stays, nothing is half-written."""
    job = visible_job(session, actor, job_id, lock=True)
    if job.status in FINISHED:
        raise Conflict(f"This job already {job.status}.", code="job_finished")
    move(job, JobStatus.CANCELLED)
    view = job_view(session, job)
    audit.record(session, account_id=job.account_id, actor_id=actor.identity_id,
                 actor_label=actor.label, action="job.cancel", target_type="job",
                 target_id=job.id, after={"done": view["done"], "total": job.total})
    return view


ERROR_REPORT_COLUMNS = ("line", "column", "code", "message", "value")


def error_report(session: Session, actor: Actor, job_id: int) -> Iterator[bytes]:
    """The job's problems as CSV, in file order; formula-looking values are neutralised."""
    visible_job(session, actor, job_id)
    query = (
        select(JobError.line, JobError.column, JobError.code, JobError.message, JobError.value)
        .where(JobError.job_id == job_id)
        .order_by(JobError.line, JobError.id)
    )
    return csv_report(ERROR_REPORT_COLUMNS, query, lambda row: (
        row[0], row[1], row[2], csv_safe(row[3]), csv_safe(row[4] or "")))


def run_job(job_id: int) -> None:
    """Give one job one turn (a slice of time); hand it back to the queue if it is not done."""
    config = settings()
    with session_scope() as session:
        job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
        if job is None or job.status in FINISHED:
            return
        if job.status == JobStatus.QUEUED.value:
            move(job, JobStatus.RUNNING)
        job.heartbeat_at = utcnow()
        kind = KINDS[job.kind]
    try:
        finished = kind.run(job_id, time.monotonic() + config.job_slice_seconds)
    except JobFailed as exc:
        fail(job_id, str(exc))
        return
    except Exception:
        log.exception("job %s stopped on an unexpected error", job_id)
        _count_failure(job_id)
        return
    if not finished:
        enqueue(job_id)


def fail(job_id: int, reason: str) -> None:
    with session_scope() as session:
        job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one()
        if job.status in FINISHED:
            return
        move(job, JobStatus.FAILED)
        job.error = reason
        done, summary = progress(session, job)
        audit.record(session, account_id=job.account_id, actor_id=job.created_by_id,
                     actor_label=(job.params or {}).get("actor_label", ""),
                     action=f"{job.kind}.failed", target_type="job", target_id=job.id,
                     after={"error": reason, "done": done, "summary": summary})


def _count_failure(job_id: int) -> None:
    """Retry a job that met an unexpected error a few times, then give up saying so."""
    with session_scope() as session:
        job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one()
        failures = int((job.checkpoint or {}).get("failures", 0)) + 1
        job.checkpoint = {**(job.checkpoint or {}), "failures": failures}
        done = job.done
    if failures >= MAX_FAILURES:
        fail(job_id, f"An internal error stopped this job {failures} times after {done} rows; "
                     "what was written so far stays. Contact support with the job id.")
    else:
        enqueue(job_id, countdown=2.0 ** failures)


def stalled_ids(session: Session) -> list[int]:
    """Jobs whose broker message was lost or whose worker died: queued or running, silent."""
    config = settings()
    silent_since = utcnow() - timedelta(seconds=config.job_lease_seconds)
    return list(session.scalars(
        select(Job.id).where(or_(
            and_(Job.status == JobStatus.QUEUED.value, Job.created_at < silent_since,
                 Job.heartbeat_at.is_(None)),
            and_(Job.status.in_((JobStatus.QUEUED.value, JobStatus.RUNNING.value)),
                 Job.heartbeat_at < silent_since),
        )).order_by(Job.id).limit(1000)
    ).all())


def sweep() -> int:
    """Resume stalled jobs from their last checkpoint."""
    with session_scope() as session:
        ids = stalled_ids(session)
        for job_id in ids:  # a fresh heartbeat, so the next sweep does not send it again
            session.get_one(Job, job_id).heartbeat_at = utcnow()
    for job_id in ids:
        enqueue(job_id)
    return len(ids)


def purge(session: Session) -> int:
    """Forget jobs (with what their kinds keep, and error reports) after the retention period."""
    cutoff = utcnow() - timedelta(days=settings().job_retention_days)
    expired = select(Job.id).where(Job.status.in_(FINISHED), Job.finished_at < cutoff)
    for kind in KINDS.values():
        if kind.forget is not None:
            kind.forget(session, expired)
    result = session.execute(delete(Job).where(Job.id.in_(expired)))
    return int(getattr(result, "rowcount", 0) or 0)
