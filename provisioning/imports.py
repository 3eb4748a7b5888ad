"""Bulk import (SPEC §6): a file of people becomes members, one chunk per transaction.

The upload is normalised to UTF-8 as it streams in and stored in the database
in parts, so any worker on any machine can read it. A worker then reads it a
chunk at a time; each chunk is checked, de-duplicated (first row wins), planned
against the database (R2 one paid membership per email, R7/R8 seats in file
order) and written set-based together with the job's checkpoint, in one
transaction. A worker killed at any point resumes from the last checkpoint: no
row is lost and none is written twice.

A dry run plans every row the same way and writes nothing but its report and
the checked rows; committing it applies that snapshot without a new upload.
"""

from __future__ import annotations

import io
import os
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any, BinaryIO, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioning import audit, dispatch, outbox
from provisioning.auth import Actor, require_admin
from provisioning.bulk import among, insert_new, insert_rows, planned_per_call, prefetched
from provisioning.config import Settings, settings
from provisioning.db import after_commit, engine, session_scope
from provisioning.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    PayloadTooLarge,
    SeatLimitReached,
    UnsupportedMediaType,
)
from provisioning.importfile import (
    MEDIA_TYPES,
    Catalog,
    FileProblem,
    ImportRow,
    Normaliser,
    Position,
    RowError,
    SourceRow,
    check_row,
    count_rows,
    csv_safe,
    read_rows,
)
from provisioning.jobs import (
    FINISHED,
    RUNNERS,
    JobFailed,
    csv_report,
    enqueue,
    job_view,
    progress,
)
from provisioning.jobs import visible_job as _visible_job
from provisioning.mail.message import make_message_id
from provisioning.members import FREE_USERS_GROUP
from provisioning.models import (
    Account,
    EmailStatus,
    Group,
    Identity,
    ImportPart,
    Invitation,
    Job,
    JobError,
    JobFile,
    JobStatus,
    Membership,
    MemberStatus,
    OutboxEmail,
    Role,
    Subscription,
    UserType,
    utcnow,
)
from provisioning.models import ImportRow as StagedRow
from provisioning.plans import plan_named, prorated_charge_cents
from provisioning.seats import consumes_seat, seats_in_use, settle_seats
from provisioning.security import hash_secret, invitation_token, new_secret

KIND = "import"
PART_TASK = "provisioning.write_import_part"
PLANNING, WRITING = "rows", "writing"  # the checkpoint's phases after the counting pass
PART_SIZE = 1 << 20  # bytes of the stored file per database row
READ_SIZE = 1 << 16
ON_EXISTING = ("skip", "update")
DEFAULT_ROLE = "member"

# Per-row outcomes (the dry run's report) and the summary counter each one feeds.
CREATE, UPDATE, UNCHANGED, ERROR = "create", "update", "unchanged", "error"
COUNTER = {CREATE: "created", UPDATE: "updated", UNCHANGED: "skipped", ERROR: "failed"}


@dataclass(frozen=True)
class ImportOptions:
    dry_run: bool = False
    on_existing: str = "skip"
    invite: bool = True

    @classmethod
    def parse(cls, params: Mapping[str, str | None]) -> ImportOptions:
        """Query parameters as given; every problem names its parameter."""
        errors: list[FieldError] = []

        def flag(name: str, default: bool) -> bool:
            raw = (params.get(name) or "").strip().lower()
            if not raw:
                return default
            if raw in ("true", "1", "yes", "on"):
                return True
            if raw in ("false", "0", "no", "off"):
                return False
            errors.append(FieldError(name, "Use true or false.", "invalid"))
            return default

        dry_run = flag("dry_run", False)
        invite = flag("invite", True)
        on_existing = (params.get("on_existing") or "skip").strip().lower()
        if on_existing not in ON_EXISTING:
            errors.append(FieldError("on_existing", "Use skip or update.", "invalid"))
        if errors:
            raise InvalidInput(errors)
        return cls(dry_run=dry_run, on_existing=on_existing, invite=invite)

    def as_params(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "on_existing": self.on_existing, "invite": self.invite}


def empty_summary() -> dict[str, int]:
    return {"created": 0, "updated": 0, "skipped": 0, "failed": 0, "invitations": 0,
            "seats_added": 0}


# --- The API's side: upload, commit a dry run, reports -------------------------------


