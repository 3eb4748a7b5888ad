"""The one way an email leaves: a row in the outbox, sent by the worker.

Each row is claimed before it is sent, so a task that runs twice (redelivery,
sweeper, retry) never sends a row twice; the only window left is a worker
killed after the server accepted the message and before the row was marked,
and then the resend carries the same Message-ID.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update
from sqlalchemy.orm import Session

from provisioning import dispatch
from provisioning.config import Settings, settings
from provisioning.db import after_commit, autocommit_connection, session_scope
from provisioning.mail.message import build_message, make_message_id
from provisioning.mail.sender import DeliveryError, MailSender
from provisioning.mail.templates import render_email
from provisioning.models import EmailStatus, OutboxEmail, utcnow
from provisioning.security import invitation_token

log = logging.getLogger(__name__)

SEND_TASK = "provisioning.send_emails"
INVITATION_NONCE = "invitation_nonce"  # context key: the link is derived at send time

# One wake-up per window however many emails are queued; the task claims whatever is due.
wake_sender = dispatch.Debounced(SEND_TASK, settings().outbox_dispatch_window_seconds)


def queue_email(
    session: Session,
    *,
    account_id: int | None,
    recipient: str,
    recipient_name: str | None,
    template: str,
    language: str,
    context: dict[str, Any],
) -> OutboxEmail:
    """Add an email to the outbox; it is handed to a worker once the transaction commits."""
    row = OutboxEmail(
        account_id=account_id,
        recipient=recipient,
        recipient_name=recipient_name or None,
        template=template,
        language=language,
        context=context,
        message_id=make_message_id(secrets.token_hex(12), settings().mail_domain),
        status=EmailStatus.QUEUED.value,
        next_attempt_at=utcnow(),
    )
    session.add(row)
    session.flush()
    after_commit(session, wake_sender)
    return row


def _claimable(config: Settings) -> Any:
    now = utcnow()
    lease_expired = now - timedelta(seconds=config.outbox_lease_seconds)
    return or_(
        and_(
            OutboxEmail.status.in_((EmailStatus.QUEUED.value, EmailStatus.DEFERRED.value)),
            OutboxEmail.next_attempt_at <= now,
        ),
        # a worker that died mid-send left its claim behind
        and_(OutboxEmail.status == EmailStatus.SENDING.value,
             OutboxEmail.claimed_at < lease_expired),
    )


def claim(session: Session, ids: Sequence[int], *, extra: int = 0) -> list[OutboxEmail]:
    """Claim the given rows that are due, plus up to ``extra`` other due rows.

    Claiming is one short transaction of its own; rows another worker holds are
    skipped (SKIP LOCKED on PostgreSQL; SQLite serialises writers).
    """
    config = settings()
    wanted: list[int] = []
    if ids:
        wanted += session.scalars(
            select(OutboxEmail.id)
            .where(OutboxEmail.id.in_(list(ids)), _claimable(config))
            .with_for_update(skip_locked=True)
        ).all()
    if extra > 0:
        wanted += session.scalars(
            select(OutboxEmail.id)
            .where(_claimable(config), OutboxEmail.id.not_in(wanted or [0]))
            .order_by(OutboxEmail.id)
            .limit(extra)
            .with_for_update(skip_locked=True)
        ).all()
    if not wanted:
        return []
    token = secrets.token_hex(8)
    session.execute(
        update(OutboxEmail)
        .where(OutboxEmail.id.in_(wanted), _claimable(config))
        .values(
            status=EmailStatus.SENDING.value,
            claim_token=token,
            claimed_at=utcnow(),
            attempts=OutboxEmail.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return list(
        session.scalars(
            select(OutboxEmail).where(OutboxEmail.claim_token == token).order_by(OutboxEmail.id)
        ).all()
    )


def render(row: OutboxEmail, config: Settings) -> bytes:
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


def deliver(ids: Sequence[int], sender: MailSender, *, extra: int | None = None) -> DeliveryReport:
    """Send the due rows among ``ids`` (and a batch of other due rows) over one connection.

    Each row is marked, in its own commit, right after the server took it, so a
    crash can repeat at most the one message in flight.
    """
    config = settings()
    batch = config.outbox_batch_size if extra is None else extra
    report = DeliveryReport()
    with session_scope() as session:
        rows = claim(session, ids, extra=max(batch - len(ids), 0))
    if batch and len(rows) >= batch:
        # More may be waiting: let another worker process start on the next batch now.
        dispatch.send_task(SEND_TASK, [])
    with autocommit_connection() as marks:
        for row in rows:
            try:
                message = render(row, config)
                response = sender.send(config.mail_from, row.recipient, message)
            except DeliveryError as exc:
                _record_failure(marks, row, exc, config, report)
            except Exception as exc:  # a template or data fault: retrying will not fix it
                log.exception("email %s could not be built", row.id)
                failure = DeliveryError(f"cannot build message: {exc}", permanent=True)
                _record_failure(marks, row, failure, config, report)
            else:
                _mark(marks, row, status=EmailStatus.SENT, sent_at=utcnow(),
                      provider_response=response, last_error=None)
                report.sent.append(row.id)
    return report


def _record_failure(marks: Connection, row: OutboxEmail, error: DeliveryError,
                    config: Settings, report: DeliveryReport) -> None:
    if error.permanent or row.attempts >= config.outbox_max_attempts:
        _mark(marks, row, status=EmailStatus.FAILED, last_error=str(error))
        report.failed.append(row.id)
        return
    delay = retry_delay(row.attempts, config)
    _mark(marks, row, status=EmailStatus.DEFERRED, last_error=str(error),
          next_attempt_at=utcnow() + timedelta(seconds=delay))
    report.deferred.append(row.id)
    report.retry_in = max(report.retry_in, delay)


def _mark(marks: Connection, row: OutboxEmail, *, status: EmailStatus, **values: Any) -> None:
    """Record one outcome at once (its own commit); only the claim's holder may."""
    marks.execute(
        update(OutboxEmail)
        .where(OutboxEmail.id == row.id, OutboxEmail.claim_token == row.claim_token)
        .values(status=status.value, **values)
    )


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
