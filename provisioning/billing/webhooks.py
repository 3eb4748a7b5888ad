"""The billing webhook: every billing event POSTed as signed JSON to the operator's billing
system, from an outbox of its own (``billing_webhooks``).

A send task claims due rows under a lease (a claim token and ``claimed_until``, SKIP
LOCKED on PostgreSQL), POSTs each and marks the outcome under its claim: delivered after a
2xx, else deferred with exponential backoff until ``billing_webhook_max_attempts``, then
failed. Every non-2xx answer is retried, 4xx included: a receiver that refuses is most
often one being deployed or holding an old secret, and a dropped billing event is lost
money. A worker killed mid-delivery leaves its claim to lapse and another takes the row
over; the only repeat left is a worker killed between the receiver's 2xx and the mark, so
receivers keep ``Provisioner-Event-Id`` to ignore a second delivery
(docs/billing-webhooks.md).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from provisioning.billing.models import BillingEvent, BillingWebhook, WebhookStatus
from provisioning.core import dispatch
from provisioning.core.config import Settings, settings
from provisioning.core.db import delete_in_chunks, session_scope
from provisioning.core.models import utcnow

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "Provisioner-Signature"
EVENT_ID_HEADER = "Provisioner-Event-Id"
SIGNATURE_SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Provisioner-Signature`` header of ``body`` sent at ``timestamp`` (Unix seconds):
    ``t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed by the secret>``."""
    return f"t={timestamp},{SIGNATURE_SCHEME}={_digest(secret, body, timestamp)}"


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, header: str | None, body: bytes,
                     tolerance: float = DEFAULT_TOLERANCE_SECONDS, *,
                     now: float | None = None) -> bool:
    """For receivers: whether ``header`` (the ``Provisioner-Signature`` value) signs ``body``
    (the raw request bytes, before any JSON parsing) with ``secret``, at a time within
    ``tolerance`` seconds of ``now`` (replays of an old delivery fail). Any ``v1`` entry may
    match (several during a change of secret)."""
    if not header:
        return False
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == SIGNATURE_SCHEME and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = _digest(secret, body, timestamp)
    return any(hmac.compare_digest(expected, given) for given in signatures)


def webhook_body(event_id: int, kind: str, account_id: int, created_at: datetime,
                 details: dict[str, Any]) -> bytes:
    """What is POSTed for one billing event: the same bytes at every attempt."""
    return json.dumps({"id": event_id, "type": kind, "account_id": account_id,
                       "created_at": created_at.isoformat(), "data": details},
                      separators=(",", ":"), sort_keys=True).encode()


class WebhookRefused(Exception):
    """The receiver did not answer 2xx, or could not be reached."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would follow a 301/302 to a POST with a GET and count the GET's 200 as delivered.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)
Post = Callable[[str, bytes, dict[str, str], float], None]


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    """POST ``body``; raises ``WebhookRefused`` unless the receiver answers 2xx."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            status = answer.status
    except urllib.error.HTTPError as refused:
        raise WebhookRefused(f"the receiver answered {refused.code}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError,
            ValueError) as unreachable:
        reason = getattr(unreachable, "reason", None) or repr(unreachable)
        raise WebhookRefused(f"the receiver is unreachable: {reason}") from None
    if not 200 <= status < 300:
        raise WebhookRefused(f"the receiver answered {status}")


@dataclass
class WebhookReport:
    delivered: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    next_due: datetime | None = None  # the earliest retry this run scheduled


def _claimable(now: datetime) -> Any:
    return or_(
        and_(BillingWebhook.status.in_((WebhookStatus.QUEUED.value,
                                        WebhookStatus.DEFERRED.value)),
             BillingWebhook.next_attempt_at <= now),
        # claimed by a worker that died mid-delivery: its lease ran out
        and_(BillingWebhook.status == WebhookStatus.SENDING.value,
             BillingWebhook.claimed_until < now))


def deliver_webhooks(*, now: Callable[[], datetime] = utcnow, send: Post = post
                     ) -> WebhookReport:
    """Claim the due billing webhooks, POST each signed, mark each under its claim.

    ``now`` is the clock and ``send`` the HTTP POST (tests pass their own).
    """
    config = settings()
    report = WebhookReport()
    if not config.billing_webhook_url or not config.billing_webhook_secret:
        return report
    token = secrets.token_hex(8)
    moment = now()
    with session_scope() as session:
        wanted = list(session.scalars(
            select(BillingWebhook.id).where(_claimable(moment))
            .order_by(BillingWebhook.next_attempt_at).limit(config.billing_webhook_batch_size)
            .with_for_update(skip_locked=True)))
        if not wanted:
            return report
        session.execute(update(BillingWebhook).where(
            BillingWebhook.id.in_(wanted), _claimable(moment)).values(
            status=WebhookStatus.SENDING.value, claim_token=token,
            claimed_until=moment + timedelta(seconds=config.billing_webhook_lease_seconds),
            attempts=BillingWebhook.attempts + 1))
        claimed = session.execute(
            select(BillingWebhook.id, BillingWebhook.attempts, BillingEvent.id.label("event_id"),
                   BillingEvent.kind, BillingEvent.account_id, BillingEvent.created_at,
                   BillingEvent.details)
            .join(BillingEvent, BillingEvent.id == BillingWebhook.event_id)
            .where(BillingWebhook.claim_token == token).order_by(BillingWebhook.id)).all()
    for row in claimed:
        if not _renew_lease(row.id, token, now(), config):
            continue  # the claim lapsed while earlier rows were sent; another worker has it
        body = webhook_body(row.event_id, row.kind, row.account_id, row.created_at,
                            row.details or {})
        outcome = _attempt(body, row.event_id, row.attempts, config, now, send)
        with session_scope() as session:
            marked = session.execute(update(BillingWebhook).where(
                BillingWebhook.id == row.id, BillingWebhook.claim_token == token)
                .values(claim_token=None, claimed_until=None, **outcome))
        if not marked.rowcount:  # type: ignore[attr-defined]
            continue
        {WebhookStatus.DELIVERED.value: report.delivered,
         WebhookStatus.DEFERRED.value: report.deferred,
         WebhookStatus.FAILED.value: report.failed}[outcome["status"]].append(row.event_id)
        due = outcome.get("next_attempt_at")
        if due is not None and (report.next_due is None or due < report.next_due):
            report.next_due = due
    return report


