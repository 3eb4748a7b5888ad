"""Realistic records in bulk, for demos and benchmarks: one member's leads, contacts, customers
and tasks, and on a share of the leads a conversation with a note and a message.

Each kind is written set-based, a chunk per statement (COPY on PostgreSQL), so a million
records take seconds rather than the hours an ORM object per row would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from provisioning.accounts.models import Account
from provisioning.core import audit
from provisioning.core.bulk import insert_new, insert_rows
from provisioning.core.errors import FieldError, InvalidInput, NotFound
from provisioning.core.models import utcnow
from provisioning.crm.models import Conversation, Message, Note
from provisioning.crm.notes import AUTHOR_NAME_LENGTH
from provisioning.crm.records import KINDS, RESPONSIBLE, Kind, owning_member
from provisioning.members.models import Identity, Membership

CHUNK = 50_000  # rows a statement: memory stays flat whatever the count
LEADS_PER_CONVERSATION = 10  # one lead in ten has a conversation, a note and a message
MAX_SEED = 10_000_000  # records of each kind in one run

_FIRST = ("Ana", "Bruno", "Chen", "Dmitri", "Elif", "Fatima", "Gabriel", "Hana", "Ivan", "Julia",
          "Kemal", "Lucia", "Mateo", "Nadia", "Omar", "Priya", "Rafael", "Sofia", "Tomas", "Yuki")
_LAST = ("Silva", "Santos", "Garcia", "Ivanova", "Yilmaz", "Wijaya", "Kowalski", "Nguyen",
         "Okafor", "Rossi", "Schmidt", "Tanaka", "Haddad", "Moreau", "Costa", "Petrov", "Lee")
_COMPANIES = ("Acme Logistics", "Blue Harbor Foods", "Cedar & Stone", "Delta Print",
              "Evergreen Clinics", "Falcon Freight", "Golden Loom", "Horizon Telecom",
              "Iris Optics", "Juniper Legal", "Kite Travel", "Lumen Energy", "Maple Dental",
              "Nimbus Software", "Orchid Hotels", "Pioneer Farms", "Quartz Security",
              "Riverbank Realty", "Summit Fitness", "Tidewater Marine", "Urban Bakery")
_DEALS = ("annual plan", "pilot for 20 seats", "renewal", "upgrade to Pro", "new branch",
          "support contract", "onboarding package", "integration project", "trial extension")
_SUFFIXES = ("Ltd", "Inc", "GmbH", "S.A.", "LLC", "PT", "A.Ş.", "OOO")
_TASKS = ("Call", "Email", "Send the proposal to", "Book a demo with", "Follow up with",
          "Prepare the contract for", "Check in with", "Send the invoice to")
_NOTES = ("Asked for a discount on annual billing.", "Decision maker is the CFO.",
          "Wants to start next month.", "Comparing us with two other vendors.",
          "Needs SSO before signing.")
_MESSAGES = ("Hello! Thanks for your interest, when suits you for a call?",
             "I've sent the proposal, let me know what you think.",
             "Just checking in: any questions about the plan?")


def _person(i: int) -> str:
    return f"{_FIRST[i % len(_FIRST)]} {_LAST[(i // len(_FIRST)) % len(_LAST)]}"


def _label(kind: Kind, i: int) -> str:
    company = _COMPANIES[i % len(_COMPANIES)]
    if kind.plural == "leads":
        return f"{company}: {_DEALS[(i // len(_COMPANIES)) % len(_DEALS)]}"
    if kind.plural == "customers":
        return f"{company} {_SUFFIXES[(i // len(_COMPANIES)) % len(_SUFFIXES)]}"
    if kind.plural == "tasks":
        return f"{_TASKS[i % len(_TASKS)]} {_person(i // len(_TASKS))}"
    return _person(i)


@dataclass(frozen=True)
class Seeded:
    """How many rows of each table a run wrote."""

    account_id: int
    member_id: int
    leads: int = 0
    contacts: int = 0
    customers: int = 0
    tasks: int = 0
    conversations: int = 0
    notes: int = 0
    messages: int = 0


@dataclass(frozen=True)
class _Author:
    identity_id: int
    name: str


def _rows(kind: Kind, account_id: int, member_id: int, start: int, stop: int,
          first_created: datetime) -> Iterator[tuple[Any, ...]]:
    """Records ``start`` to ``stop``, each a minute newer than the one before."""
    minute = timedelta(minutes=1)
    for i in range(start, stop):
        created = first_created + minute * i
        row: tuple[Any, ...] = (account_id, member_id, _label(kind, i), created, created)
        if kind.times:  # a task: due a week after it was set, none done yet
            row += (created + minute * 10_080, None)
        yield row


def _lead_entries(connection: Connection, account_id: int, lead_ids: Sequence[int],
                  author: _Author, created: datetime) -> int:
    """A conversation, a note and a message on every tenth lead; how many leads got them."""
    chosen = lead_ids[::LEADS_PER_CONVERSATION]
    insert_rows(connection, Conversation, ("account_id", "lead_id", "channel", "created_at"),
                ((account_id, lead_id, "chat", created) for lead_id in chosen))
    columns = ("account_id", "lead_id", "author_identity_id", "author_name", "text", "created_at")
    for model, texts in ((Note, _NOTES), (Message, _MESSAGES)):
        insert_rows(connection, model, columns, (
            (account_id, lead_id, author.identity_id, author.name, texts[lead_id % len(texts)],
             created) for lead_id in chosen))
    return len(chosen)


def _check(kinds: Sequence[str], count: int) -> None:
    problems = []
    if not 0 <= count <= MAX_SEED:
        problems.append(FieldError("count", f"Seed from 0 to {MAX_SEED:,} records of each kind."))
    if not kinds:
        problems.append(FieldError("kinds", f"Name at least one of: {', '.join(KINDS)}."))
    elif unknown := sorted(set(kinds) - set(KINDS)):
        problems.append(FieldError("kinds", f"Unknown: {', '.join(unknown)}. "
                                            f"Known: {', '.join(KINDS)}."))
    if problems:
        raise InvalidInput(problems)


def seed_records(session: Session, account_id: int, member_id: int, count: int,
                 kinds: Sequence[str] = tuple(KINDS)) -> Seeded:
    """Write ``count`` records of each of ``kinds`` owned by member ``member_id``, plus a
    conversation, a note and a message (written by that member) on one lead in ten.

    The member must be one who may own records (active or invited, not free). One audit
    entry tells who got the records.
    """
    _check(kinds, count)
    if session.get(Account, account_id) is None:
        raise NotFound(f"Account {account_id} does not exist.")
    owning_member(session, account_id, member_id, field="member")
    identity_id, name, email = session.execute(
        select(Identity.id, Identity.name, Identity.email)
        .join(Membership, Membership.identity_id == Identity.id)
        .where(Membership.id == member_id)).one()
    author = _Author(identity_id, (name or email)[:AUTHOR_NAME_LENGTH])
    connection = session.connection()
    now = utcnow()
    first_created = now - timedelta(minutes=count)
    written: dict[str, int] = {}
    for kind_name in dict.fromkeys(kinds):
        kind = KINDS[kind_name]
        columns = ("account_id", RESPONSIBLE, kind.label, "created_at", "updated_at",
                   *kind.times)
        for start in range(0, count, CHUNK):
            rows = _rows(kind, account_id, member_id, start, min(start + CHUNK, count),
                         first_created)
            if kind.plural == "leads":
                ids = insert_new(connection, kind.model, columns, list(rows))
                written["conversations"] = written.get("conversations", 0) + _lead_entries(
                    connection, account_id, ids, author, now)
                written[kind_name] = written.get(kind_name, 0) + len(ids)
            else:
                written[kind_name] = written.get(kind_name, 0) + insert_rows(
                    connection, kind.model, columns, rows)
    conversations = written.pop("conversations", 0)
    seeded = Seeded(account_id, member_id, conversations=conversations, notes=conversations,
                    messages=conversations, **written)
    if connection.dialect.name == "postgresql":
        # Fresh statistics: the next query on these tables plans for a million rows, not none.
        tables = [KINDS[name].model.__tablename__ for name in written]
        tables += ["conversations", "notes", "messages"] if conversations else []
        for table in tables:
            connection.exec_driver_sql(f"ANALYZE {table}")
    audit.record(session, account_id=account_id, actor_id=None,
                 actor_label="provision seed-records", action="records.seed",
                 target_type="member", target_id=member_id,
                 after={name: getattr(seeded, name) for name in (*written, "conversations")})
    return seeded
