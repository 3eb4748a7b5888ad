"""The billing recalculation (SPEC §7): set-based, idempotent, for one account or all.

A handful of statements whatever the number of accounts: the renewals of periods that
ended (pending lowering and downgrades applied), trial expiry and trials ending soon,
one seat snapshot per account and day (R7's count, grouped by account), and the unused
seats an admin can act on. Every event it records names its period, and the unique key
``(account_id, kind, period_start)`` with ``ON CONFLICT DO NOTHING`` makes running it
twice, or on two workers at once, record what running it once does. On PostgreSQL an
advisory lock also queues recalculations one behind the other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Date,
    Table,
    bindparam,
    case,
    column,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    table,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable, SelectBase
from sqlalchemy.sql.visitors import InternalTraversal

from provisioning.billing.models import BillingEvent, SeatSnapshot, Subscription
from provisioning.billing.plans import TRIAL, next_period_end, period_price_cents
from provisioning.billing.seats import HOLDING_STATUSES, seasonal_window_holds
from provisioning.core.config import settings
from provisioning.core.db import Base
from provisioning.core.models import UTCDateTime
from provisioning.members.models import Membership, UserType

# Kinds of billing events (docs/billing.md); other parts read them by these names.
SEATS_ADDED = "seats_added"
RENEWED = "period_renewed"
TRIAL_ENDING = "trial_ending"
TRIAL_EXPIRED = "trial_expired"
SEATS_UNUSED = "seats_unused"
PLAN_UPGRADED = "plan_upgraded"
KINDS = (SEATS_ADDED, PLAN_UPGRADED, RENEWED, TRIAL_ENDING, TRIAL_EXPIRED, SEATS_UNUSED)

RECALCULATION_LOCK = 0x6269_6C6C  # "bill": one recalculation at a time on PostgreSQL


@dataclass(frozen=True)
class Recalculated:
    accounts: int  # accounts whose seats were counted
    events: int  # events recorded by this run (0 when a run before it already did)
    renewed: int


def recalculate(connection: Connection, now: datetime,
                account_ids: Sequence[int] | None = None) -> Recalculated:
    """Recalculate the accounts named (None: every account) as of ``now``, in the caller's
    transaction."""
    if connection.dialect.name == "postgresql":
        # Derived and idempotent: a commit lost in a crash is recalculated by the next run, so
        # it need not wait for the disk.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key), "
                                "set_config('synchronous_commit', 'off', true)"),
                           {"key": RECALCULATION_LOCK})
    scope = _scope(account_ids)
    renewals, rolls = _renewals(connection, now, scope)
    events = _record(connection, renewals, now) + _trial_events(connection, now, scope)
    _roll(connection, rolls)
    counted, unused = _snapshot(connection, now.date(), now, scope)
    if scope:  # an account's own runs (after changes, on demand) are stamped and counted
        connection.execute(update(Subscription).where(*scope).values(
            recalculated_at=now, recalculations=Subscription.recalculations + 1))
    return Recalculated(accounts=counted, events=events + unused, renewed=len(rolls))


def claim_due(connection: Connection, now: datetime) -> list[int]:
    """The accounts whose membership changes are due, taken off the due list."""
    return list(connection.execute(
        update(Subscription).where(Subscription.recalc_due_at <= now)
        .values(recalc_due_at=None).returning(Subscription.account_id)).scalars())


def _scope(account_ids: Sequence[int] | None) -> list[ColumnElement[bool]]:
    return [] if account_ids is None else [Subscription.account_id.in_(list(account_ids))]


def _record(connection: Connection, events: list[dict[str, Any]], now: datetime) -> int:
    return write_rows(connection, BillingEvent, events, same={"created_at": now})


def _rows(connection: Connection, statement: Any, parameters: Any = None) -> int:
    """Runs ``statement``; how many rows it wrote (SQLAlchemy keeps an INSERT's count only
    when asked)."""
    result = connection.execute(statement, parameters,
                                execution_options={"preserve_rowcount": True})
    return max(int(getattr(result, "rowcount", 0) or 0), 0)


def _renewals(connection: Connection, now: datetime, scope: list[ColumnElement[bool]]
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Periods that ended roll on, with the lowering or downgrade that waited for them: the
    events to record, and the periods to roll (``_roll``)."""
    ended = connection.execute(
        select(Subscription.account_id, Subscription.plan, Subscription.period,
               Subscription.seats_purchased, Subscription.pending_seats,
               Subscription.pending_plan, Subscription.current_period_start,
               Subscription.current_period_end)
        .where(Subscription.current_period_end <= now, Subscription.plan != TRIAL, *scope)
        # Locked until the roll commits: a seat purchase or a PATCH of these subscriptions
        # waits for it, instead of being overwritten by the terms read here.
        .with_for_update()
    ).all()
    price = cache(period_price_cents)  # the catalog is read once a run, not once a renewal
    events: list[dict[str, Any]] = []
    rolls: list[dict[str, Any]] = []
    for account_id, was_plan, period, was_seats, pending_seats, pending_plan, start, end in ended:
        plan, seats = pending_plan or was_plan, pending_seats or was_seats
        ended_at = end
        while end <= now:  # a period missed while nothing ran is still billed once
            start, end = end, next_period_end(end, period)
            events.append(_event(account_id, RENEWED, seats, start, {
                "period_start": start.isoformat(), "period_end": end.isoformat(),
                "plan": plan, "seats": seats, "from_plan": was_plan, "from_seats": was_seats,
                "charge_cents": price(plan, period, seats)}))
        rolls.append({"b_account": account_id, "b_old_end": ended_at, "b_start": start,
                      "b_end": end, "b_plan": plan, "b_seats": seats})
    return events, rolls