def import_members(
    session: Session, actor: Actor, account_id: int, upload: BinaryIO, media_type: str | None,
    options: ImportOptions, *, length: int | None = None,
) -> dict[str, Any]:
    """Take an uploaded file and queue its import; answers at once with the job."""
    require_admin(session, actor, account_id)
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


def commit_import(session: Session, actor: Actor, job_id: int) -> dict[str, Any]:
    """Apply a finished dry run's checked rows as they are: a new job, no new upload."""
    dry_run = _visible_job(session, actor, job_id, lock=True)
    params = dict(dry_run.params or {})
    if dry_run.kind != KIND or not params.get("dry_run"):
        raise Conflict("Only a dry run can be committed.", code="not_a_dry_run")
    if params.get("committed_as"):
        raise Conflict(f"This dry run was already committed as job {params['committed_as']}.",
                       code="already_committed")
    if dry_run.status != JobStatus.SUCCEEDED.value:
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


def row_report(session: Session, actor: Actor, job_id: int) -> Iterator[bytes]:
    """Each checked row and what happened to it (or, for a dry run, what would)."""
    _visible_job(session, actor, job_id)
    query = (select(StagedRow.line, StagedRow.email, StagedRow.outcome)
             .where(StagedRow.job_id == job_id).order_by(StagedRow.line))
    return csv_report(ROW_REPORT_COLUMNS, query,
                      lambda row: (row[0], csv_safe(row[1]), row[2] or ""))


# --- The worker's side ---------------------------------------------------------------


class StoredFile(io.RawIOBase):
    """The uploaded file, read back part by part from the database (seekable)."""

    def __init__(self, job_id: int, size: int) -> None:
        self.job_id = job_id
        self.size = size
        self.offset = 0
        self._part_index = -1
        self._part = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.offset, io.SEEK_END: self.size}[whence]
        self.offset = max(0, base + offset)
        return self.offset

    def tell(self) -> int:
        return self.offset

    def readinto(self, buffer: Any) -> int:
        if self.offset >= self.size:
            return 0
        index, start = divmod(self.offset, PART_SIZE)
        if index != self._part_index:
            with engine().connect() as connection:
                self._part = connection.scalar(
                    select(JobFile.data).where(JobFile.job_id == self.job_id,
                                               JobFile.part == index)) or b""
            self._part_index = index
        piece = self._part[start:start + len(buffer)]
        buffer[:len(piece)] = piece
        self.offset += len(piece)
        return len(piece)


def open_stored_file(job_id: int, size: int) -> io.BufferedReader:
    return io.BufferedReader(StoredFile(job_id, size), buffer_size=READ_SIZE)


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

    @classmethod
    def load(cls, session: Session, job: Job) -> Plan:
        params = job.params or {}
        account = session.get_one(Account, job.account_id)
        roles = dict(session.execute(select(Role.name, Role.id)
                                     .where(Role.account_id == account.id)).all())
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
            catalog=Catalog(roles={name.lower(): name for name in roles},
                            groups={name.lower(): name for name in groups},
                            seasonal_seats=account.seasonal_seats > 0,
                            free_group=FREE_USERS_GROUP),
            snapshot_of=params.get("snapshot_of"),
            media_type=params.get("media_type", "text/csv"),
            size=int(params.get("bytes", 0)),
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
        _planned_all(plan)
    # Parts no other worker has taken yet: this worker writes them itself.
    for part in _unwritten_parts(plan.job_id):
        _write_part(plan, part)
        if time.monotonic() > deadline:
            return False
    _finish(plan)
    return True


RUNNERS[KIND] = run_import


