"""Sending claimed emails over the process's SMTP connections and marking each outcome in groups."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    TypeDecorator,
    any_,
    bindparam,
    func,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from provisioning.core import dispatch
from provisioning.core.config import Settings, settings
from provisioning.core.db import engine, session_scope
from provisioning.core.models import utcnow
from provisioning.mail.links import resolve_links
from provisioning.mail.message import build_message
from provisioning.mail.models import EmailStatus, OutboxEmail
from provisioning.mail.outbox import OUTBOX, SEND_TASK, Claimed, claim
from provisioning.mail.sender import DeliveryError, MailSender, Outgoing, Result
from provisioning.mail.templates import render_email

log = logging.getLogger(__name__)


def render(row: Claimed, config: Settings) -> bytes:
    """The wire form of one outbox row."""
    context: dict[str, Any] = {
        # JSON keeps times as ISO strings; the templates format real datetimes per language
        key: datetime.fromisoformat(value) if key.endswith("_at") and isinstance(value, str)
        else value
        for key, value in row.context.items()
    }
    resolve_links(context, config)
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
    types = {"row_id": OUTBOX.c.id.type, "token": OUTBOX.c.claim_token.type}
    arrays = [bindparam(name, type_=ARRAY(_array_element(types.get(name) or OUTBOX.c[name].type)))
              for name in columns]
    marks = func.unnest(*arrays).table_valued(*columns).render_derived(name="marks")
    # ``id = ANY(:row_id)`` as well as the join: the planner then takes the rows by primary
    # key whatever it guesses of unnest's length (a prepared plan guesses 100 and, the
    # table looking small for a while, scanned all of it for every group: 7 ms, not 0.2).
    return (update(OUTBOX)
            .where(OUTBOX.c.id == any_(arrays[0]), OUTBOX.c.id == marks.c.row_id,
                   OUTBOX.c.claim_token == marks.c.token)
            .values({name: marks.c[name] for name in ("status", *names)}))


def _array_element(column_type: Any) -> Any:
    """The type an array of the column's values is made of (a decorator's own impl)."""
    return column_type.impl if isinstance(column_type, TypeDecorator) else column_type
