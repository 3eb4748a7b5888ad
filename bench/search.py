"""Benchmark: the member list's search, filters and deep pages in an account of 100,000.

On a throwaway PostgreSQL, then on a SQLite file: 11 accounts of 100,000 members each
(the measured one and 10 others of the same size), loaded with COPY (``core.bulk``) on
PostgreSQL and the driver's executemany on SQLite. Names mix Latin with accents, Turkish and
Cyrillic; members spread over 6 groups, 3 roles, statuses (70 % active, 20 % invited, 10 %
disabled), user types (85 % full, 10 % free, 5 % seasonal) and two-factor (30 % on). Then
``GET /v1/accounts/{a}/users`` through the WSGI app in this process (falcon.testing), with
the admin's API key, for three kinds of query, each ``--requests`` times after a warm-up:

- ``prefix``: ``q`` alone, 2 to 4 letters of a first or family name, in any case;
- ``prefix_filters``: ``q`` with ``status=active`` and a group, a role or two-factor;
- ``deep_page``: a cursor past 40 % to 100 % of the account, alone or with ``status``.

The floor, in the same run: the SQL each request executed (captured from the engine) run
again directly on a driver connection, statement by statement, right after the request.

    python bench/search.py [--members 100000] [--others 10] [--requests 300]

Per kind and database one line; last line (PostgreSQL, the kind with the highest p99):
{"bench": "search", "p50_ms": …, "p99_ms": …, "floor_p99_ms": …, "ratio": …}
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import event, select, text  # noqa: E402

from tests.support.bench import new_account, work_dir  # noqa: E402
from tests.support.servers import start_postgres  # noqa: E402

FIRST = (("José", "jose"), ("María", "maria"), ("Zoë", "zoe"), ("François", "francois"),
         ("Özgür", "ozgur"), ("Işık", "isik"), ("İlker", "ilker"), ("Şule", "sule"),
         ("Çağla", "cagla"), ("Иван", "ivan"), ("Ёлка", "yolka"), ("Дмитрий", "dmitry"),
         ("Анна", "anna"), ("Ólafur", "olafur"), ("Søren", "soren"), ("Łukasz", "lukasz"),
         ("Chloé", "chloe"), ("Ahmet", "ahmet"), ("Siti", "siti"), ("Budi", "budi"),
         ("João", "joao"), ("Ana", "ana"), ("Pedro", "pedro"), ("Emma", "emma"),
         ("Liam", "liam"), ("Noah", "noah"), ("Olivia", "olivia"), ("Mehmet", "mehmet"),
         ("Наталья", "natalya"), ("Сергей", "sergey"), ("Wei", "wei"), ("Aisha", "aisha"))
LAST = (("Álvarez", "alvarez"), ("García", "garcia"), ("Müller", "muller"),
        ("Yılmaz", "yilmaz"), ("Öztürk", "ozturk"), ("Çelik", "celik"), ("Şahin", "sahin"),
        ("Петров", "petrov"), ("Смирнова", "smirnova"), ("Кузнецов", "kuznetsov"),
        ("Nørgaard", "norgaard"), ("Kowalski", "kowalski"), ("Dubois", "dubois"),
        ("Lefèvre", "lefevre"), ("Santos", "santos"), ("Silva", "silva"), ("Pérez", "perez"),
        ("Smith", "smith"), ("Johnson", "johnson"), ("Brown", "brown"), ("Wijaya", "wijaya"),
        ("Susanto", "susanto"), ("Demir", "demir"), ("Aydın", "aydin"), ("Иванова", "ivanova"),
        ("Соколов", "sokolov"), ("O'Brien", "obrien"), ("Nguyễn", "nguyen"), ("Groß", "gross"),
        ("Håkansson", "hakansson"), ("Zhang", "zhang"), ("Khan", "khan"))
EXTRA_GROUPS = ("Engineering", "Finance")
CUSTOM_ROLE = "Manager"


def seed(account_id: int, members: int, index: int, rng: random.Random) -> list[int]:
    """``members`` identities and memberships of one account, written set-based; returns the
    member ids in creation order."""
    from provisioning.accounts.models import Group, Role
    from provisioning.core.bulk import insert_new
    from provisioning.core.db import session_scope
    from provisioning.members.models import Identity, Membership
    from provisioning.members.search import search_keys

    now = datetime.now(UTC)
    today = now.date()
    with session_scope() as session:
        session.add_all([Group(account_id=account_id, name=name, is_builtin=False)
                         for name in EXTRA_GROUPS])
        session.add(Role(account_id=account_id, name=CUSTOM_ROLE, permissions=["leads.view"],
                         is_builtin=False))
        session.flush()
        groups = {name: key for name, key in session.execute(
            select(Group.name, Group.id).where(Group.account_id == account_id))}
        roles = {name: key for name, key in session.execute(
            select(Role.name, Role.id).where(Role.account_id == account_id))}
        people = []
        for i in range(members):
            (first, first_ascii), (last, last_ascii) = rng.choice(FIRST), rng.choice(LAST)
            state = rng.random()
            status = "active" if state < 0.7 else "invited" if state < 0.9 else "inactive"
            people.append((f"{first} {last}",
                           f"{first_ascii}.{last_ascii}.{i}@a{index}.example.com", status))
        connection = session.connection()
        # invited people have no login yet, so the account sees their own name
        identity_ids = insert_new(
            connection, Identity, ("email", "name", "password_hash", "totp_enabled",
                                   "created_at", "updated_at"),
            [(email, name, None if status == "invited" else "x", rng.random() < 0.3, now, now)
             for name, email, status in people])
        plain_groups = [groups[name] for name in ("Sales", "Marketing", "Support",
                                                  *EXTRA_GROUPS)]
        rows = []
        for (name, email, status), identity_id in zip(people, identity_ids, strict=True):
            kind = rng.random()
            user_type = "free" if kind < 0.10 else "seasonal" if kind < 0.15 else "full"
            pick = rng.random()
            role = "admin" if pick < 0.05 else CUSTOM_ROLE if pick < 0.10 else "member"
            group = (groups["Free users"] if user_type == "free"
                     else rng.choice(plain_groups))
            start: date | None = None
            end: date | None = None
            if user_type == "seasonal":
                start = today - timedelta(days=rng.randrange(0, 60))
                end = start + timedelta(days=90)
            keys = search_keys(name, email)
            rows.append((account_id, identity_id, roles[role], group, user_type, status, "en",
                         start, end, now, "disabled" if status == "inactive" else None,
                         keys["search_name"], keys["search_surname"], keys["search_email"]))
        return insert_ids(connection, Membership, rows)


def insert_ids(connection: Any, model: Any, rows: list[tuple[Any, ...]]) -> list[int]:
    from provisioning.core.bulk import insert_new

    return insert_new(connection, model, (
        "account_id", "identity_id", "role_id", "group_id", "user_type", "status", "language",
        "seasonal_start", "seasonal_end", "created_at", "inactive_reason", "search_name",
        "search_surname", "search_email"), rows)


class Captured:
    """The SQL statements the engine runs while ``on`` (to replay them as the floor)."""

    def __init__(self) -> None:
        self.on = False
        self.statements: list[tuple[str, Any]] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, parameters: Any,
                 _context: Any, _many: bool) -> None:
        if self.on:
            self.statements.append((statement, parameters))


def replay(raw: Any, statements: list[tuple[str, Any]]) -> float:
    """The statements run directly on a driver connection: the floor of one request."""
    started = time.perf_counter()
    cursor = raw.cursor()
    for statement, parameters in statements:
        cursor.execute(statement, parameters)
        if cursor.description is not None:
            cursor.fetchall()
    cursor.close()
    raw.rollback()
    return time.perf_counter() - started


def queries(rng: random.Random, member_ids: list[int]) -> dict[str, Callable[[], dict[str, str]]]:
    from provisioning.core.pages import encode_cursor

    def prefix() -> str:
        word = (rng.choice(FIRST) if rng.random() < 0.5 else rng.choice(LAST))[0]
        typed = word[:rng.randrange(2, 5)]
        return typed.upper() if rng.random() < 0.2 else typed.lower()

    def with_filters() -> dict[str, str]:
        extra = rng.choice(({"group": rng.choice(("Sales", "marketing", "Engineering"))},
                            {"role": rng.choice(("member", "manager"))},
                            {"two_factor": "true"}))
        return {"q": prefix()[:3], "status": "active", **extra}

    def deep() -> dict[str, str]:
        cursor = encode_cursor(member_ids[rng.randrange(len(member_ids) * 2 // 5,
                                                        len(member_ids) - 1)])
        return {"cursor": cursor, **({"status": "active"} if rng.random() < 0.5 else {})}

    return {"prefix": lambda: {"q": prefix()}, "prefix_filters": with_filters,
            "deep_page": deep}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def measure(database: str, args: argparse.Namespace, rng: random.Random) -> list[dict[str, Any]]:
    """Seed the accounts, then time each kind of query and its floor."""
    import falcon.testing

    from api.app import create_app
    from provisioning.core.db import engine

    started = time.perf_counter()
    measured: tuple[int, str, list[int]] | None = None
    for index in range(args.others + 1):
        account_id, token = new_account(args.members + 10)
        ids = seed(account_id, args.members, index, rng)
        if index == args.others // 2:  # the measured one sits among the others
            measured = (account_id, token, ids)
    assert measured is not None
    account_id, token, member_ids = measured
    with engine().connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(text("VACUUM ANALYZE" if database == "postgresql" else "ANALYZE"))
    print(f"{database}: seeded {args.others + 1} accounts x {args.members:,} members in "
          f"{time.perf_counter() - started:.1f}s", flush=True)

    client = falcon.testing.TestClient(create_app())
    headers = {"Authorization": f"Bearer {token}"}
    captured = Captured()
    event.listen(engine(), "before_cursor_execute", captured)
    raw = engine().raw_connection()
    results = []
    try:
        for kind, make in queries(rng, member_ids).items():
            times: list[float] = []
            floors: list[float] = []
            found = 0
            for round_ in range(args.warmup + args.requests):
                params = make()
                captured.statements.clear()
                captured.on = True
                begin = time.perf_counter()
                answer = client.simulate_get(f"/v1/accounts/{account_id}/users",
                                             params=params, headers=headers)
                elapsed = time.perf_counter() - begin
                captured.on = False
                assert answer.status_code == 200, (params, answer.json)
                floor = replay(raw.driver_connection, list(captured.statements))
                if round_ >= args.warmup:
                    times.append(elapsed)
                    floors.append(floor)
                    found += len(answer.json["items"])
            line = {"database": database, "kind": kind,
                    "p50_ms": round(percentile(times, 0.5) * 1000, 2),
                    "p99_ms": round(percentile(times, 0.99) * 1000, 2),
                    "floor_p50_ms": round(percentile(floors, 0.5) * 1000, 2),
                    "floor_p99_ms": round(percentile(floors, 0.99) * 1000, 2),
                    "items_per_page": round(found / args.requests, 1)}
            line["ratio"] = round(line["floor_p99_ms"] / line["p99_ms"], 3)
            print(json.dumps(line), flush=True)
            results.append(line)
    finally:
        event.remove(engine(), "before_cursor_execute", captured)
        raw.close()
    return results


def use_database(url: str) -> None:
    from provisioning.core.config import settings
    from provisioning.core.migrate import upgrade

    os.environ["PROVISIONING_DATABASE_URL"] = url
    settings.cache_clear()
    upgrade()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--others", type=int, default=10)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    work = work_dir()
    os.environ.update({
        "PROVISIONING_BROKER_URL": "redis://127.0.0.1:1/0",  # never reached: nothing is sent
        "PROVISIONING_VAR_DIR": str(work / "var"),
        "PROVISIONING_SECRET_KEY": secrets.token_hex(32),
    })
    postgres = start_postgres(work)
    try:
        use_database(postgres.create_database("bench_search"))
        results = measure("postgresql", args, random.Random(19))
    finally:
        postgres.stop()
    if not args.skip_sqlite:
        use_database(f"sqlite:///{work / 'search.sqlite3'}")
        try:
            results += measure("sqlite", args, random.Random(19))
        finally:
            for leftover in work.glob("search.sqlite3*"):  # about 650 MB
                leftover.unlink()
    worst = max((line for line in results if line["database"] == "postgresql"),
                key=lambda line: line["p99_ms"])
    sqlite_worst = max((line["p99_ms"] for line in results if line["database"] == "sqlite"),
                       default=None)
    print(json.dumps({"bench": "search", "kind": worst["kind"], "p50_ms": worst["p50_ms"],
                      "p99_ms": worst["p99_ms"], "floor_p99_ms": worst["floor_p99_ms"],
                      "ratio": worst["ratio"], "members": args.members,
                      "accounts": args.others + 1, "sqlite_p99_ms": sqlite_worst}))


if __name__ == "__main__":
    main()
