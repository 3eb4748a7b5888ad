"""Members and the records they own, seeded set-based (COPY on PostgreSQL) for the lifecycle
stories: thousands of members or hundreds of thousands of records in a second or two."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, literal, select, union_all

from provisioning.accounts.models import Role
from provisioning.billing.seats import settle_seats
from provisioning.core.bulk import insert_new, insert_rows
from provisioning.core.db import session_scope
from provisioning.core.models import utcnow
from provisioning.crm.models import Contact, Customer, Lead, Note, Task
from provisioning.members.models import Identity, Membership
from provisioning.members.targets import RECORD_KINDS, RECORD_TABLES

KIND_TITLE = {"leads": "name", "contacts": "name", "customers": "name", "tasks": "title"}
MODELS: dict[str, Any] = {"leads": Lead, "contacts": Contact, "customers": Customer,
                          "tasks": Task}


def add_members(account_id: int, count: int, *, role: str = "member", status: str = "active",
                user_type: str = "full", prefix: str = "seeded") -> list[int]:
    """``count`` members of the account (each with an identity of their own), their ids in
    order; the seat counter is settled after."""
    tag = uuid.uuid4().hex[:8]
    now = utcnow()
    with session_scope() as session:
        connection = session.connection()
        role_id = session.scalar(select(Role.id).where(Role.account_id == account_id,
                                                       Role.name == role))
        identity_ids = insert_new(connection, Identity,
                                  ("email", "name", "totp_enabled", "created_at", "updated_at"),
                                  [(f"{prefix}{i}.{tag}@example.com", f"{prefix.title()} {i}",
                                    False, now, now) for i in range(count)])
        member_ids = insert_new(connection, Membership,
                                ("account_id", "identity_id", "role_id", "user_type", "status",
                                 "language", "created_at"),
                                [(account_id, identity_id, role_id, user_type, status, "en", now)
                                 for identity_id in identity_ids])
        settle_seats(session, account_id, now.date(), actor_id=None, actor_label="tests")
    return member_ids


def give_records(account_id: int, member_id: int, per_kind: int,
                 kinds: tuple[str, ...] = RECORD_KINDS) -> None:
    """``per_kind`` records of each kind, owned by the member."""
    now = utcnow()
    with session_scope() as session:
        connection = session.connection()
        for kind in kinds:
            insert_rows(connection, MODELS[kind], ("account_id", "responsible_id",
                                                   KIND_TITLE[kind], "created_at",
                                                   "updated_at"),
                        ((account_id, member_id, f"{kind} {i}", now, now)
                         for i in range(per_kind)))


def owned(member_id: int) -> dict[str, int]:
    """What points at the member, kind by kind."""
    with session_scope() as session:
        return {kind: session.scalar(select(func.count()).select_from(table)
                                     .where(table.c.responsible_id == member_id)) or 0
                for kind, table in RECORD_TABLES.items()}


def pointing_at(member_id: int) -> int:
    """Rows of every owned table that point at the member, in one query."""
    every = union_all(*(select(literal(kind).label("kind"), table.c.id)
                        .where(table.c.responsible_id == member_id)
                        for kind, table in RECORD_TABLES.items())).subquery()
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(every)) or 0


def records_in(account_id: int) -> dict[str, int]:
    """Every record of the account, kind by kind: nothing is lost or made twice."""
    with session_scope() as session:
        return {kind: session.scalar(select(func.count()).select_from(table)
                                     .where(table.c.account_id == account_id)) or 0
                for kind, table in RECORD_TABLES.items()}


def write_notes(account_id: int, member_id: int, author_name: str, count: int) -> list[int]:
    """Notes by the member on the first ``count`` of their leads; the notes' ids."""
    lead_table = RECORD_TABLES["leads"]
    now = utcnow()
    with session_scope() as session:
        identity_id = session.scalar(select(Membership.identity_id)
                                     .where(Membership.id == member_id))
        leads = session.scalars(select(lead_table.c.id)
                                .where(lead_table.c.responsible_id == member_id)
                                .order_by(lead_table.c.id).limit(count)).all()
        return insert_new(session.connection(), Note,
                          ("account_id", "lead_id", "author_identity_id", "author_name", "text",
                           "created_at"),
                          [(account_id, lead_id, identity_id, author_name, "Called them", now)
                           for lead_id in leads])
