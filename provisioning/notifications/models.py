"""Notification settings, in-app entries, the day's digests and the push outbox."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from provisioning.core.db import Base
from provisioning.core.models import Id, JSONType, StrEnum, UTCDateTime, utcnow
from provisioning.notifications import catalog


class NotificationSettings(Base):
    """One person's notification settings; a person without a row has the defaults."""

    __tablename__ = "notification_settings"
    __table_args__ = (
        # The digest run reads, per time zone, the people whose digest time has passed.
        Index("ix_notification_settings_digest", "time_zone", "digest_time",
              postgresql_where=text("email_mode = 'digest'"),
              sqlite_where=text("email_mode = 'digest'")),
    )

    identity_id: Mapped[int] = mapped_column(
        ForeignKey("identities.id", ondelete="CASCADE"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=catalog.DEFAULT_ENABLED)
    channel_in_app: Mapped[bool] = mapped_column(Boolean, default=True)
    channel_email: Mapped[bool] = mapped_column(Boolean, default=True)
    channel_mobile: Mapped[bool] = mapped_column(Boolean, default=False)
    channel_browser: Mapped[bool] = mapped_column(Boolean, default=False)
    channel_telegram: Mapped[bool] = mapped_column(Boolean, default=False)
    # Only the events the person set; an event added to the catalog later starts on.
    events: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    email_mode: Mapped[str] = mapped_column(String(16), default=catalog.DEFAULT_EMAIL_MODE)
    # "HH:MM", zero-padded: compared as text with the local time of day
    digest_time: Mapped[str] = mapped_column(String(5), default=catalog.DEFAULT_DIGEST_TIME)
    time_zone: Mapped[str] = mapped_column(String(64), default=catalog.DEFAULT_TIME_ZONE)
    telegram_chat_id: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Notification(Base):
    """Something a person was told: an inbox entry (when in-app is on) and, in digest mode,
    a line of the next digest."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_inbox", "identity_id", "id"),
        Index("ix_notifications_created", "created_at"),  # the retention purge
        Index("ix_notifications_digest_pending", "identity_id", "created_at",
              postgresql_where=text("digest_pending"), sqlite_where=text("digest_pending")),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"))
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"))
    event: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(Text)  # in the person's language when it happened
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    in_app: Mapped[bool] = mapped_column(Boolean, default=True)
    digest_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class NotificationDigest(Base):
    """The one digest of a person's local day: its unique key is what makes it one."""

    __tablename__ = "notification_digests"
    __table_args__ = (
        UniqueConstraint("identity_id", "local_date"),
        Index("ix_notification_digests_date", "local_date"),  # the retention purge
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"))
    local_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PushStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    DEFERRED = "deferred"
    SENT = "sent"
    FAILED = "failed"


class PushMessage(Base):
    """One notification on one push channel: claimed, sent and marked like an email."""

    __tablename__ = "push_outbox"
    __table_args__ = (
        UniqueConstraint("notification_id", "channel"),
        Index("ix_push_outbox_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    notification_id: Mapped[int] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=PushStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PushDevice(Base):
    """Where a person's mobile or browser notifications go: a phone's push token, or a
    browser's Web Push subscription (its endpoint, and its keys sealed at rest)."""

    __tablename__ = "push_devices"
    __table_args__ = (UniqueConstraint("identity_id", "channel", "address"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))  # mobile | browser
    platform: Mapped[str] = mapped_column(String(16))  # ios | android | web
    address: Mapped[str] = mapped_column(String(1024))  # the token, or the endpoint URL
    sealed_keys: Mapped[str | None] = mapped_column(Text)  # browser: p256dh and auth
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