def _roll(connection: Connection, rolls: list[dict[str, Any]]) -> None:
    """Compare-and-set on each period's end: a second run over the same period changes
    nothing. PostgreSQL takes them all in one statement."""
    if not rolls:
        return
    if connection.dialect.name == "postgresql":
        connection.execute(ROLL_PERIODS, {"rolls": json.dumps(rolls, default=str)})
    else:
        connection.execute(ROLL_PERIOD, rolls)


ROLL_PERIOD = (
    update(Subscription)
    .where(Subscription.account_id == bindparam("b_account"),
           Subscription.current_period_end == bindparam("b_old_end", type_=UTCDateTime()))
    .values(current_period_start=bindparam("b_start", type_=UTCDateTime()),
            current_period_end=bindparam("b_end", type_=UTCDateTime()),
            plan=bindparam("b_plan"), seats_purchased=bindparam("b_seats"),
            pending_plan=None, pending_seats=None)
)
ROLL_PERIODS = text(
    "UPDATE subscriptions SET current_period_start = rolled.b_start, "
    "current_period_end = rolled.b_end, plan = rolled.b_plan, seats_purchased = rolled.b_seats, "
    "pending_plan = NULL, pending_seats = NULL "
    "FROM json_to_recordset(CAST(:rolls AS json)) AS rolled(b_account bigint, "
    "b_old_end timestamptz, b_start timestamptz, b_end timestamptz, b_plan varchar, "
    "b_seats integer) "
    "WHERE subscriptions.account_id = rolled.b_account "
    "AND subscriptions.current_period_end = rolled.b_old_end")


def _event(account_id: int, kind: str, quantity: int, period_start: datetime,
           details: dict[str, Any]) -> dict[str, Any]:
    return {"account_id": account_id, "kind": kind, "quantity": quantity, "details": details,
            "period_start": period_start}


def _trial_events(connection: Connection, now: datetime, scope: list[ColumnElement[bool]]
                  ) -> int:
    """``trial_ending`` once a trial has ``billing_trial_ending_days`` left, ``trial_expired``
    once it is over (with a ``trial_ending`` of its own when no run saw it ending): one of
    each per account and trial, in one ``INSERT … SELECT``."""
    soon = now + timedelta(days=settings().billing_trial_ending_days)
    moment = literal(now, UTCDateTime())
    kinds = union_all(select(literal(TRIAL_ENDING).label("kind")),
                      select(literal(TRIAL_EXPIRED))).subquery("kinds")
    ends_at = Subscription.trial_ends_at
    return _insert_events(connection, select(
        Subscription.account_id, kinds.c.kind, literal(0),
        _json_object(connection, "trial_ends_at", _iso(connection, ends_at)), moment,
        Subscription.current_period_start,
    ).select_from(Subscription).join(kinds, true()).where(
        Subscription.plan == TRIAL, ends_at <= literal(soon, UTCDateTime()),
        or_(kinds.c.kind == TRIAL_ENDING, ends_at <= moment), *scope))


