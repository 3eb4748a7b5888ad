"""Identities, memberships and invitations."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

from provisioning.accounts.models import Group, Role  # Membership.role and .group
from provisioning.core.db import Base
from provisioning.core.models import Id, StrEnum, UTCDateTime, utcnow


class UserType(StrEnum):
    FULL = "full"
    FREE = "free"
    SEASONAL = "seasonal"


class MemberStatus(StrEnum):
    INVITED = "invited"
    ACTIVE = "active"
    INACTIVE = "inactive"


class InactiveReason(StrEnum):
    """Why an inactive member is inactive: only the season's schedule undoes its own."""

    DISABLED = "disabled"  # by an admin (or a bulk action): stays until an admin activates
    SEASON = "season"  # outside a seasonal member's window: the schedule activates it


# Folded search keys sort byte by byte on PostgreSQL too, so a prefix is an index range.
def search_key(length: int) -> TypeEngine[str]:
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class Identity(Base):
    """One person's login, global across accounts; outlives memberships."""

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(40))
    language: Mapped[str | None] = mapped_column(String(8))
    time_zone: Mapped[str | None] = mapped_column(String(64))
    # Sealed with a key derived from the secret key (access.codes), never in clear.
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Membership(Base):
    """A "user" of an account: one identity's place in one workspace."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("account_id", "identity_id"),
        Index("ix_memberships_identity", "identity_id"),
        # The seat count (R7) on every new member reads only this index.
        Index("ix_memberships_seats", "account_id", "user_type", "status", "seasonal_start",
              "seasonal_end"),
        # The member list walks an account in id order (keyset pages) and finds a search's
        # prefix in the folded keys (members.search); byte order, so a prefix is a range.
        Index("ix_memberships_list", "account_id", "id"),
        Index("ix_memberships_search_name", "account_id", "search_name"),
        Index("ix_memberships_search_surname", "account_id", "search_surname"),
        Index("ix_memberships_search_email", "account_id", "search_email"),
        # The seasonal schedule finds who crosses a window's edge without reading an account.
        Index("ix_memberships_season", "user_type", "status", "seasonal_start", "seasonal_end"),
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
    # Session tokens issued up to this moment are refused in this account (set by a disable;
    # an activation leaves it, so the member logs in again).
    sessions_valid_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    inactive_reason: Mapped[str | None] = mapped_column(String(16))
    # What the member list's search reads (members.search.search_keys): the name the account
    # sees, that name from its second word, and the email, each folded.
    search_name: Mapped[str] = mapped_column(search_key(200), default="",
                                             server_default="")
    search_surname: Mapped[str] = mapped_column(search_key(200), default="",
                                                server_default="")
    search_email: Mapped[str] = mapped_column(search_key(320), default="",
                                              server_default="")

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
    # The invitee already had a login when invited: which email went out. Accepting asks
    # for a login if the identity has one when the invitation is accepted.
    existing_identity: Mapped[bool] = mapped_column(Boolean, default=False)
    # What this account's admin wrote: the name it knows the invitee by until they join, and
    # a password it chose (hashed), which becomes the login's only if this one is accepted.
    name: Mapped[str | None] = mapped_column(String(200))
    initial_password_hash: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sends: Mapped[int] = mapped_column(Integer, default=0)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resend_window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resends_in_window: Mapped[int] = mapped_column(Integer, default=0)
    last_email_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Reassignment(Base):
    """What a reassignment job moves: one member's records, to a target per kind, and whether
    the member is removed once nothing points at them (R6). Targets and the member carry no
    foreign key: the job checks them in every chunk, and a removal deletes the member."""

    __tablename__ = "reassignments"
    __table_args__ = (Index("ix_reassignments_member", "member_id"),)

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(Id)
    removes: Mapped[bool] = mapped_column(Boolean, default=False)
    leads_to: Mapped[int | None] = mapped_column(Id)
    contacts_to: Mapped[int | None] = mapped_column(Id)
    customers_to: Mapped[int | None] = mapped_column(Id)
    tasks_to: Mapped[int | None] = mapped_column(Id)
