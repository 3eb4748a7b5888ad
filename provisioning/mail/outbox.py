"""The one way an email leaves: a row in the outbox, claimed and sent by the worker.

Each row is claimed before it is sent, so a task that runs twice (redelivery,
sweeper, retry) never sends a row twice; the only window left is a worker
killed after the server accepted a message and before its group of outcomes
was marked, and then the resend carries the same Message-ID.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypedDict, Unpack, cast

from sqlalchemy import (
    Row,
    Select,
    Table,
    and_,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from provisioning.core import dispatch
from provisioning.core.bulk import insert_new
from provisioning.core.config import Settings, settings
from provisioning.core.db import after_commit, delete_in_chunks, prefixed_values, session_scope
from provisioning.core.models import utcnow
from provisioning.mail.message import make_message_id
from provisioning.mail.models import EmailStatus, OutboxEmail

log = logging.getLogger(__name__)
SEND_TASK = "provisioning.send_emails"


def wake_sender() -> None:
    """Wake a send task: one wake-up per window however many emails are queued (the task
    claims whatever is due); the window is read when mail is first queued, not at import."""
    dispatch.debounced(SEND_TASK, settings().outbox_dispatch_window_seconds)()


def queue_email(session: Session, **fields: Unpack[Email]) -> int:
    """Add an email to the outbox and return its id; it goes to a worker once the
    transaction commits. One Core insert: it rides on the invite path, the busiest."""
    email_id: int = session.connection().execute(QUEUE_EMAIL, new_email(**fields)).scalar_one()
    wake_after_commit(session)
    return email_id


def queue_emails(session: Session, emails: Sequence[Email]) -> list[int]:
    """Add many emails to the outbox in one statement (COPY on PostgreSQL) and return their
    ids in order; they go to workers once the transaction commits."""
    email_ids = insert_new(session.connection(), OutboxEmail, EMAIL_COLUMNS, email_rows(emails))
    wake_after_commit(session)
    return email_ids


class Email(TypedDict):
    """An email to queue: who it goes to, and its template with the language and context
    to render it in (a context's ``links.DERIVED_LINKS`` are made when it is sent)."""

    account_id: int | None
    recipient: str
    recipient_name: str | None
    template: str
    language: str
    context: dict[str, Any]


def new_email(**fields: Unpack[Email]) -> dict[str, Any]:
    """A queued email as ``QUEUE_EMAIL``'s parameters: ``email_rows``' row, by name."""
    return dict(zip(_EMAIL_PARAMETERS, email_rows((fields,))[0], strict=True))


def email_rows(emails: Iterable[Email]) -> list[tuple[Any, ...]]:
    """Queued emails as rows of the outbox's columns (in ``EMAIL_COLUMNS`` order), each with
    its stable Message-ID: every email is queued as a row made here."""
    now = utcnow()
    domain = settings().mail_domain
    queued = EmailStatus.QUEUED.value
    return [(email["account_id"], email["recipient"], email["recipient_name"] or None,
             email["template"], email["language"], email["context"], _new_message_id(domain),
             queued, 0, now, now)
            for email in emails]


def _new_message_id(domain: str) -> str:
    """Made once, when the email is queued: every attempt at it (a retry, a resend after a
    crash) carries the same one, so the receiving side keeps it once."""
    return make_message_id(secrets.token_hex(12), domain)


def wake_after_commit(session: Session) -> None:
    """A worker hears of the session's queued emails once they are committed."""
    after_commit(session, wake_sender)


EMAIL_COLUMNS = ("account_id", "recipient", "recipient_name", "template", "language",
                 "context", "message_id", "status", "attempts", "next_attempt_at", "created_at")
_EMAIL_PARAMETERS = tuple(f"email_{column}" for column in EMAIL_COLUMNS)
# Built once, to ride in the invite path's statement too.
QUEUE_EMAIL = insert(OutboxEmail).values(prefixed_values("email_", EMAIL_COLUMNS)).returning(
    OutboxEmail.id)


def _claimable(config: Settings) -> Any:
    now = utcnow()
    return or_(_due(now), _abandoned(now, config))


# Waiting to be sent: retries first, then fresh mail (the order a claim takes them in).
DUE_STATUSES = (EmailStatus.DEFERRED.value, EmailStatus.QUEUED.value)


def _due(now: datetime, statuses: Sequence[str] = DUE_STATUSES) -> Any:
    return and_(OutboxEmail.status.in_(statuses), OutboxEmail.next_attempt_at <= now)


def _abandoned(now: datetime, config: Settings) -> Any:
    """Claimed by a worker that died mid-send: the claim outlived its lease."""
    return and_(OutboxEmail.status == EmailStatus.SENDING.value,
                OutboxEmail.claimed_at < now - timedelta(seconds=config.outbox_lease_seconds))


# A claimed outbox row as the send path reads it: a plain row of the columns it needs
# (a mapped object per email cost the claim half its time).
Claimed = Row[Any]
OUTBOX = cast(Table, OutboxEmail.__table__)
_SEND_COLUMNS = [OUTBOX.c[name] for name in (
    "id", "recipient", "recipient_name", "template", "language", "context", "message_id",
    "claim_token", "attempts")]


def claim(session: Session, ids: Sequence[int], *, extra: int = 0) -> list[Claimed]:
    """Claim the given rows that are due, plus up to ``extra`` other due rows.

    Claiming is one short transaction of its own; rows another worker holds are
    skipped (SKIP LOCKED on PostgreSQL; SQLite serialises writers).
    """
    config = settings()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # A queue's due rows change faster than its statistics: an import queues 100,000
        # in a minute, and a planner that still counts 20 fetches them all by bitmap and
        # sorts them, for every claim (40 ms instead of 2). Walking the due index in its
        # order stops at the rows taken, whatever the statistics say.
        connection.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    wanted: list[int] = []
    if ids:
        wanted += session.scalars(
            select(OutboxEmail.id)
            .where(OutboxEmail.id.in_(list(ids)), _claimable(config))
            .with_for_update(skip_locked=True)
        ).all()
    given, now = len(wanted), utcnow()
    # Abandoned rows first, then retries, then fresh mail, each by due time: one query
    # per status, so each walks the due index in the order it wants.
    for others in (select(OutboxEmail.id).where(_abandoned(now, config)),
                   *(select(OutboxEmail.id).where(_due(now, (status,)))
                     .order_by(OutboxEmail.next_attempt_at) for status in DUE_STATUSES)):
        room = extra - (len(wanted) - given)
        if room <= 0:
            break
        wanted += session.scalars(
            others.where(OutboxEmail.id.not_in(wanted or [0]))
            .limit(room)
            .with_for_update(skip_locked=True)
        ).all()
    if not wanted:
        return []
    claimed = connection.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id.in_(wanted), _claimable(config))
        .values(
            status=EmailStatus.SENDING.value,
            claim_token=secrets.token_hex(8),
            claimed_at=utcnow(),
            attempts=OUTBOX.c.attempts + 1,
        )
        .returning(*_SEND_COLUMNS)
    ).all()
    return sorted(claimed, key=lambda row: row.id)


