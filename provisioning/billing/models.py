"""Subscriptions and billing events."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from provisioning.core.db import Base
from provisioning.core.models import Id, JSONType, StrEnum, UTCDateTime, utcnow


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_recalc_due", "recalc_due_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), unique=True
    )
    plan: Mapped[str] = mapped_column(String(32))
    period: Mapped[str] = mapped_column(String(16), default="monthly")
    seats_purchased: Mapped[int] = mapped_column(Integer)
    # Seats held by full members (invited or active): see provisioning.seats.
    full_seats_taken: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_seats: Mapped[int | None] = mapped_column(Integer)  # a contract's cap, if any
    current_period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    current_period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    trial_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    currency: Mapped[str] = mapped_column(String(3), default="USD", server_default="USD")
    # Lowering seats and downgrading wait for the next period (R8); the renewal applies them.
    pending_seats: Mapped[int | None] = mapped_column(Integer)
    pending_plan: Mapped[str | None] = mapped_column(String(32))
    # A membership change marks the account due; the recalculation claims it once due
    # (debounced: a burst of changes makes one recalculation).
    recalc_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recalculated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recalculations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class BillingEvent(Base):
    """What happened to an account's bill; other parts (emails, webhooks) read these rows.

    Events of the recalculation carry the period (or trial) they belong to in
    ``period_start``: the unique key makes one event per account, kind and period however
    often and on however many workers it runs. Seat purchases leave it empty (one a
    purchase)."""

    __tablename__ = "billing_events"
    __table_args__ = (Index("ix_billing_events_account", "account_id", "created_at"),
                      UniqueConstraint("account_id", "kind", "period_start",
                                       name="uq_billing_events_period"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # No foreign key: the record of what was charged outlives the account, as invoices do.
    account_id: Mapped[int] = mapped_column(Id)
    kind: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SeatSnapshot(Base):
    """An account's seats as the recalculation counted them, one row a day (the last count).
    Kept, like the events, when the account is deleted."""

    __tablename__ = "seat_snapshots"

    # Keyed by day first: a day's run finds its rows in one range, and appends at the end.
    taken_on: Mapped[date] = mapped_column(Date, primary_key=True)
    account_id: Mapped[int] = mapped_column(Id, primary_key=True)
    purchased: Mapped[int] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(Integer)
    seasonal_used: Mapped[int] = mapped_column(Integer)
    free_members: Mapped[int] = mapped_column(Integer)
    unused: Mapped[int] = mapped_column(Integer)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BillingAnnouncement(Base):
    """A billing event once announced: its emails queued and its webhook, if any. The key
    makes each event announced once, however many announcers run at once."""

    __tablename__ = "billing_announcements"

    event_id: Mapped[int] = mapped_column(
        ForeignKey("billing_events.id", ondelete="CASCADE"), primary_key=True)
    announced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    FAILED = "failed"


class BillingWebhook(Base):
    """One billing event to POST to the billing webhook: claimed under a lease, retried,
    delivered once."""

    __tablename__ = "billing_webhooks"
    __table_args__ = (Index("ix_billing_webhooks_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("billing_events.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=WebhookStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
