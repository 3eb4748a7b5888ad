"""The schema: SQLAlchemy 2 typed models. Alembic (provisioning/migrations) owns the DDL."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship

from provisioning.db import Base


class UTCDateTime(TypeDecorator[datetime]):
    """Always hands back timezone-aware UTC datetimes, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")
Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite only auto-increments INTEGER


def utcnow() -> datetime:
    return datetime.now(UTC)


class StrEnum(enum.StrEnum):
    def __str__(self) -> str:
        return str(self.value)


class UserType(StrEnum):
    FULL = "full"
    FREE = "free"
    SEASONAL = "seasonal"


class MemberStatus(StrEnum):
    INVITED = "invited"
    ACTIVE = "active"
    INACTIVE = "inactive"


class EmailStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    DEFERRED = "deferred"
    SENT = "sent"
    FAILED = "failed"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    default_language: Mapped[str] = mapped_column(String(8), default="en")
    seasonal_seats: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    subscription: Mapped[Subscription] = relationship(back_populates="account", uselist=False)


class Identity(Base):
    """One person's login, global across accounts; outlives memberships."""

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(40))
    language: Mapped[str | None] = mapped_column(String(8))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Role(Base):
    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    permissions: Mapped[list[str]] = mapped_column(JSONType, default=list)
    is_builtin: Mapped[bool] = mapped_column(Boolean, default=False)


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    is_builtin: Mapped[bool] = mapped_column(Boolean, default=False)


class Membership(Base):
    """A "user" of an account: one identity's place in one workspace."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("account_id", "identity_id"),
        Index("ix_memberships_identity", "identity_id"),
        # The seat count (R7) on every new member reads only this index.
        Index("ix_memberships_seats", "account_id", "user_type", "status", "seasonal_start",
              "seasonal_end"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"))
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id", ondelete="SET NULL"))
    user_type: Mapped[str] = mapped_column(String(16), default=UserType.FULL.value)
    status: Mapped[str] = mapped_column(String(16), default=MemberStatus.INVITED.value)
    language: Mapped[str] = mapped_column(String(8), default="en")
    seasonal_start: Mapped[date | None] = mapped_column(Date)
    seasonal_end: Mapped[date | None] = mapped_column(Date)
    note: Mapped[str | None] = mapped_column(Text)
    # who invited: a record of the past, no foreign key (a check per imported row)
    invited_by_id: Mapped[int | None] = mapped_column(Id)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    identity: Mapped[Identity] = relationship(foreign_keys=[identity_id], lazy="joined")
    role: Mapped[Role] = relationship(lazy="joined")
    group: Mapped[Group | None] = relationship(lazy="joined")


class Invitation(Base):
    """The invitation of one membership; the token is never stored, only its hash."""

    __tablename__ = "invitations"
    __table_args__ = (Index("ix_invitations_open", "accepted_at", "revoked_at", "expires_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    membership_id: Mapped[int | None] = mapped_column(
        ForeignKey("memberships.id", ondelete="SET NULL"), unique=True
    )
    email: Mapped[str] = mapped_column(String(320))
    token_nonce: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # who invited: a record of the past, no foreign key (a check per imported row)
    invited_by_id: Mapped[int | None] = mapped_column(Id)
    # The invitee already had a login when invited: accepting needs that login.
    existing_identity: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sends: Mapped[int] = mapped_column(Integer, default=0)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resend_window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resends_in_window: Mapped[int] = mapped_column(Integer, default=0)
    last_email_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    """Bearer credentials: login sessions and account API keys, stored hashed."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # "session" | "api_key"
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutboxEmail(Base):
    """One email to send. The row is the truth; the broker only carries its id."""

    __tablename__ = "outbox_emails"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL")
    )
    recipient: Mapped[str] = mapped_column(String(320))
    recipient_name: Mapped[str | None] = mapped_column(String(200))
    template: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    context: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=EmailStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_response: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    """Slow work a worker does for an account; the row is the truth, the broker only its id."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status", "status", "heartbeat_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    total: Mapped[int | None] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    checkpoint: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Renewed at every checkpoint: a running job whose heartbeat stops is resumed.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobFile(Base):
    """An uploaded file, normalised to UTF-8, in parts: every worker machine can read it."""

    __tablename__ = "job_files"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ImportRow(Base):
    """A checked row of an import file: the snapshot a dry run shows and a commit applies."""

    __tablename__ = "import_rows"
    # First wins: a second row with the same email cannot be staged.
    __table_args__ = (UniqueConstraint("job_id", "email", name="uq_import_rows_email"),)

    # The job's scratch, purged with it (jobs.purge): no foreign key checked per staged row.
    job_id: Mapped[int] = mapped_column(Id, primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(100))
    group: Mapped[str | None] = mapped_column(String(100))
    user_type: Mapped[str] = mapped_column(String(16))
    language: Mapped[str | None] = mapped_column(String(8))
    phone: Mapped[str | None] = mapped_column(String(40))
    seasonal_start: Mapped[date | None] = mapped_column(Date)
    seasonal_end: Mapped[date | None] = mapped_column(Date)
    outcome: Mapped[str | None] = mapped_column(String(16))  # create|update|unchanged|error
    # A new member's existing identity, as planned (the part's writer checks it again).
    identity_id: Mapped[int | None] = mapped_column(BigInteger)


class ImportPart(Base):
    """A planned chunk of an import whose new members a worker still has to write.

    The planner decides every row in file order (first wins, seats in order) and
    leaves the writing of each chunk's new members to whichever worker takes the
    part first; the job is done when no part is left unwritten.
    """

    __tablename__ = "import_parts"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_line: Mapped[int] = mapped_column(Integer)
    last_line: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)  # new members planned
    seats: Mapped[int] = mapped_column(Integer)  # seats they take, held until written
    written_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    written_by: Mapped[str | None] = mapped_column(String(100))  # host:pid of the worker
    # What writing it did (created, skipped, failed, invitations, seats_added). The job's
    # summary adds these up when read, so a writer never waits for the job row.
    counts: Mapped[dict[str, int] | None] = mapped_column(JSONType)


class JobError(Base):
    """One problem with one row (or the file): a line of the error report."""

    __tablename__ = "job_errors"
    __table_args__ = (Index("ix_job_errors_job", "job_id", "line"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    line: Mapped[int | None] = mapped_column(Integer)
    column: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[str | None] = mapped_column(Text)
    # "check": found reading the file (a commit of a dry run keeps these);
    # "apply": found against the database (a commit checks again).
    stage: Mapped[str] = mapped_column(String(8), default="check")


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_account", "account_id", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int | None] = mapped_column(BigInteger)  # kept after the account goes
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_label: Mapped[str] = mapped_column(String(320), default="")
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Subscription(Base):
    __tablename__ = "subscriptions"

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

    account: Mapped[Account] = relationship(back_populates="subscription")


class BillingEvent(Base):
    __tablename__ = "billing_events"
    __table_args__ = (Index("ix_billing_events_account", "account_id", "created_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
