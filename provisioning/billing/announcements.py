"""Announcing billing events: whoever wrote a ``billing_events`` row, its account's admins
get the email it calls for and the billing webhook gets it, once.

Announcing is set-based: one INSERT … SELECT claims every event not yet announced
(``billing_announcements``, keyed by the event), and the same transaction queues the
admins' emails and the webhook rows of the events it claimed. Two announcers at once both
try to insert the same keys; the database lets one have each event (ON CONFLICT DO
NOTHING), so an email goes to each admin once per event. A write of an event wakes an
announcer after its commit; beat announces whatever a lost wake-up left behind.

Seat purchases wait until their account has bought none for
``PROVISIONING_BILLING_SEATS_QUIET_SECONDS`` and are then told in one email (their webhook
rows go at the same time, one per event): an import buys seats chunk by chunk, and its
admins should read of it once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, event, exists, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from provisioning.access.policy import Permission, granted
from provisioning.accounts.models import Account, Role
from provisioning.billing.models import (
    BillingAnnouncement,
    BillingEvent,
    BillingWebhook,
    WebhookStatus,
)
from provisioning.core import dispatch
from provisioning.core.config import Settings, settings
from provisioning.core.db import after_commit, session_scope
from provisioning.core.models import utcnow
from provisioning.mail.outbox import Email, queue_emails
from provisioning.members.models import Identity, Membership, MemberStatus

log = logging.getLogger(__name__)
ANNOUNCE_TASK = "provisioning.announce_billing_events"
WEBHOOK_TASK = "provisioning.send_billing_webhooks"
# The email each kind of event sends to the account's admins; other kinds only go to the
# webhook.
SEATS_ADDED = "seats_added"
EMAILS = {SEATS_ADDED: "seats_increased", "trial_ending": "trial_ending",
          "seats_unused": "seats_unused"}
# Plan prices are in US dollars (SPEC §7); an event may name another currency in its details.
DEFAULT_CURRENCY = "USD"
BILLING_PATH = "/settings/billing"  # the console's billing page, where a plan is chosen
EVENTS = cast(Table, BillingEvent.__table__)


@dataclass(frozen=True)
class Announced:
    """What one announcing run did."""

    events: int
    emails: int
    webhooks: int


def announce_billing_events(*, limit: int = 1_000) -> Announced:
    """Announce every billing event no run announced yet, ``limit`` per transaction; the
    webhook sender is woken once a transaction that queued webhooks commits."""
    events = emails = webhooks = 0
    while True:
        with session_scope() as session:
            announced = announce(session, limit=limit)
            if announced.webhooks:
                after_commit(session, wake_webhook_sender)
        events, emails = events + announced.events, emails + announced.emails
        webhooks += announced.webhooks
        if announced.events < limit:
            return Announced(events, emails, webhooks)


def announce(session: Session, *, limit: int = 1_000) -> Announced:
    """Claim the events not yet announced and queue their emails and webhooks (see module)."""
    config = settings()
    connection = session.connection()
    now = utcnow()
    # An account's seat purchases wait until it has bought none for the quiet period, then
    # go together: one "seats increased" email for a whole import, not one per chunk.
    newer = EVENTS.alias("newer")
    buying = exists().where(
        newer.c.account_id == EVENTS.c.account_id, newer.c.kind == SEATS_ADDED,
        newer.c.created_at > now - timedelta(seconds=config.billing_seats_quiet_seconds))
    unannounced = (
        select(EVENTS.c.id, literal(now, BillingAnnouncement.announced_at.type))
        .where(~exists().where(BillingAnnouncement.event_id == EVENTS.c.id),
               or_(EVENTS.c.kind != SEATS_ADDED, ~buying))
        .order_by(EVENTS.c.id).limit(limit))
    claimed = list(connection.execute(
        _insert(connection, BillingAnnouncement)
        .from_select(["event_id", "announced_at"], unannounced)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(BillingAnnouncement.event_id)).scalars())
    if not claimed:
        return Announced(0, 0, 0)
    events = connection.execute(
        select(EVENTS.c.id, EVENTS.c.account_id, EVENTS.c.kind, EVENTS.c.quantity,
               EVENTS.c.details, EVENTS.c.created_at)
        .where(EVENTS.c.id.in_(claimed)).order_by(EVENTS.c.id)).all()
    emails = _emails(connection, [row for row in events if row.kind in EMAILS], config, now)
    if emails:
        queue_emails(session, emails)
    webhooks = 0
    if config.billing_webhook_url:
        connection.execute(_insert(connection, BillingWebhook).values([
            {"event_id": event_id, "status": WebhookStatus.QUEUED.value, "attempts": 0,
             "next_attempt_at": now, "created_at": now} for event_id in claimed
        ]).on_conflict_do_nothing(index_elements=["event_id"]))
        webhooks = len(claimed)
    return Announced(len(claimed), len(emails), webhooks)


def _insert(connection: Connection, model: type[Any]) -> Any:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(model)


@dataclass(frozen=True)
class Admin:
    """Who is told of an account's billing: an active member whose role manages users."""

    email: str
    name: str
    language: str


