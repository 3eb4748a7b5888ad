"""Mobile, browser and Telegram notifications: one adapter interface and a push outbox.

Each (entry, channel) is one ``push_outbox`` row, written with the entry. A send task
claims due rows (a claim token and a lease, SKIP LOCKED on PostgreSQL), hands each to its
channel's adapter and marks the outcome under its claim: sent, deferred with exponential
backoff, or failed. A task that runs twice finds nothing left to claim, so each entry goes
out once per channel; as with email, only a worker killed between the service's answer and
the mark can repeat one.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import and_, or_, select, update

from provisioning.core import dispatch
from provisioning.core.config import Settings, settings
from provisioning.core.db import session_scope
from provisioning.core.models import utcnow
from provisioning.notifications.models import (
    Notification,
    NotificationSettings,
    PushMessage,
    PushStatus,
)

log = logging.getLogger(__name__)
PUSH_TASK = "provisioning.send_pushes"


@dataclass(frozen=True)
class Push:
    """One notification to deliver on one channel."""

    id: int
    channel: str
    identity_id: int
    event: str
    text: str
    telegram_chat_id: str | None


class PushFailed(Exception):
    """The channel's service did not take the notification; ``permanent`` if retrying is
    pointless (a 4xx answer, no chat to send to, no adapter for the channel)."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


class PushAdapter(Protocol):
    """What each push channel implements: deliver one notification or raise ``PushFailed``."""

    def send(self, push: Push) -> None: ...


class TelegramAdapter:
    """Posts to the Bot API's ``sendMessage`` (``{base}/bot{token}/sendMessage``)."""

    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def send(self, push: Push) -> None:
        if not push.telegram_chat_id:
            raise PushFailed("no Telegram chat is linked (telegram_chat_id)", permanent=True)
        request = urllib.request.Request(
            f"{self.base_url}/bot{self._token}/sendMessage", method="POST",
            data=json.dumps({"chat_id": push.telegram_chat_id, "text": push.text}).encode(),
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                reply = json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as refused:
            # 429 and 5xx pass; any other 4xx (a blocked bot, a wrong chat) stays refused
            temporary = refused.code == 429 or refused.code >= 500
            raise PushFailed(f"Telegram answered {refused.code}", permanent=not temporary
                             ) from None
        except (urllib.error.URLError, OSError, ValueError) as unreachable:
            raise PushFailed(f"Telegram unreachable: {unreachable}", permanent=False) from None
        if not reply.get("ok", False):
            raise PushFailed(f"Telegram refused: {reply.get('description', reply)}",
                             permanent=True)


def configured_adapters(config: Settings | None = None) -> dict[str, PushAdapter]:
    """The adapters the settings make: Telegram with a bot token. Mobile and browser have
    none yet; their rows fail with that reason."""
    config = config or settings()
    adapters: dict[str, PushAdapter] = {}
    if config.telegram_bot_token:
        adapters["telegram"] = TelegramAdapter(config.telegram_api_url,
                                               config.telegram_bot_token,
                                               config.push_timeout_seconds)
    return adapters


@lru_cache(maxsize=4)
def _waker(window: float) -> dispatch.Debounced:
    return dispatch.Debounced(PUSH_TASK, window)


def wake_pusher() -> None:
    """Wake a push send task (at most one wake-up per window per process)."""
    _waker(settings().outbox_dispatch_window_seconds)()


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
    report = PushReport()
    for row in claimed:
        push = Push(row.id, row.channel, row.identity_id, row.event, row.text,
                    row.telegram_chat_id)
        outcome = _send(push, adapters.get(push.channel), row.attempts, moment, config)
        with session_scope() as session:
            session.execute(update(PushMessage).where(
                PushMessage.id == push.id, PushMessage.claim_token == token).values(**outcome))
        {PushStatus.SENT.value: report.sent, PushStatus.DEFERRED.value: report.deferred,
         PushStatus.FAILED.value: report.failed}[outcome["status"]].append(push.id)
    return report


def _send(push: Push, adapter: PushAdapter | None, attempts: int, now: datetime,
          config: Settings) -> dict[str, Any]:
    """Hand one push to its adapter; the columns that record what became of it."""
    try:
        if adapter is None:
            raise PushFailed(f"no {push.channel} adapter is configured", permanent=True)
        adapter.send(push)
    except PushFailed as failure:
        log.warning("push %s on %s: %s", push.id, push.channel, failure)
        if failure.permanent or attempts >= config.push_max_attempts:
            return {"status": PushStatus.FAILED.value, "last_error": str(failure)}
        return {"status": PushStatus.DEFERRED.value, "last_error": str(failure),
                "next_attempt_at": now + timedelta(seconds=retry_delay(attempts, config))}
    return {"status": PushStatus.SENT.value, "sent_at": now, "last_error": None}


def retry_delay(attempts: int, config: Settings) -> float:
    """Exponential backoff with jitter, never beyond the configured ceiling."""
    ceiling = min(config.push_retry_max_seconds,
                  config.push_retry_base_seconds * 2 ** max(attempts - 1, 0))
    return random.uniform(ceiling / 2, max(ceiling, 0.001))
