"""What a person keeps in their own profile: a pending email change and a photo."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from provisioning.core.db import Base
from provisioning.core.models import Id, UTCDateTime, utcnow


class EmailChange(Base):
    """A change of login email waiting for its confirmation link (one per identity).

    Like an invitation's, the link's token is derived from the nonce with the secret key;
    only the nonce and the token's hash are kept."""

    __tablename__ = "email_changes"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    identity_id: Mapped[int] = mapped_column(
        ForeignKey("identities.id", ondelete="CASCADE"), unique=True)
    new_email: Mapped[str] = mapped_column(String(320))
    token_nonce: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProfilePhoto(Base):
    """One size of an identity's photo, re-encoded: any web process serves it."""

    __tablename__ = "profile_photos"

    identity_id: Mapped[int] = mapped_column(
        ForeignKey("identities.id", ondelete="CASCADE"), primary_key=True)
    size: Mapped[int] = mapped_column(Integer, primary_key=True)  # pixels a side
    media_type: Mapped[str] = mapped_column(String(32))
    etag: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