def write_part(job_id: int, part: int) -> None:
    """The task for one planned part: write its new members; the last part finishes the job."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.status != JobStatus.RUNNING.value:
            return
        plan = Plan.load(session, job)
    if _write_part(plan, part):
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
            rows = _staged_rows(session, source, StagedRow.line > after, limit=size)
        if not rows:
            return
        yield Chunk(rows=rows, errors=[], failed_lines=0, start={"after_line": after},
                    end={"after_line": rows[-1].line}, fresh=False)
        after = rows[-1].line


@dataclass
class Outcomes:
    """The decision for every row of one chunk."""

    creates: list[ImportRow] = field(default_factory=list)
    # row, identity id, member id, role id, group id, what changes
    updates: list[tuple[ImportRow, int, int, int, int | None, dict[str, Any]]] = field(
        default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    outcome: dict[int, str] = field(default_factory=dict)  # line -> outcome
    identities: dict[str, tuple[int, bool]] = field(default_factory=dict)  # email -> id, login
    seats_planned: int = 0


def _apply(plan: Plan, chunk: Chunk) -> bool:
    """Plan one chunk and record it with the checkpoint in one transaction.

    Every row gets its outcome here, in file order; updates are written at once
    and the new members become a part that any worker may write. False if the
    job is not ours to go on with (cancelled, or another worker got here first).
    """
    with session_scope() as session:
        # The subscription before the job row: the order every part's writer locks them in.
        subscription = _subscription(session, plan)
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
            free_seats, refusal = _free_seats(
                session, plan, subscription, lambda: _held_seats(session, plan, checkpoint))
            decided = _decide(session, plan, rows, free_seats, refusal)
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
            _write_updates(session, decided, now)
            if decided.creates:
                parts = int(checkpoint.get("parts", 0))
                _queue_part(session, plan, parts, decided)
                checkpoint["parts"] = parts + 1
        _record_errors(connection, plan.job_id, errors)
        _stage(connection, plan.job_id, rows, decided)
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


def _record_errors(connection: Connection, job_id: int, errors: Sequence[RowError]) -> None:
    insert_rows(connection, JobError,
                ("job_id", "line", "column", "code", "message", "value", "stage"),
                ((job_id, e.line, e.column, e.code, e.message, e.value,
                  "apply" if e.code in APPLY_CODES else "check") for e in errors))


def _queue_part(session: Session, plan: Plan, part: int, decided: Outcomes) -> None:
    """The chunk's new members, to be written by the first worker free (after commit)."""
    lines = [row.line for row in decided.creates]
    session.add(ImportPart(job_id=plan.job_id, part=part, first_line=min(lines),
                           last_line=max(lines), rows=len(lines), seats=decided.seats_planned))
    job_id = plan.job_id
    after_commit(session, lambda: dispatch.send_task(PART_TASK, job_id, part))


def _planned_all(plan: Plan) -> None:
    """Every row has its outcome: from now on the job waits only for its parts."""
    with session_scope() as session:
        job = session.scalars(select(Job).where(Job.id == plan.job_id).with_for_update()).one()
        if job.status == JobStatus.RUNNING.value:
            job.checkpoint = {**(job.checkpoint or {}), "phase": WRITING}
            job.heartbeat_at = utcnow()


def _unwritten_parts(job_id: int) -> list[int]:
    with session_scope() as session:
        return list(session.scalars(
            select(ImportPart.part).where(ImportPart.job_id == job_id,
                                          ImportPart.written_at.is_(None))
            .order_by(ImportPart.part)).all())


