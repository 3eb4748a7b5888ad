"""The API's side of an import: the upload stored in parts, committing a dry run, the row report."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from sqlalchemy import (
    insert,
    select,
)
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import Permission, require
from provisioning.core.config import Settings, settings
from provisioning.core.db import after_commit
from provisioning.core.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    UnsupportedMediaType,
)
from provisioning.core.models import utcnow
from provisioning.imports.formats import (
    MEDIA_TYPES,
    FileProblem,
)
from provisioning.imports.kind import IMPORT
from provisioning.imports.models import ImportRow as StagedRow
from provisioning.imports.models import JobFile
from provisioning.imports.normaliser import Normaliser
from provisioning.imports.options import KIND, PART_SIZE, READ_SIZE, empty_summary
from provisioning.jobs.models import Job, JobStatus
from provisioning.jobs.reports import csv_report, csv_safe
from provisioning.jobs.runs import (
    enqueue,
    job_view,
    visible_job,
)
from provisioning.jobs.states import SUCCEEDED

if TYPE_CHECKING:
    from provisioning.imports.options import ImportOptions


def import_members(
    session: Session, actor: Actor, account_id: int, upload: BinaryIO, media_type: str | None,
    options: ImportOptions, *, length: int | None = None,
) -> dict[str, Any]:
    """Take an uploaded file and queue its import; answers at once with the job."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    _refuse_past_the_hourly_limit(session, account_id, settings())
    media = MEDIA_TYPES.get((media_type or "text/csv").split(";")[0].strip().lower())
    if media is None:
        raise UnsupportedMediaType(
            f"Send CSV (text/csv), a JSON array (application/json) or NDJSON "
            f"(application/x-ndjson), not {media_type}.",
            errors=[FieldError("file", "Unsupported file type.", "unsupported_media_type")])
    config = settings()
    if length is not None and length > config.import_max_bytes:
        raise _too_large(config)
    # The upload is read with no transaction open: a slow client never holds a lock.
    session.commit()
    with tempfile.TemporaryFile(dir=_spool_dir(config)) as spool:
        size = _spool(upload, media, spool, config, length)
        spool.seek(0)
        job = Job(account_id=account_id, kind=KIND, status=JobStatus.QUEUED.value,
                  params={**options.as_params(), "media_type": media, "bytes": size,
                          "actor_label": actor.label},
                  summary=empty_summary(), checkpoint={}, created_by_id=actor.identity_id)
        session.add(job)
        session.flush()
        part = 0
        while data := spool.read(PART_SIZE):
            session.execute(insert(JobFile), [{"job_id": job.id, "part": part, "data": data}])
            part += 1
    job_id = job.id
    after_commit(session, lambda: enqueue(job_id))
    return job_view(session, job)


def _refuse_past_the_hourly_limit(session: Session, account_id: int, config: Settings) -> None:
    """At most ``imports_per_hour`` imports (dry runs and commits alike) per account: a dry
    run answers which addresses hold seats elsewhere (R2), so that question is rationed."""
    since = utcnow() - timedelta(hours=1)
    recent = session.scalars(
        select(Job.created_at).where(Job.account_id == account_id, Job.kind == KIND,
                                     Job.created_at > since)
        .order_by(Job.created_at.desc()).limit(config.imports_per_hour)).all()
    if len(recent) >= config.imports_per_hour:
        wait = max(1, math.ceil((recent[-1] + timedelta(hours=1) - utcnow()).total_seconds()))
        raise RateLimited(f"This account has started {config.imports_per_hour} imports in the "
                          f"last hour, the most allowed. Try again in {wait} seconds.",
                          retry_after=wait)


def _spool_dir(config: Settings) -> str:
    folder = config.var_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def _too_large(config: Settings) -> PayloadTooLarge:
    limit = config.import_max_bytes / (1024 * 1024)
    return PayloadTooLarge(f"The file is larger than {limit:g} MB; split it into smaller files.",
                           errors=[FieldError("file", f"At most {limit:g} MB.", "too_large")])