def _snapshot(connection: Connection, today: date, now: datetime,
              scope: list[ColumnElement[bool]]) -> tuple[int, int]:
    """Every account's seats today (R7's count, one ``SELECT … GROUP BY account_id``) into
    the temporary table ``billing_counts``, written from there as one snapshot row per
    account and day (a later run of the day replaces it), and ``seats_unused`` for the paid
    accounts whose period renews within ``billing_unused_notice_days`` holding seats that
    period would bill and they do not use: once a period, while the admin can still lower
    them. Returns accounts counted and events recorded."""
    in_window = seasonal_window_holds(today)  # the statuses are filtered once, below
    counts = (
        select(Membership.account_id,
               func.count().filter(Membership.user_type == UserType.FULL.value).label("full"),
               func.count().filter(in_window).label("seasonal"),
               func.count().filter(Membership.user_type == UserType.FREE.value).label("free"))
        .where(Membership.status.in_(HOLDING_STATUSES))
        .group_by(Membership.account_id)
    )
    if scope:
        counts = counts.where(Membership.account_id.in_(
            select(Subscription.account_id).where(*scope).scalar_subquery()))
    counted = counts.subquery("counted")
    seats = (
        select(Subscription.account_id, Subscription.seats_purchased.label("purchased"),
               func.coalesce(counted.c.full + counted.c.seasonal, 0).label("used"),
               func.coalesce(counted.c.seasonal, 0).label("seasonal_used"),
               func.coalesce(counted.c.free, 0).label("free_members"),
               func.coalesce(Subscription.pending_seats, Subscription.seats_purchased)
               .label("renewing"),
               Subscription.plan, Subscription.current_period_start,
               Subscription.current_period_end)
        .select_from(Subscription)
        .outerjoin(counted, counted.c.account_id == Subscription.account_id)
        .where(*scope))
    connection.execute(CreateTemporaryTableAs(COUNTS.name, seats))
    # The advisory lock (PostgreSQL) and BEGIN IMMEDIATE (SQLite) make this run the only
    # writer of snapshots: the day's rows are replaced by a delete and a plain insert, half
    # the cost of an upsert's speculative insertion.
    connection.execute(delete(SeatSnapshot).where(
        SeatSnapshot.taken_on == today,
        SeatSnapshot.account_id.in_(select(COUNTS.c.account_id))))
    snapshots = _rows(connection, insert(SeatSnapshot).from_select(
        ["taken_on", "account_id", "purchased", "used", "seasonal_used", "free_members",
         "unused", "taken_at"],
        select(literal(today, Date()), COUNTS.c.account_id, COUNTS.c.purchased,
               COUNTS.c.used, COUNTS.c.seasonal_used, COUNTS.c.free_members,
               _unused(COUNTS.c.purchased), literal(now, UTCDateTime()))))
    unused = _unused(COUNTS.c.renewing)
    notice = now + timedelta(days=settings().billing_unused_notice_days)
    rows = select(COUNTS.c.account_id, literal(SEATS_UNUSED), unused,
                  _json_object(connection, "unused", unused, "seats", COUNTS.c.renewing,
                               "purchased", COUNTS.c.purchased, "used", COUNTS.c.used,
                               "renews_at", _iso(connection, COUNTS.c.current_period_end)),
                  literal(now, UTCDateTime()), COUNTS.c.current_period_start).where(
        COUNTS.c.plan != TRIAL, COUNTS.c.renewing > COUNTS.c.used,
        COUNTS.c.current_period_end <= literal(notice, UTCDateTime()))
    recorded = _insert_events(connection, rows)
    connection.execute(text(f"DROP TABLE {COUNTS.name}"))  # a second run in this transaction
    return snapshots, recorded