def _write_part(plan: Plan, part_no: int, *, careful: bool = False) -> bool:
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
                free_seats, refusal = _free_seats(
                    session, plan, _subscription(session, plan),
                    lambda: _held_seats(session, plan, {}) - part.seats)
            with planned_per_call(session.connection()):
                decided = _decide(session, plan, rows, free_seats, refusal,
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
        return _write_part(plan, part_no, careful=True)
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
    return _staged_rows(session, job_id, *in_part), known


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
    _record_errors(session.connection(), job_id, decided.errors)


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


APPLY_CODES = frozenset({"email_taken", "no_seat"})


def _decide(session: Session, plan: Plan, rows: Sequence[ImportRow], free_seats: int | None,
            refusal: str, *, known: Mapping[str, int] | None = None) -> Outcomes:
    """Each row's outcome against the database: R2, R7/R8 in file order, skip or update.

    ``free_seats`` is how many new seat holders may still come in (None: no limit).
    ``known``: look at only these identities (email -> id) and take every other row
    for a new person; inserting one that exists after all fails on the unique email.
    """
    decided = Outcomes()
    if not rows:
        return decided
    connection = session.connection()
    looked_up = select(Identity.id, Identity.email, Identity.name,
                       Identity.password_hash.is_not(None))
    if known is None:
        looked_up = looked_up.where(among(connection, Identity.email,
                                          [row.email for row in rows]))
    else:
        looked_up = looked_up.where(among(connection, Identity.id, list(known.values())))
    identities = {email: (identity_id, name, has_login) for identity_id, email, name, has_login
                  in (connection.execute(looked_up) if known is None or known else ())}
    ids = [value[0] for value in identities.values()]
    members: dict[int, tuple[int, int, int | None]] = {}
    paid_elsewhere: set[int] = set()
    if ids:
        members = {identity_id: (member_id, role_id, group_id)
                   for member_id, identity_id, role_id, group_id in connection.execute(
                       select(Membership.id, Membership.identity_id, Membership.role_id,
                              Membership.group_id)
                       .where(Membership.account_id == plan.account_id,
                              among(connection, Membership.identity_id, ids)))}
        paid_elsewhere = set(connection.scalars(
            select(Membership.identity_id).where(
                among(connection, Membership.identity_id, ids),
                Membership.account_id != plan.account_id,
                Membership.user_type != UserType.FREE.value)).all())
    today = utcnow().date()
    for row in rows:
        identity = identities.get(row.email)
        if identity is not None and identity[0] in members:
            _decide_existing(plan, decided, row, identity[0], identity[1], members[identity[0]])
            continue
        if (identity is not None and row.user_type != UserType.FREE.value
                and identity[0] in paid_elsewhere):
            decided.errors.append(RowError(
                row.line, "email", "email_taken",
                "This email already belongs to a user of another account.", row.email))
            decided.outcome[row.line] = ERROR
            continue
        if consumes_seat(row.user_type, MemberStatus.INVITED.value, row.seasonal_start,
                         row.seasonal_end, today):
            if free_seats is not None and decided.seats_planned >= free_seats:
                decided.errors.append(RowError(row.line, "row", "no_seat", refusal, None))
                decided.outcome[row.line] = ERROR
                continue
            decided.seats_planned += 1
        if identity is not None:
            decided.identities[row.email] = (identity[0], identity[2])
        decided.creates.append(row)
        decided.outcome[row.line] = CREATE
    return decided


def _decide_existing(plan: Plan, decided: Outcomes, row: ImportRow, identity_id: int,
                     name: str, member: tuple[int, int, int | None]) -> None:
    member_id, role_id, group_id = member
    changes: dict[str, Any] = {}
    if plan.options.on_existing == "update":
        if row.name and row.name != name:
            changes["name"] = row.name
        if row.role and plan.role_ids[row.role] != role_id:
            changes["role_id"] = plan.role_ids[row.role]
        if row.group and plan.group_ids[row.group] != group_id:
            changes["group_id"] = plan.group_ids[row.group]
    if changes:
        decided.updates.append((row, identity_id, member_id, role_id, group_id, changes))
        decided.outcome[row.line] = UPDATE
    else:
        decided.outcome[row.line] = UNCHANGED


def _subscription(session: Session, plan: Plan) -> Subscription:
    """The account's subscription, locked when its seats have a cap (not in a dry run).

    Under a cap, invites racing this chunk wait for it; without one, parts being
    written (which buy seats) go on beside the planner.
    """
    subscription = session.scalars(
        select(Subscription).where(Subscription.account_id == plan.account_id)).one()
    if not plan.options.dry_run and _seat_cap(subscription)[0] is not None:
        session.refresh(subscription, with_for_update=True)
    return subscription


def _seat_cap(subscription: Subscription) -> tuple[int | None, str]:
    """The most seats the account may hold (None: a paid plan buys more), and the refusal."""
    catalog_plan = plan_named(subscription.plan)
    if catalog_plan.is_trial:
        purchased = subscription.seats_purchased
        return purchased, (f"No seat left: all {purchased} seats of the trial are taken. "
                           "Choose a paid plan to add more users.")
    cap = subscription.max_seats if subscription.max_seats is not None \
        else catalog_plan.max_seats
    return cap, f"No seat left: the plan allows at most {cap} seats and all are taken."


def _held_seats(session: Session, plan: Plan, checkpoint: dict[str, Any]) -> int:
    """Seats planned but not yet taken: a dry run's own count, or the account's unwritten parts."""
    if plan.options.dry_run:
        return int(checkpoint.get("seats_planned", 0))
    return session.scalar(
        select(func.coalesce(func.sum(ImportPart.seats), 0))
        .join(Job, Job.id == ImportPart.job_id)
        .where(Job.account_id == plan.account_id, Job.status == JobStatus.RUNNING.value,
               ImportPart.written_at.is_(None))) or 0


def _free_seats(session: Session, plan: Plan, subscription: Subscription,
                held: Callable[[], int]) -> tuple[int | None, str]:
    """Seats new members may still take (None: no limit, a paid plan buys more), and why not."""
    cap, refusal = _seat_cap(subscription)
    if cap is None:
        return None, ""
    in_use = seats_in_use(session, plan.account_id, utcnow().date())
    return max(cap - in_use - held(), 0), refusal


def _write_updates(session: Session, decided: Outcomes, now: datetime) -> None:
    """Names, roles and groups of existing members (on_existing=update), set-based."""
    # ORM bulk UPDATE by primary key: one executemany per table
    names = [{"id": identity_id, "name": changes["name"], "updated_at": now}
             for _, identity_id, _, _, _, changes in decided.updates if "name" in changes]
    if names:
        session.execute(update(Identity), names)
    places = [{"id": member_id, "role_id": changes.get("role_id", role_id),
               "group_id": changes.get("group_id", group_id)}
              for _, _, member_id, role_id, group_id, changes in decided.updates
              if "role_id" in changes or "group_id" in changes]
    if places:
        session.execute(update(Membership), places)


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
                row.seasonal_start, row.seasonal_end, plan.inviter_id, now)
               for row in decided.creates]
    member_columns = ("account_id", "identity_id", "role_id", "group_id", "user_type", "status",
                      "language", "seasonal_start", "seasonal_end", "invited_by_id",
                      "created_at")
    if not plan.options.invite:
        insert_rows(connection, Membership, member_columns, members)
        return 0  # members wait as "not sent"; resending an invitation sends the first
    member_ids = insert_new(connection, Membership, member_columns, members)
    return _write_invitations(session, plan, decided, member_ids, now)


