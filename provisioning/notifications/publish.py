"""The one way a domain event becomes a notification: ``notify``.

In the caller's transaction it writes the in-app entry, queues the instant email in the
outbox or leaves the entry for the person's digest, and queues one push message per push
channel that is on; workers send them once the transaction commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from provisioning.accounts.models import Account
from provisioning.core.config import settings
from provisioning.core.db import after_commit
from provisioning.core.models import utcnow
from provisioning.core.validation import LANGUAGES
from provisioning.mail.outbox import queue_email
from provisioning.mail.templates import render_email
from provisioning.members.models import Identity, Membership
from provisioning.notifications import catalog
from provisioning.notifications.models import Notification, NotificationSettings, PushMessage
from provisioning.notifications.preferences import preferences_of
from provisioning.notifications.push import wake_pusher

EMAIL_TEMPLATE = "notification"


def notify(session: Session, identity_id: int | None, event: str, details: dict[str, Any], *,
           account_id: int | None = None, now: datetime | None = None) -> int | None:
    """Tell a person that ``event`` happened; returns the entry's id, or None when the
    person's settings ask for none (notifications off, the event off, only email on).

    ``details`` are what the event's sentence names (``catalog.EVENTS``); an event in an
    account gets ``account_name`` from it. ``now`` is the clock (tests pass their own).
    """
    if event not in catalog.EVENTS:
        raise ValueError(f"unknown notification event {event!r}; see catalog.EVENTS")
    if identity_id is None:
        return None
    row = session.execute(
        select(Identity, NotificationSettings)
        .outerjoin(NotificationSettings, NotificationSettings.identity_id == Identity.id)
        .where(Identity.id == identity_id)).first()
    if row is None:
        return None
    identity, stored = row
    wanted = preferences_of(stored)
    if not wanted.wants(event):
        return None
    details = dict(details)
    if account_id is not None and "account_name" in catalog.EVENTS[event]:
        details.setdefault("account_name", session.get_one(Account, account_id).name)
    missing = catalog.missing_details(event, details)
    if missing:
        raise ValueError(f"{event} needs {', '.join(missing)}")
    channels = wanted.channels
    instant_email = channels["email"] and not wanted.digest_on
    pushes = [channel for channel in catalog.PUSH_CHANNELS if channels[channel]]
    language = language_of(session, identity, account_id)
    context = {"event": event, "details": details, "recipient_name": identity.name or "",
               "product_name": settings().product_name, "app_url": settings().public_url}
    text = render_email(EMAIL_TEMPLATE, language, context).subject
    moment = now or utcnow()
    entry_id = None
    if channels["in_app"] or wanted.digest_on or pushes:  # an email alone needs no entry
        entry_id = session.execute(insert(Notification).values(
            identity_id=identity.id, account_id=account_id, event=event, text=text,
            details=details, in_app=channels["in_app"], digest_pending=wanted.digest_on,
            created_at=moment).returning(Notification.id)).scalar_one()
    if instant_email:
        queue_email(session, account_id=account_id, recipient=identity.email,
                    recipient_name=identity.name or None,
                    template=catalog.EMAIL_TEMPLATES.get(event, EMAIL_TEMPLATE),
                    language=language, context=context)
    if pushes:
        session.execute(insert(PushMessage), [
            {"notification_id": entry_id, "channel": channel, "status": "queued",
             "attempts": 0, "next_attempt_at": moment, "created_at": moment}
            for channel in pushes])
        after_commit(session, wake_pusher)
    return entry_id


def language_of(session: Session, identity: Identity, account_id: int | None) -> str:
    """The person's language (R11): their own, else their membership's in the account."""
    if identity.language in LANGUAGES:
        return identity.language
    if account_id is not None:
        chosen = session.scalar(select(Membership.language).where(
            Membership.identity_id == identity.id, Membership.account_id == account_id))
        if chosen in LANGUAGES:
            return str(chosen)
    return settings().default_language