def _renew_lease(webhook_id: int, token: str, moment: datetime, config: Settings) -> bool:
    """Hold the claim for a whole lease from now, just before the POST: a batch of slow
    receivers never outlives the lease of its last row."""
    with session_scope() as session:
        renewed = session.execute(update(BillingWebhook).where(
            BillingWebhook.id == webhook_id, BillingWebhook.claim_token == token,
            BillingWebhook.status == WebhookStatus.SENDING.value).values(
            claimed_until=moment + timedelta(seconds=config.billing_webhook_lease_seconds)))
        return bool(renewed.rowcount)  # type: ignore[attr-defined]


def _attempt(body: bytes, event_id: int, attempts: int, config: Settings,
             now: Callable[[], datetime], send: Post) -> dict[str, Any]:
    """POST one webhook; the columns that record what became of it."""
    assert config.billing_webhook_url and config.billing_webhook_secret
    headers = {"Content-Type": "application/json", "User-Agent": "Provisioner-Webhooks/1",
               EVENT_ID_HEADER: str(event_id),
               SIGNATURE_HEADER: sign(config.billing_webhook_secret, body,
                                      int(now().timestamp()))}
    try:
        send(config.billing_webhook_url, body, headers, config.billing_webhook_timeout_seconds)
    except WebhookRefused as refused:
        moment = now()
        if attempts >= config.billing_webhook_max_attempts:
            log.warning("billing webhook for event %s failed after %s attempts: %s",
                        event_id, attempts, refused)
            return {"status": WebhookStatus.FAILED.value, "last_error": str(refused)}
        log.info("billing webhook for event %s deferred (attempt %s): %s",
                 event_id, attempts, refused)
        return {"status": WebhookStatus.DEFERRED.value, "last_error": str(refused),
                "next_attempt_at": moment + timedelta(seconds=dispatch.backoff_seconds(
                    attempts, config.billing_webhook_retry_base_seconds,
                    config.billing_webhook_retry_max_seconds))}
    return {"status": WebhookStatus.DELIVERED.value, "delivered_at": now(), "last_error": None}


def retry_failed(*, since: datetime | None = None) -> int:
    """Queue again the webhooks that failed for good (their receiver is fixed): each goes
    once more, with a fresh count of attempts; ``since`` keeps to events written after it.
    Returns how many were queued."""
    failed = select(BillingWebhook.id).where(
        BillingWebhook.status == WebhookStatus.FAILED.value)
    if since is not None:
        failed = failed.where(BillingWebhook.event_id.in_(
            select(BillingEvent.id).where(BillingEvent.created_at >= since)))
    with session_scope() as session:
        queued = session.execute(
            update(BillingWebhook).where(BillingWebhook.id.in_(failed.scalar_subquery()),
                                         BillingWebhook.status == WebhookStatus.FAILED.value)
            .values(status=WebhookStatus.QUEUED.value, attempts=0, next_attempt_at=utcnow(),
                    claim_token=None, claimed_until=None),
            execution_options={"synchronize_session": False})
        return int(getattr(queued, "rowcount", 0) or 0)


def earliest_due() -> datetime | None:
    """When the next queued or deferred webhook comes due (None: none waits)."""
    with session_scope() as session:
        return session.scalar(select(func.min(BillingWebhook.next_attempt_at)).where(
            BillingWebhook.status.in_((WebhookStatus.QUEUED.value,
                                       WebhookStatus.DEFERRED.value))))


def purge(*, chunk: int = 5_000) -> int:
    """Forget delivered and failed webhooks after ``outbox_retention_days``; returns how
    many. The announcement stays, so a purged event is never announced again."""
    cutoff = utcnow() - timedelta(days=settings().outbox_retention_days)
    old = select(BillingWebhook.id).where(
        or_(and_(BillingWebhook.status == WebhookStatus.DELIVERED.value,
                 BillingWebhook.delivered_at < cutoff),
            and_(BillingWebhook.status == WebhookStatus.FAILED.value,
                 BillingWebhook.next_attempt_at < cutoff)))
    return delete_in_chunks(BillingWebhook, old, chunk)