def stranded_ids(session: Session, *, grace_seconds: float = 10.0,
                 limit: int = 10_000) -> list[int]:
    """Rows whose task was lost: due but untouched for a while, or claimed by a dead worker."""
    config = settings()
    settled = utcnow() - timedelta(seconds=grace_seconds)
    return list(
        session.scalars(
            select(OutboxEmail.id)
            .where(_claimable(config), OutboxEmail.next_attempt_at <= settled)
            .order_by(OutboxEmail.id)
            .limit(limit)
        ).all()
    )


def sweep() -> int:
    """Re-enqueue stranded rows in batches; returns how many rows were handed out."""
    with session_scope() as session:
        ids = stranded_ids(session)
    size = settings().outbox_batch_size
    for start in range(0, len(ids), size):
        dispatch.send_task(SEND_TASK, ids[start : start + size])
    return len(ids)


FINISHED_STATUSES = (EmailStatus.SENT.value, EmailStatus.FAILED.value)
# The ids of finished emails another package still reads, given the time now: ``purge``
# keeps them whatever their age. Each package registers its own when imported.
StillRead = Callable[[datetime], Select[Any]]
STILL_READ: list[StillRead] = []


def keep_while_read(still_read: StillRead) -> StillRead:
    """Register a query of the email ids another package still reads (``purge`` keeps them)."""
    STILL_READ.append(still_read)
    return still_read


def purge(*, chunk: int = 5_000) -> int:
    """Forget sent and failed emails after ``outbox_retention_days``; returns how many.

    A row's last attempt (``next_attempt_at``, indexed with the status) dates it. An
    email another package still reads (``keep_while_read``) is kept whatever its age.
    Deletes in chunks, one transaction each, so a large backlog never holds a long lock.
    """
    cutoff = utcnow() - timedelta(days=settings().outbox_retention_days)
    now = utcnow()
    old = select(OutboxEmail.id).where(OutboxEmail.status.in_(FINISHED_STATUSES),
                                       OutboxEmail.next_attempt_at < cutoff)
    for still_read in STILL_READ:
        old = old.where(OutboxEmail.id.not_in(still_read(now)))
    return delete_in_chunks(OutboxEmail, old, chunk)
