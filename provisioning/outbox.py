"""The one way an email leaves: a row in the outbox, sent by the worker.

Each row is claimed before it is sent, so a task that runs twice (redelivery,
sweeper, retry) never sends a row twice; the only window left is a worker
killed after the server accepted a message and before its group of outcomes
was marked, and then the resend carries the same Message-ID.
"""

from __future__ import annotations

import contextlib
import logging
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any, TypedDict, Unpack, cast

from sqlalchemy import (
    Row,
    Table,
    TypeDecorator,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from provisioning import dispatch
from provisioning.config import Settings, settings
from provisioning.db import after_commit, engine, prefixed_values, session_scope
from provisioning.mail.message import build_message, make_message_id
from provisioning.mail.sender import DeliveryError, MailSender, Outgoing, Result
from provisioning.mail.templates import render_email
from provisioning.models import EmailStatus, Invitation, OutboxEmail, utcnow
from provisioning.security import invitation_token

log = logging.getLogger(__name__)

SEND_TASK = "provisioning.send_emails"
INVITATION_NONCE = "invitation_nonce"  # context key: the link is derived at send time

# One wake-up per window however many emails are queued; the task claims whatever is due.
wake_sender = dispatch.Debounced(SEND_TASK, settings().outbox_dispatch_window_seconds)


def queue_email(session: Session, **fields: Unpack[Email]) -> int:
    """Add an email to the outbox and return its id; it goes to a worker once the
    transaction commits. One Core insert: it rides on the invite path, the busiest."""
    email_id: int = session.connection().execute(QUEUE_EMAIL, new_email(**fields)).scalar_one()
    wake_after_commit(session)
    return email_id


class Email(TypedDict):
    account_id: int | None
    recipient: str
    recipient_name: str | None
    template: str
    language: str
    context: dict[str, Any]


def new_email(**fields: Unpack[Email]) -> dict[str, Any]:
    """A queued email as ``QUEUE_EMAIL``'s parameters, with its stable Message-ID."""
    now = utcnow()
    return {
        "email_account_id": fields["account_id"],
        "email_recipient": fields["recipient"],
        "email_recipient_name": fields["recipient_name"] or None,
        "email_template": fields["template"],
        "email_language": fields["language"],
        "email_context": fields["context"],
        "email_message_id": make_message_id(secrets.token_hex(12), settings().mail_domain),
        "email_status": EmailStatus.QUEUED.value,
        "email_attempts": 0,
        "email_next_attempt_at": now,
        "email_created_at": now,
    }


def wake_after_commit(session: Session) -> None:
    """A worker hears of the session's queued emails once they are committed."""
    after_commit(session, wake_sender)


_EMAIL_COLUMNS = ("account_id", "recipient", "recipient_name", "template", "language",
                  "context", "message_id", "status", "attempts", "next_attempt_at", "created_at")
# Built once, to ride in the invite path's statement too.
QUEUE_EMAIL = insert(OutboxEmail).values(prefixed_values("email_", _EMAIL_COLUMNS)).returning(
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
_OUTBOX = cast(Table, OutboxEmail.__table__)
_SEND_COLUMNS = [_OUTBOX.c[name] for name in (
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
        update(_OUTBOX)
        .where(_OUTBOX.c.id.in_(wanted), _claimable(config))
        .values(
            status=EmailStatus.SENDING.value,
            claim_token=secrets.token_hex(8),
            claimed_at=utcnow(),
            attempts=_OUTBOX.c.attempts + 1,
        )
        .returning(*_SEND_COLUMNS)
    ).all()
    return sorted(claimed, key=lambda row: row.id)


def render(row: Claimed, config: Settings) -> bytes:
    """The wire form of one outbox row."""
    context: dict[str, Any] = {
        # JSON keeps times as ISO strings; the templates format real datetimes per language
        key: datetime.fromisoformat(value) if key.endswith("_at") and isinstance(value, str)
        else value
        for key, value in row.context.items()
    }
    nonce = context.pop(INVITATION_NONCE, None)
    if nonce is not None:
        context["link"] = (
            f"{config.public_url}/invitations/{invitation_token(config.secret_key, nonce)}"
        )
    context.setdefault("product_name", config.product_name)
    rendered = render_email(row.template, row.language, context)
    return build_message(
        message_id=row.message_id,
        sender=config.mail_from,
        sender_name=config.mail_from_name,
        recipient=row.recipient,
        recipient_name=row.recipient_name,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
    )


def retry_delay(attempts: int, config: Settings) -> float:
    """Exponential backoff with full jitter, never beyond the configured ceiling."""
    ceiling = min(config.outbox_retry_max_seconds, config.outbox_retry_base_seconds * 2 ** attempts)
    return random.uniform(config.outbox_retry_base_seconds / 2, max(ceiling, 0.001))


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    retry_in: float = 0.0


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed row: its new status and the columns that go with it."""

    row_id: int
    claim_token: str
    status: EmailStatus
    values: dict[str, Any]
    retry_in: float = 0.0


class MarkingFailed(RuntimeError):
    """Outcomes could not be written; their rows stay claimed until the lease runs out."""


def deliver(ids: Sequence[int], senders: Sequence[MailSender], *,
            extra: int | None = None) -> DeliveryReport:
    """Send the due rows among ``ids`` (and batches of other due rows) over several connections.

    Each connection has a thread that takes the next claimed row, renders and
    sends it; outcomes are marked in small groups (``GroupedMarks``), so a crash
    can repeat at most those groups and the messages in flight, each under its
    own Message-ID. While the connections send, the task claims what has come
    due since (at most one claim per ``outbox_claim_interval_seconds``), for up
    to ``outbox_drain_seconds``: mail that trickles in rides on the task that is
    already running instead of a task of its own. A full claim is a backlog: its
    next batch goes to a task of its own, which takes turns with other work (an
    import's parts) instead of holding the worker process.
    """
    config = settings()
    batch = config.outbox_batch_size if extra is None else extra
    report = DeliveryReport()
    rows, lease_ends = _claim_batch(ids, max(batch - len(ids), 0), batch, config)
    if not rows:
        return report
    marks = GroupedMarks(write_marks, report, size=config.outbox_mark_group_size,
                         interval=config.outbox_mark_interval_seconds)
    line = SendLine(senders, marks, config)
    drain_ends = time.monotonic() + config.outbox_drain_seconds
    try:
        while rows:
            line.add(rows, lease_ends)
            if not batch or len(rows) >= batch:
                break  # ids only, or a backlog: its next batch is a task of its own, in turn
            if not line.wait_for_room(time.monotonic() + config.outbox_claim_interval_seconds):
                break
            if time.monotonic() >= drain_ends:
                dispatch.send_task(SEND_TASK, [])  # mail is still coming: a fresh task takes over
                break
            rows, lease_ends = _claim_batch([], batch, batch, config)
    finally:
        try:
            line.close()
        finally:
            marks.close()  # what the server took is marked even when a connection's thread failed
    return report


def _claim_batch(ids: Sequence[int], extra: int, batch: int, config: Settings
                 ) -> tuple[list[Claimed], float]:
    """Claimed rows, and when their lease ends (counted from before the claim)."""
    lease_ends = time.monotonic() + config.outbox_lease_seconds
    with session_scope() as session:
        rows = claim(session, ids, extra=extra)
    if batch and len(rows) >= batch:
        # More may be waiting: let another worker process start on the next batch now.
        dispatch.send_task(SEND_TASK, [])
    return rows, lease_ends


class SendLine:
    """One thread per connection, each taking the next claimed row, while more are added.

    A row is started only while its claim's lease lasts: after that another worker
    may claim it, so it is left for that claim (and the line stops taking more).
    A thread that fails (outcomes that cannot be marked) stops the line; ``close``
    raises its error.
    """

    def __init__(self, senders: Sequence[MailSender], marks: GroupedMarks,
                 config: Settings) -> None:
        self._senders = senders
        self._marks = marks
        self._config = config
        self._waiting: deque[tuple[Claimed, float]] = deque()
        self._changed = threading.Condition()
        self._closing = False
        self._stopped = False
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []

    def add(self, rows: Sequence[Claimed], lease_ends: float) -> None:
        with self._changed:
            self._waiting.extend((row, lease_ends) for row in rows)
            self._changed.notify_all()
            want = min(len(self._waiting), len(self._senders))
        while len(self._threads) < want:  # no more connections than there are rows
            thread = threading.Thread(target=self._send_while_open,
                                      args=(self._senders[len(self._threads)],),
                                      name=f"smtp-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def wait_for_room(self, not_before: float) -> bool:
        """Wait until the connections are nearly out of rows and ``not_before`` has passed;
        False if the line stopped (a lease ran out, or a thread failed)."""
        low = len(self._threads)
        with self._changed:
            self._changed.wait_for(lambda: self._stopped or len(self._waiting) <= low)
            while not self._stopped and (wait := not_before - time.monotonic()) > 0:
                self._changed.wait(wait)
            return not self._stopped

    def close(self) -> None:
        """Send what was added (unless stopped), end the threads; raises a thread's error."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join()
        if self._error is not None:
            raise self._error

    def next(self, *, wait: bool) -> Outgoing | None:
        """The next row that may still be sent, rendered (a connection's ``MessageSource``).

        A row that cannot be rendered is marked failed here and the next one taken.
        """
        while (taken := self._take(wait)) is not None:
            row, lease_ends = taken
            if time.monotonic() >= lease_ends:
                self._stop()
                return None
            try:
                message = render(row, self._config)
            except Exception as exc:  # a template or data fault: retrying will not fix it
                log.exception("email %s could not be built", row.id)
                self._marks.record(_failure(row, DeliveryError(
                    f"cannot build message: {exc}", permanent=True), self._config))
                continue
            return Outgoing(row, row.recipient, message)
        return None

    def _take(self, wait: bool) -> tuple[Claimed, float] | None:
        with self._changed:
            if wait:
                self._changed.wait_for(lambda: self._waiting or self._closing or self._stopped)
            if self._stopped or not self._waiting:
                return None
            taken = self._waiting.popleft()
            self._changed.notify_all()
            return taken

    def _stop(self, error: BaseException | None = None) -> None:
        with self._changed:
            self._stopped = True
            self._error = self._error or error
            self._changed.notify_all()

    def _send_while_open(self, sender: MailSender) -> None:
        try:
            # closing: if marking fails, the stream ends at once and lets go of the connection
            with contextlib.closing(sender.send_each(self._config.mail_from, self)) as results:
                for row, result in results:
                    self._marks.record(_sent_or_failed(cast(Claimed, row), result, self._config))
        except BaseException as exc:
            self._stop(exc)


def _sent_or_failed(row: Claimed, result: Result, config: Settings) -> Outcome:
    """What to mark a row the server answered for."""
    if isinstance(result, DeliveryError):
        return _failure(row, result, config)
    return _outcome(row, EmailStatus.SENT, sent_at=utcnow(), provider_response=result,
                    last_error=None)


def _failure(row: Claimed, error: DeliveryError, config: Settings) -> Outcome:
    if error.permanent or row.attempts >= config.outbox_max_attempts:
        return _outcome(row, EmailStatus.FAILED, last_error=str(error))
    delay = retry_delay(row.attempts, config)
    outcome = _outcome(row, EmailStatus.DEFERRED, last_error=str(error),
                       next_attempt_at=utcnow() + timedelta(seconds=delay))
    return replace(outcome, retry_in=delay)


def _outcome(row: Claimed, status: EmailStatus, **values: Any) -> Outcome:
    assert row.claim_token is not None, "only a claimed row is sent"
    return Outcome(row.id, row.claim_token, status, values)


class GroupedMarks:
    """Outcomes written in small groups, from a thread of their own.

    A group is written, in one transaction, once it holds ``size`` outcomes or
    its oldest outcome has waited ``interval`` seconds, and on ``close``. While a
    full group waits for the one being written, recording waits too, so at most
    two groups are ever unmarked: a crash resends no more than those, each under
    its own Message-ID. If writing fails, ``record`` and ``close`` raise, so the
    connections stop sending what could not be marked.
    """

    def __init__(self, write: Callable[[list[Outcome]], None], report: DeliveryReport, *,
                 size: int, interval: float) -> None:
        self._write = write
        self._report = report
        self._size = max(size, 1)
        self._interval = interval
        self._waiting: list[Outcome] = []
        self._oldest = 0.0
        self._closing = False
        self._error: Exception | None = None
        self._changed = threading.Condition()
        self._writer = threading.Thread(target=self._write_groups, name="outbox-marks",
                                        daemon=True)
        self._writer.start()

    def record(self, outcome: Outcome) -> None:
        """Queue one row's outcome for the next group."""
        with self._changed:
            while len(self._waiting) >= self._size and self._error is None:
                self._changed.wait()
            if self._error is not None:
                raise MarkingFailed("earlier outcomes could not be marked") from self._error
            if not self._waiting:
                self._oldest = time.monotonic()
            self._waiting.append(outcome)
            _add_to_report(self._report, outcome)
            if len(self._waiting) in (1, self._size):  # start the interval, or write now
                self._changed.notify_all()

    def close(self) -> None:
        """Write what is left and stop; raises if any group could not be written."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._writer.join()
        if self._error is not None:
            raise MarkingFailed("outcomes could not be marked") from self._error

    def _write_groups(self) -> None:
        while group := self._next_group():
            try:
                self._write(group)
            except Exception as exc:
                log.exception("could not mark %d sent email(s)", len(group))
                with self._changed:
                    self._error = exc
                    self._changed.notify_all()
                return

    def _next_group(self) -> list[Outcome]:
        """Wait until a group is due; empty once closing and nothing is left."""
        with self._changed:
            while not self._closing and len(self._waiting) < self._size:
                due_in = self._oldest + self._interval - time.monotonic()
                if self._waiting and due_in <= 0:
                    break
                self._changed.wait(due_in if self._waiting else None)
            group, self._waiting = self._waiting, []
            self._changed.notify_all()  # recording may go on
            return group


def _add_to_report(report: DeliveryReport, outcome: Outcome) -> None:
    if outcome.status is EmailStatus.SENT:
        report.sent.append(outcome.row_id)
    elif outcome.status is EmailStatus.FAILED:
        report.failed.append(outcome.row_id)
    else:
        report.deferred.append(outcome.row_id)
        report.retry_in = max(report.retry_in, outcome.retry_in)


# The SET columns come from each parameter set's keys (status and the outcome's values).
_MARK = update(OutboxEmail).where(
    OutboxEmail.id == bindparam("row_id"), OutboxEmail.claim_token == bindparam("token")
)


def write_marks(group: list[Outcome]) -> None:
    """Mark a group of outcomes in one transaction; only the claim's holder may.

    One statement per kind of outcome (each kind sets its own columns). On
    PostgreSQL the group goes as arrays to one UPDATE … FROM unnest(…): a
    pipelined executemany cost the worker 22 µs a row, this 8.
    """
    by_columns: dict[tuple[str, ...], list[Outcome]] = {}
    for outcome in group:
        by_columns.setdefault(tuple(outcome.values), []).append(outcome)
    with engine().begin() as connection:
        for names, outcomes in by_columns.items():
            parameters = [{"row_id": outcome.row_id, "token": outcome.claim_token,
                           "status": outcome.status.value, **outcome.values}
                          for outcome in outcomes]
            if connection.dialect.name == "postgresql":  # the same, a column at a time
                connection.execute(_marks_from_arrays(names), {
                    key: [row[key] for row in parameters] for key in parameters[0]})
            else:
                connection.execute(_MARK, parameters)


@cache
def _marks_from_arrays(names: tuple[str, ...]) -> Any:
    """``UPDATE outbox_emails SET … FROM unnest(:row_id, :token, :status, …) AS marks(…)``."""
    columns = ("row_id", "token", "status", *names)
    types = {"row_id": _OUTBOX.c.id.type, "token": _OUTBOX.c.claim_token.type}
    arrays = [bindparam(name, type_=ARRAY(_array_element(types.get(name) or _OUTBOX.c[name].type)))
              for name in columns]
    marks = func.unnest(*arrays).table_valued(*columns).render_derived(name="marks")
    # ``id = ANY(:row_id)`` as well as the join: the planner then takes the rows by primary
    # key whatever it guesses of unnest's length (a prepared plan guesses 100 and, the
    # table looking small for a while, scanned all of it for every group: 7 ms, not 0.2).
    return (update(_OUTBOX)
            .where(_OUTBOX.c.id == any_(arrays[0]), _OUTBOX.c.id == marks.c.row_id,
                   _OUTBOX.c.claim_token == marks.c.token)
            .values({name: marks.c[name] for name in ("status", *names)}))


def _array_element(column_type: Any) -> Any:
    """The type an array of the column's values is made of (a decorator's own impl)."""
    return column_type.impl if isinstance(column_type, TypeDecorator) else column_type


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


def purge(*, chunk: int = 5_000) -> int:
    """Forget sent and failed emails after ``outbox_retention_days``; returns how many.

    A row's last attempt (``next_attempt_at``, indexed with the status) dates it. The
    email an open invitation last sent is kept whatever its age: the member's
    invitation state ("sent", "failed") is read from it. Deletes in chunks, one
    transaction each, so a large backlog never holds a long lock.
    """
    cutoff = utcnow() - timedelta(days=settings().outbox_retention_days)
    now = utcnow()
    still_read = select(Invitation.last_email_id).where(
        Invitation.last_email_id.is_not(None), Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None), Invitation.expires_at > now)
    old = (select(OutboxEmail.id)
           .where(OutboxEmail.status.in_(FINISHED_STATUSES), OutboxEmail.next_attempt_at < cutoff,
                  OutboxEmail.id.not_in(still_read))
           .limit(chunk))
    purged = 0
    while True:
        with session_scope() as session:
            ids = list(session.scalars(old))
            if ids:
                session.execute(delete(OutboxEmail).where(OutboxEmail.id.in_(ids)))
        purged += len(ids)
        if len(ids) < chunk:
            return purged