def admins_of(connection: Connection, account_ids: Sequence[int], config: Settings
              ) -> dict[int, list[Admin]]:
    """Each account's active members whose role grants ``users.manage`` (R1), with the
    language each reads email in."""
    roles = connection.execute(select(Role.id, Role.permissions)
                               .where(Role.account_id.in_(account_ids))).all()
    holding = [role_id for role_id, stored in roles
               if Permission.USERS_MANAGE in granted(stored)]
    admins: dict[int, list[Admin]] = defaultdict(list)
    if not holding:
        return admins
    rows = connection.execute(
        select(Membership.account_id, Identity.email, Identity.name, Identity.language,
               Account.default_language)
        .join(Identity, Identity.id == Membership.identity_id)
        .join(Account, Account.id == Membership.account_id)
        .where(Membership.account_id.in_(account_ids), Membership.role_id.in_(holding),
               Membership.status == MemberStatus.ACTIVE.value)
        .order_by(Membership.id))
    for account_id, email, name, language, account_language in rows:
        admins[account_id].append(
            Admin(email, name or "", language or account_language or config.default_language))
    return admins


def _emails(connection: Connection, events: Sequence[Any], config: Settings, now: datetime
            ) -> list[Email]:
    if not events:
        return []
    account_ids = sorted({row.account_id for row in events})
    admins = admins_of(connection, account_ids, config)
    names = {account_id: name for account_id, name in connection.execute(
        select(Account.id, Account.name).where(Account.id.in_(account_ids)))}
    emails: list[Email] = []
    for row, said in _contexts(events, now):
        context = {"account_name": names.get(row.account_id, ""),
                   "product_name": config.product_name,
                   "billing_url": config.public_url + BILLING_PATH, **said}
        emails += [Email(account_id=row.account_id, recipient=admin.email,
                         recipient_name=admin.name or None, template=EMAILS[row.kind],
                         language=admin.language,
                         context={**context, "recipient_name": admin.name})
                   for admin in admins.get(row.account_id, [])]
    return emails


def _contexts(events: Sequence[Any], now: datetime) -> list[tuple[Any, dict[str, Any]]]:
    """What each event's email says; an account's seat purchases of this run are told once,
    the seats added and the charges summed, the total the last one reached."""
    told: list[tuple[Any, dict[str, Any]]] = []
    purchases: dict[int, dict[str, Any]] = {}  # an account's seat purchase already told
    for row in events:  # in the order written
        said = event_context(row.kind, row.quantity, row.details or {}, now=now)
        if said is None:
            # One malformed event must not hold back the others: it goes to the webhook only.
            log.warning("billing event %s (%s) lacks what its email needs or is past what it "
                        "announces; no email sent", row.id, row.kind)
            continue
        earlier = purchases.get(row.account_id) if row.kind == SEATS_ADDED else None
        if earlier is not None:
            earlier.update(seats_added=earlier["seats_added"] + said["seats_added"],
                           charge_cents=earlier["charge_cents"] + said["charge_cents"],
                           seats_total=said["seats_total"])
            continue
        if row.kind == SEATS_ADDED:
            purchases[row.account_id] = said
        told.append((row, said))
    return told


def event_context(kind: str, quantity: int, details: dict[str, Any], *, now: datetime
                  ) -> dict[str, Any] | None:
    """What an event's email says, from the event's details, as of ``now`` (money stays in
    cents: the template formats it in the reader's language); None if the details cannot
    say it, or if it is too late to say (unused seats announced after their renewal)."""
    try:
        if kind == "seats_added":
            total = int(details["to"])
            added = quantity or total - int(details["from"])
            return {"seats_added": added, "seats_total": total,
                    "charge_cents": int(details.get("prorated_charge_cents") or 0),
                    "currency": str(details.get("currency") or DEFAULT_CURRENCY)}
        if kind == "trial_ending":
            ends_at = datetime.fromisoformat(str(details["trial_ends_at"]))
            # A recalculation that never saw the trial ending records the event once it ended.
            return {"trial_ends_at": ends_at.isoformat(), "trial_ended": ends_at <= now}
        if kind == "seats_unused":
            unused = int(details["unused"])
            renews_at = datetime.fromisoformat(str(details["renews_at"]))
            # Past the renewal the advice to lower the seats before it is wrong: webhook only.
            if unused < 1 or renews_at <= now:
                return None
            return {"unused": unused, "renews_at": renews_at.astimezone(UTC).isoformat()}
    except (KeyError, TypeError, ValueError):
        return None
    return {}


def wake_announcer() -> None:
    """Wake an announcing task (at most one wake-up per window per process)."""
    dispatch.debounced(ANNOUNCE_TASK, settings().outbox_dispatch_window_seconds)()


def wake_webhook_sender() -> None:
    """Wake a billing webhook send task (at most one wake-up per window per process)."""
    dispatch.debounced(WEBHOOK_TASK, settings().outbox_dispatch_window_seconds)()


# Whatever path writes a billing event (an ORM object or a Core insert through the session),
# an announcer hears of it once the transaction commits.
@event.listens_for(Session, "after_flush")
def _event_flushed(session: Session, _flush: UOWTransaction) -> None:
    if any(isinstance(added, BillingEvent) for added in session.new):
        after_commit(session, wake_announcer)


@event.listens_for(Session, "do_orm_execute")
def _event_inserted(state: ORMExecuteState) -> None:
    table = getattr(state.statement, "table", None)
    if state.is_insert and isinstance(table, Table) and table.name == EVENTS.name:
        after_commit(state.session, wake_announcer)