def _spool(upload: BinaryIO, media: str, spool: IO[bytes], config: Settings,
           length: int | None) -> int:
    """Normalise the upload into ``spool``; file-level problems refuse it before any write."""
    normaliser = Normaliser(media, config.import_max_bytes)
    try:
        while data := _read(upload):
            spool.write(normaliser.feed(data))
        if length is not None and normaliser.bytes_in < length:
            # The client went away mid-upload: half a file must not become half the members.
            raise _cut_off(normaliser.bytes_in, length)
        spool.write(normaliser.finish())
    except FileProblem as problem:
        if problem.code == "too_large":
            raise _too_large(config) from None
        raise InvalidInput([FieldError("file", problem.message, problem.code)],
                           detail=problem.message) from None
    return normaliser.bytes_out


def _read(upload: BinaryIO) -> bytes:
    try:
        return upload.read(READ_SIZE)
    except OSError:  # the connection dropped while the file was coming in
        raise _cut_off(None, None) from None


def _cut_off(received: int | None, length: int | None) -> InvalidInput:
    said = (f" ({received:,} of {length:,} bytes arrived)" if received is not None
            and length is not None else "")
    message = f"The upload was cut off{said}; nothing was imported. Send the file again."
    return InvalidInput([FieldError("file", message, "incomplete_upload")], detail=message)


def visible_import(session: Session, actor: Actor, account_id: int, job_id: int, *,
                   lock: bool = False) -> Job:
    """The account's import, if ``actor`` administers it; any other job does not exist here."""
    try:
        job = visible_job(session, actor, job_id, lock=lock)
    except NotFound:
        raise NotFound("No such import.") from None
    if job.account_id != account_id or job.kind != IMPORT.name:
        raise NotFound("No such import.")
    return job


def get_import(session: Session, actor: Actor, account_id: int, job_id: int) -> dict[str, Any]:
    return job_view(session, visible_import(session, actor, account_id, job_id))


def commit_import(session: Session, actor: Actor, account_id: int,
                  job_id: int) -> dict[str, Any]:
    """Apply a finished dry run's checked rows as they are: a new job, no new upload."""
    dry_run = visible_import(session, actor, account_id, job_id, lock=True)
    params = dict(dry_run.params or {})
    if not params.get("dry_run"):
        raise Conflict("Only a dry run can be committed.", code="not_a_dry_run")
    if params.get("committed_as"):
        raise Conflict(f"This dry run was already committed as job {params['committed_as']}.",
                       code="already_committed")
    if dry_run.status != SUCCEEDED.value:
        raise Conflict(f"The dry run has not succeeded (it is {dry_run.status}).",
                       code="dry_run_not_finished")
    job = Job(account_id=dry_run.account_id, kind=KIND, status=JobStatus.QUEUED.value,
              params={**params, "dry_run": False, "snapshot_of": dry_run.id,
                      "actor_label": actor.label},
              summary=empty_summary(), checkpoint={}, total=dry_run.total,
              created_by_id=actor.identity_id)
    session.add(job)
    session.flush()
    dry_run.params = {**params, "committed_as": job.id}
    job_id_ = job.id
    after_commit(session, lambda: enqueue(job_id_))
    return job_view(session, job)


ROW_REPORT_COLUMNS = ("line", "email", "outcome")


def row_report(session: Session, actor: Actor, account_id: int,
               job_id: int) -> Iterator[bytes]:
    """Each checked row and what happened to it (or, for a dry run, what would)."""
    visible_import(session, actor, account_id, job_id)
    query = (select(StagedRow.line, StagedRow.email, StagedRow.outcome)
             .where(StagedRow.job_id == job_id).order_by(StagedRow.line))
    return csv_report(ROW_REPORT_COLUMNS, query,
                      lambda row: (row[0], csv_safe(row[1]), row[2] or ""))
