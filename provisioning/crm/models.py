"""Records a member owns (R6): leads, contacts, customers and tasks, each with a responsible
member; conversations follow their lead; notes and messages keep their author forever.

``responsible_id`` references the membership with no ON DELETE: the database itself refuses
to remove a member while any record still points at them, so a removal completes only after
its reassignment. Authors are kept by identity and name, which outlive the membership.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from provisioning.core.db import Base
from provisioning.core.models import Id, UTCDateTime, utcnow


class OwnedRecord:
    """What every owned kind has: its account, its responsible member, its times, and the
    indexes that list a member's records (the list filter, the reassignment's chunks) and
    an account's, in id order."""

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    responsible_id: Mapped[int] = mapped_column(ForeignKey("memberships.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Index, ...]:
        table = cls.__tablename__  # type: ignore[attr-defined]
        return (Index(f"ix_{table}_responsible", "responsible_id", "id"),
                Index(f"ix_{table}_account", "account_id", "id"))


class NamedRecord(OwnedRecord):
    name: Mapped[str] = mapped_column(String(255))


class Lead(NamedRecord, Base):
    __tablename__ = "leads"


class Contact(NamedRecord, Base):
    __tablename__ = "contacts"


class Customer(NamedRecord, Base):
    __tablename__ = "customers"


class Task(OwnedRecord, Base):
    __tablename__ = "tasks"

    title: Mapped[str] = mapped_column(String(255))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Conversation(Base):
    """A chat with a lead's contact: it has no responsible of its own, it follows its lead."""

    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_lead", "lead_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(32), default="chat")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LeadEntry:
    """A note or a message on a lead: its author stays its author, whoever the lead moves to
    and whether or not the author is still a member."""

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    author_identity_id: Mapped[int | None] = mapped_column(Id)  # no FK: a record of the past
    author_name: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Note(LeadEntry, Base):
    __tablename__ = "notes"
    __table_args__ = (Index("ix_notes_lead", "lead_id", "id"),)


class Message(LeadEntry, Base):
    """Written in a lead's internal chat or to its contact."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_lead", "lead_id", "id"),)


class Participation:
    """A free user taking part in one record (R9): it sees that record and nothing else of
    the account. Deleting the record or the membership deletes the participation."""

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("memberships.id", ondelete="CASCADE"))
    added_by_id: Mapped[int | None] = mapped_column(Id)  # the identity who added it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LeadParticipant(Participation, Base):
    __tablename__ = "lead_participants"
    __table_args__ = (UniqueConstraint("record_id", "member_id"),
                      Index("ix_lead_participants_member", "member_id", "record_id"))

    record_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))


class CustomerParticipant(Participation, Base):
    __tablename__ = "customer_participants"
    __table_args__ = (UniqueConstraint("record_id", "member_id"),
                      Index("ix_customer_participants_member", "member_id", "record_id"))

    record_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
