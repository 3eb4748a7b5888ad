"""Bearer credentials and rate-limit counts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from provisioning.core.db import Base
from provisioning.core.models import Id, UTCDateTime, utcnow


class ApiToken(Base):
    """Bearer credentials: login sessions and account API keys, stored hashed."""

    __tablename__ = "api_tokens"
    # A disable ends one identity's sessions and keys (access.auth.end_sessions).
    __table_args__ = (Index("ix_api_tokens_identity", "identity_id", "kind"),)

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


class LimitHit(Base):
    """One counted attempt of a rate limit (``access.limits``) on the database store."""

    __tablename__ = "limit_hits"
    __table_args__ = (Index("ix_limit_hits_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))  # a keyed hash, never the value itself
    at: Mapped[float] = mapped_column(Float)  # seconds since the epoch


class RecoveryCode(Base):
    """One of an identity's two-factor recovery codes (R13), as a keyed hash; used once."""

    __tablename__ = "recovery_codes"
    __table_args__ = (Index("ix_recovery_codes_identity", "identity_id", "code_hash"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
