"""Benchmark: recalculating the billing of every account, through the Celery task.

Starts a throwaway PostgreSQL and seeds it with COPY: 10,000 accounts, each with a
subscription (trials, some ending or ended; monthly and annual paid plans, some whose
period has ended) and 100 memberships of mixed types and statuses (full, free, seasonal
inside and outside their window; invited, active, inactive): 1,000,000 memberships.
Vacuumed and analysed, then:

1. The floor: the bare seat count, `SELECT account_id, count(*) FROM memberships WHERE
   <R7> GROUP BY account_id`, run once to warm the cache and timed the second time.
2. The product: the task `provisioning.recalculate_billing` for every account (run in this
   process by Celery's `apply`), with every SQL statement it issues counted (and timed) by
   an engine event listener. Warmed like the floor: one whole run first, rolled back.
   Its events and snapshots are checked after.

    python bench/billing.py [--accounts 10000] [--members 100]

Last line: {"bench": "billing", "seconds": …, "floor_seconds": …, "ratio": …,
            "statements": …}
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from psycopg.types.json import Jsonb  # noqa: E402
from sqlalchemy import create_engine, event, text  # noqa: E402

from tests.support.bench import work_dir  # noqa: E402
from tests.support.servers import start_postgres  # noqa: E402

TYPES = ("full",) * 14 + ("free",) * 3 + ("seasonal",) * 3  # 70 % full, 15 % free and seasonal
STATUSES = ("active",) * 12 + ("invited",) * 5 + ("inactive",) * 3


def seed(accounts: int, members: int) -> None:
    """Accounts, their roles and subscriptions, identities and memberships, by COPY."""
    from provisioning.accounts.models import Account, Role
    from provisioning.billing.models import Subscription
    from provisioning.core.bulk import insert_new, insert_rows
    from provisioning.core.db import session_scope
    from provisioning.members.models import Identity, Membership

    now = datetime.now(UTC)
    today = now.date()
    with session_scope() as session:
        connection = session.connection()
        account_ids = insert_new(connection, Account, ("name", "default_language",
                                                       "seasonal_seats", "created_at"),
                                 [(f"Bench {i}", "en", 10, now) for i in range(accounts)])
        role_ids = insert_new(connection, Role, ("account_id", "name", "permissions",
                                                 "is_builtin"),
                              [(account_id, "member", Jsonb([]), True)
                               for account_id in account_ids])

        def subscriptions() -> Iterator[tuple[Any, ...]]:
            for i, account_id in enumerate(account_ids):
                if i % 5 == 0:  # a trial: some end within three days, some have ended
                    ends = now + timedelta(days=(i // 5) % 16 - 2)
                    yield (account_id, "trial", "monthly", 10, ends - timedelta(days=14), ends,
                           ends)
                    continue
                period = "annual" if i % 7 == 0 else "monthly"
                days = 365 if period == "annual" else 30
                start = now - timedelta(days=(i % (days + 3)))  # a few have ended
                yield (account_id, ("base", "advanced", "pro")[i % 3], period,
                       members - (i % 30), start, start + timedelta(days=days), None)

        insert_rows(connection, Subscription, (
            "account_id", "plan", "period", "seats_purchased", "current_period_start",
            "current_period_end", "trial_ends_at"), subscriptions())

    total = accounts * members
    step = 100_000
    for first in range(0, total, step):
        count = min(step, total - first)
        with session_scope() as session:
            connection = session.connection()
            identity_ids = insert_new(connection, Identity, (
                "email", "name", "totp_enabled", "created_at", "updated_at"),
                [(f"m{first + n}@bench.example.com", "", False, now, now)
                 for n in range(count)])
            insert_rows(connection, Membership, (
                "account_id", "identity_id", "role_id", "user_type", "status", "language",
                "seasonal_start", "seasonal_end", "created_at"),
                (_member(first + n, identity_id, account_ids, role_ids, members, today, now)
                 for n, identity_id in enumerate(identity_ids)))


def _member(index: int, identity_id: int, account_ids: list[int], role_ids: list[int],
            members: int, today: date, now: datetime) -> tuple[Any, ...]:
    position = index // members
    kind, status = TYPES[index % len(TYPES)], STATUSES[(index // 3) % len(STATUSES)]
    start = end = None
    if kind == "seasonal":  # half inside their window, half outside
        start = today - timedelta(days=5) if index % 2 else today + timedelta(days=5)
        end = start + timedelta(days=20)
    return (account_ids[position], identity_id, role_ids[position], kind, status, "en",
            start, end, now)


FLOOR = text(
    "SELECT account_id, count(*) FROM memberships "
    "WHERE status IN ('invited', 'active') AND (user_type = 'full' OR (user_type = 'seasonal' "
    "AND seasonal_start <= :today AND seasonal_end >= :today)) GROUP BY account_id")


def vacuum(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("VACUUM ANALYZE"))
        connection.execute(text("CHECKPOINT"))
    engine.dispose()


def measure_floor(url: str) -> tuple[float, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(FLOOR, {"today": date.today()}).all()  # warm the cache
            started = time.perf_counter()
            rows = connection.execute(FLOOR, {"today": date.today()}).all()
            return time.perf_counter() - started, sum(count for _, count in rows)
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=100)
    args = parser.parse_args()
    work = work_dir()
    postgres = start_postgres(work)
    try:
        database_url = postgres.create_database("bench_billing")
        os.environ.update({"PROVISIONING_DATABASE_URL": database_url,
                           "PROVISIONING_VAR_DIR": str(work / "var"),
                           "PROVISIONING_SECRET_KEY": secrets.token_hex(32)})
        from provisioning.core.config import settings
        from provisioning.core.migrate import upgrade

        settings.cache_clear()
        upgrade()
        begin = time.perf_counter()
        seed(args.accounts, args.members)
        memberships = args.accounts * args.members
        print(f"seeded {args.accounts:,} accounts, {memberships:,} memberships in "
              f"{time.perf_counter() - begin:.1f}s")
        vacuum(database_url)
        floor, seats = measure_floor(database_url)
        print(f"floor: the bare GROUP BY seat count ({seats:,} seats): {floor:.2f}s")

        from provisioning.billing.recalculation import recalculate
        from provisioning.core.db import engine
        from provisioning.core.models import utcnow
        from worker.tasks import recalculate_billing

        # Warm like the floor: one whole run, rolled back (statements compiled, pages cached).
        with engine().connect() as connection:
            warm_up = connection.begin()
            recalculate(connection, utcnow())
            warm_up.rollback()

        statements: list[tuple[str, float]] = []
        clock = [0.0]

        def count(*_: Any) -> None:
            clock[0] = time.perf_counter()

        def timed(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append((" ".join(statement.split())[:70], time.perf_counter() - clock[0]))

        event.listen(engine(), "before_cursor_execute", count)
        event.listen(engine(), "after_cursor_execute", timed)
        begin = time.perf_counter()
        done = recalculate_billing.apply().get()
        seconds = time.perf_counter() - begin
        event.remove(engine(), "before_cursor_execute", count)
        event.remove(engine(), "after_cursor_execute", timed)
        for statement, took in statements:
            print(f"  {took:6.3f}s  {statement}")
        assert done["accounts"] == args.accounts, done
        checked = create_engine(database_url)
        with checked.connect() as connection:
            used = connection.execute(text(
                "SELECT sum(used) FROM seat_snapshots WHERE taken_on = :today"),
                {"today": datetime.now(UTC).date()}).scalar_one()
            kinds = dict(connection.execute(text(
                "SELECT kind, count(*) FROM billing_events GROUP BY kind")).all())
        checked.dispose()
        assert used == seats, (used, seats)
        print(f"product: {args.accounts:,} accounts recalculated in {seconds:.2f}s with "
              f"{len(statements)} statements ({floor / seconds:.2f} of the floor); {done}; "
              f"events {kinds}")
        print(json.dumps({"bench": "billing", "seconds": round(seconds, 2),
                          "floor_seconds": round(floor, 2), "ratio": round(floor / seconds, 3),
                          "statements": len(statements)}))
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
