"""Mobile, browser and Telegram notifications: one adapter interface (``adapters``) and a
push outbox.

Each (entry, channel) is one ``push_outbox`` row, written with the entry. A send task
claims due rows (a claim token and a lease, SKIP LOCKED on PostgreSQL), hands each to its
channel's adapter and marks the outcome under its claim: sent, deferred with exponential
backoff, or failed. A task that runs twice finds nothing left to claim, so each entry goes
out once per channel; as with email, only a worker killed between the service's answer and
the mark can repeat one.
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update

from provisioning.core import dispatch
from provisioning.core.config import Settings, settings
from provisioning.core.db import session_scope
from provisioning.core.models import utcnow
from provisioning.notifications.adapters import Device, Push, PushAdapter, PushFailed
from provisioning.notifications.devices import open_keys
from provisioning.notifications.models import (
    Notification,
    NotificationSettings,
    PushDevice,
    PushMessage,
    PushStatus,
)

log = logging.getLogger(__name__)
PUSH_TASK = "provisioning.send_pushes"


def wake_pusher() -> None:
    """Wake a push send task (at most one wake-up per window per process)."""
    dispatch.debounced(PUSH_TASK, settings().outbox_dispatch_window_seconds)()


@dataclass
class PushReport:
    sent: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def deliver_pushes(adapters: Mapping[str, PushAdapter], *, now: datetime | None = None
                   ) -> PushReport:
    """Claim the due push messages, send each through its channel's adapter, mark each.

    ``now`` is the clock (tests pass their own, so retries come due without waiting).
    """
    config = settings()
    moment = now or utcnow()
    token = secrets.token_hex(8)
    with session_scope() as session:
        claimable = or_(
            and_(PushMessage.status.in_((PushStatus.QUEUED.value, PushStatus.DEFERRED.value)),
                 PushMessage.next_attempt_at <= moment),
            and_(PushMessage.status == PushStatus.SENDING.value,
                 PushMessage.claimed_at < moment - timedelta(seconds=config.push_lease_seconds)))
        wanted = list(session.scalars(
            select(PushMessage.id).where(claimable).order_by(PushMessage.next_attempt_at)
            .limit(config.push_batch_size).with_for_update(skip_locked=True)))
        if not wanted:
            return PushReport()
        session.execute(update(PushMessage).where(PushMessage.id.in_(wanted), claimable).values(
            status=PushStatus.SENDING.value, claim_token=token, claimed_at=moment,
            attempts=PushMessage.attempts + 1))
        claimed = session.execute(
            select(PushMessage.id, PushMessage.channel, PushMessage.attempts,
                   Notification.identity_id, Notification.event, Notification.text,
                   NotificationSettings.telegram_chat_id)
            .join(Notification, Notification.id == PushMessage.notification_id)
            .outerjoin(NotificationSettings,
                       NotificationSettings.identity_id == Notification.identity_id)
            .where(PushMessage.claim_token == token).order_by(PushMessage.id)).all()
        devices = _devices_of(session, {row.identity_id for row in claimed})
    report = PushReport()
    for row in claimed:
        push = Push(row.id, row.channel, row.identity_id, row.event, row.text,
                    row.telegram_chat_id, devices[row.identity_id, row.channel])
        outcome, gone = _send(push, adapters.get(push.channel), row.attempts, moment, config)
        with session_scope() as session:
            session.execute(update(PushMessage).where(
                PushMessage.id == push.id, PushMessage.claim_token == token).values(**outcome))
            if gone:
                session.execute(delete(PushDevice).where(PushDevice.id.in_(gone)))
        {PushStatus.SENT.value: report.sent, PushStatus.DEFERRED.value: report.deferred,
         PushStatus.FAILED.value: report.failed}[outcome["status"]].append(push.id)
    return report


def _devices_of(session: Any, identities: set[int]) -> dict[tuple[int, str], tuple[Device, ...]]:
    """The registered phones and browsers of these people, by (person, channel)."""
    found: dict[tuple[int, str], list[Device]] = defaultdict(list)
    for device in session.scalars(select(PushDevice).where(
            PushDevice.identity_id.in_(identities)).order_by(PushDevice.id)):
        found[device.identity_id, device.channel].append(Device(
            device.id, device.platform, device.address, open_keys(device.sealed_keys)))
    return defaultdict(tuple, {key: tuple(value) for key, value in found.items()})


def _send(push: Push, adapter: PushAdapter | None, attempts: int, now: datetime,
          config: Settings) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Hand one push to its adapter: the columns that record what became of it, and the
    devices its service no longer knows."""
    try:
        if adapter is None:
            raise PushFailed(f"no {push.channel} adapter is configured", permanent=True)
        delivered = adapter.send(push)
    except PushFailed as failure:
        log.warning("push %s on %s: %s", push.id, push.channel, failure)
        if failure.permanent or attempts >= config.push_max_attempts:
            return {"status": PushStatus.FAILED.value, "last_error": str(failure)}, failure.gone
        return ({"status": PushStatus.DEFERRED.value, "last_error": str(failure),
                 "next_attempt_at": now + timedelta(seconds=dispatch.backoff_seconds(
                     attempts, config.push_retry_base_seconds, config.push_retry_max_seconds))},
                failure.gone)
    return {"status": PushStatus.SENT.value, "sent_at": now, "last_error": None}, delivered.gone