def _write_invitations(session: Session, plan: Plan, decided: Outcomes,
                       member_ids: list[int], now: datetime) -> int:
    """One invitation and one outbox email per new member (in ``decided.creates`` order)."""
    config = settings()
    connection = session.connection()
    expires = now + timedelta(days=config.invitation_ttl_days)
    nonces = [new_secret() for _ in decided.creates]
    email_ids = insert_new(
        connection, OutboxEmail,
        ("account_id", "recipient", "recipient_name", "template", "language", "context",
         "message_id", "status", "attempts", "next_attempt_at", "created_at"),
        [(plan.account_id, row.email, row.name,
          "invite_existing" if decided.identities[row.email][1] else "invite_new",
          row.language or plan.default_language,
          {"account_name": plan.account_name, "inviter_name": plan.inviter_name,
           "invitee_name": row.name, "email": row.email, "expires_at": expires.isoformat(),
           outbox.INVITATION_NONCE: nonce},
          make_message_id(new_secret()[:24], config.mail_domain), EmailStatus.QUEUED.value, 0,
          now, now)
         for row, nonce in zip(decided.creates, nonces, strict=True)])
    outbox.wake_after_commit(session)
    insert_rows(connection, Invitation,
                ("account_id", "membership_id", "email", "token_nonce", "token_hash",
                 "invited_by_id", "existing_identity", "expires_at", "sends", "last_sent_at",
                 "resends_in_window", "last_email_id", "created_at"),
                ((plan.account_id, member_id, row.email, nonce,
                  hash_secret(invitation_token(config.secret_key, nonce)),
                  plan.inviter_id, decided.identities[row.email][1], expires, 1, now, 0,
                  email_id, now)
                 for row, member_id, nonce, email_id
                 in zip(decided.creates, member_ids, nonces, email_ids, strict=True)))
    return len(email_ids)


def _stage(connection: Connection, job_id: int, rows: Sequence[ImportRow],
           decided: Outcomes) -> None:
    identities = decided.identities  # new members' existing identities
    insert_rows(connection, StagedRow, ("job_id", *STAGED_FIELDS, "outcome", "identity_id"),
                ((job_id, row.line, row.email, row.name, row.role, row.group, row.user_type,
                  row.language, row.phone, row.seasonal_start, row.seasonal_end,
                  decided.outcome.get(row.line), identities.get(row.email, (None,))[0])
                 for row in rows))


STAGED_FIELDS = ("line", "email", "name", "role", "group", "user_type", "language", "phone",
                 "seasonal_start", "seasonal_end")


def _staged_rows(session: Session, job_id: int, *criteria: ColumnElement[bool],
                 limit: int | None = None) -> list[ImportRow]:
    """Staged rows back as checked rows, in file order (plain tuples: no ORM object per row)."""
    columns = [getattr(StagedRow, name) for name in STAGED_FIELDS]
    query = (select(*columns).where(StagedRow.job_id == job_id, *criteria)
             .order_by(StagedRow.line).limit(limit))
    return [ImportRow(*values) for values in session.connection().execute(query)]


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
        job.status = JobStatus.SUCCEEDED.value
        job.finished_at = utcnow()
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