COUNTS = table("billing_counts", *(column(name) for name in (
    "account_id", "purchased", "used", "seasonal_used", "free_members", "renewing", "plan",
    "current_period_start", "current_period_end")))


class CreateTemporaryTableAs(Executable, ClauseElement):
    """``CREATE TEMPORARY TABLE name AS select``, dropped at the transaction's end on
    PostgreSQL. There ``CREATE TABLE AS`` may count in parallel, which ``INSERT … SELECT``
    may not."""

    inherit_cache = True  # cached like the query it wraps: compiled once, not once a run
    _traverse_internals = [("name", InternalTraversal.dp_string),
                           ("query", InternalTraversal.dp_clauseelement)]

    def __init__(self, name: str, query: SelectBase) -> None:
        self.name, self.query = name, query


@compiles(CreateTemporaryTableAs)
def _create_temporary_table_as(element: CreateTemporaryTableAs, compiler: Any,
                               **kw: Any) -> str:
    dropped = " ON COMMIT DROP" if compiler.dialect.name == "postgresql" else ""
    return (f"CREATE TEMPORARY TABLE {element.name}{dropped} AS "
            f"{compiler.process(element.query, **kw)}")


def _unused(seats: ColumnElement[Any]) -> ColumnElement[int]:
    return case((seats > COUNTS.c.used, seats - COUNTS.c.used), else_=0)


def _json_object(connection: Connection, *pairs: Any) -> ColumnElement[Any]:
    if connection.dialect.name == "postgresql":
        return func.jsonb_build_object(*pairs)
    return func.json(func.json_object(*pairs))


def _iso(connection: Connection, moment: Any) -> ColumnElement[str]:
    """A UTC moment as ISO 8601 text, ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00`` on both
    databases (``datetime.fromisoformat`` reads it; unlike ``isoformat`` it always writes
    the microseconds)."""
    if connection.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", moment),
                            literal_column("'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'"))
    return func.replace(moment, " ", "T").concat("+00:00")  # stored as naive UTC text


def _insert_events(connection: Connection, rows: SelectBase) -> int:
    """Events from ``rows`` (account, kind, quantity, details, created_at, period_start);
    one already recorded for its account, kind and period is skipped."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return _rows(connection, dialect.insert(BillingEvent).from_select(
        ["account_id", "kind", "quantity", "details", "created_at", "period_start"], rows)
        .on_conflict_do_nothing(index_elements=["account_id", "kind", "period_start"]))


def write_rows(connection: Connection, model: type[Base], rows: list[dict[str, Any]], *,
               same: dict[str, Any] | None = None) -> int:
    """Insert ``rows`` in one statement, each with the values ``same`` gives them all; a row
    whose unique key is taken is skipped. Returns rows written.

    PostgreSQL takes the rows as one JSON document (``json_to_recordset``): one statement,
    one parameter and one round trip for ten thousand rows, serialised by the json module
    rather than value by value; SQLite takes them as an executemany.
    """
    if not rows:
        return 0
    table = cast(Table, model.__table__)
    same = same or {}
    if connection.dialect.name != "postgresql":
        return _rows(connection, sqlite.insert(table).on_conflict_do_nothing(),
                     [{**row, **same} for row in rows])
    columns = list(rows[0])
    shape = ", ".join(f"{name} {_pg_type(table, name, connection)}" for name in columns)
    # Values alike for every row go once, not in every row.
    alike = "".join(f", CAST(:{name} AS {_pg_type(table, name, connection)})" for name in same)
    return _rows(connection, text(
        f"INSERT INTO {table.name} ({', '.join([*columns, *same])}) "  # noqa: S608 - the model's
        f"SELECT *{alike} FROM json_to_recordset(CAST(:write_rows AS json)) AS written({shape}) "
        "ON CONFLICT DO NOTHING"), {"write_rows": json.dumps(rows, default=str), **same})


def _pg_type(table: Table, column: str, connection: Connection) -> str:
    return str(table.c[column].type.compile(dialect=connection.dialect))
