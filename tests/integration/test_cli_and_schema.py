"""The `provision` command's contract, and migrations that match the models on both databases."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text

from provisioning.core.db import make_engine
from provisioning.core.migrate import alembic_config, upgrade
from tests.support.processes import VENV_BIN
from tests.support.servers import PostgresServer


def provision(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROVISIONING_DATABASE_URL": database_url}
    return subprocess.run([str(VENV_BIN / "provision"), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_migrations_match_the_models_on_postgresql_and_sqlite(postgres: PostgresServer,
                                                               tmp_path: Path):
    for url in (postgres.create_database(f"schema_{uuid.uuid4().hex[:6]}"),
                f"sqlite:///{tmp_path / 'schema.sqlite3'}"):
        upgrade(url)
        command.check(alembic_config(url))  # raises if a model change lacks a migration


def test_the_billing_ledger_outlives_its_account_and_survives_the_migration_both_ways(
        postgres: PostgresServer, tmp_path: Path):
    """0019 keys seat snapshots by day and drops the ledger's key to accounts: a snapshot, an
    event and its announcement written before it are still there after it, after going
    back, and after the account is deleted (the record of what was charged is kept, as
    invoices are). Going back again removes what the deleted account left, announcement
    included, and every key holds. The engine is the product's (SQLite's keys on)."""
    for url in (postgres.create_database(f"ledger_{uuid.uuid4().hex[:6]}"),
                f"sqlite:///{tmp_path / 'ledger.sqlite3'}"):
        upgrade(url, "0018")
        engine = make_engine(url)
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO accounts (id, name, default_language, seasonal_seats, created_at) "
                "VALUES (7, 'Ledger', 'en', 0, CURRENT_TIMESTAMP)"))
            connection.execute(text(
                "INSERT INTO seat_snapshots (account_id, taken_on, purchased, used, "
                "seasonal_used, free_members, unused, taken_at) "
                "VALUES (7, '2026-12-01', 5, 3, 0, 1, 2, CURRENT_TIMESTAMP)"))
            connection.execute(text(
                "INSERT INTO billing_events (id, account_id, kind, quantity, details, "
                "created_at) VALUES (70, 7, 'seats_added', 2, '{}', CURRENT_TIMESTAMP)"))
            connection.execute(text(
                "INSERT INTO billing_announcements (event_id, announced_at) "
                "VALUES (70, CURRENT_TIMESTAMP)"))

        kept = ([(7, date(2026, 12, 1), 3, 2)], [(7, "seats_added", 2)], [70])
        upgrade(url)
        assert _ledger(engine) == kept
        command.downgrade(alembic_config(url), "0018")
        assert _ledger(engine) == kept
        upgrade(url)
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM accounts WHERE id = 7"))
        assert _ledger(engine) == kept
        command.downgrade(alembic_config(url), "0018")
        assert _ledger(engine) == ([], [], [])
        upgrade(url)
        engine.dispose()


def test_on_sqlite_a_migration_that_leaves_a_broken_key_changes_nothing(tmp_path: Path):
    """SQLite migrates with its keys off, so every key is checked before the migration
    commits: a row pointing at nothing stops it, and the schema stays where it was."""
    url = f"sqlite:///{tmp_path / 'broken.sqlite3'}"
    upgrade(url, "0018")
    engine = create_engine(url)  # keys off, as an operator's hand edit might be
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO billing_announcements (event_id, announced_at) "
                                "VALUES (404, CURRENT_TIMESTAMP)"))
    with pytest.raises(RuntimeError, match="broke foreign keys"):
        upgrade(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
            "0018")
        columns = [row[1] for row in connection.execute(text("PRAGMA table_info(seat_snapshots)"))]
        assert columns[0] == "id"  # 0019 rolled back whole
    engine.dispose()


def test_on_sqlite_a_new_account_never_takes_a_deleted_account_s_id(tmp_path: Path):
    """The ledger has no cascade: were the newest account deleted and its id given again,
    the new account would read the old one's billing events."""
    url = f"sqlite:///{tmp_path / 'ids.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    add = text("INSERT INTO accounts (name, default_language, seasonal_seats, created_at) "
               "VALUES ('A', 'en', 0, CURRENT_TIMESTAMP) RETURNING id")
    with engine.begin() as connection:
        first, newest = (connection.execute(add).scalar_one() for _ in range(2))
        connection.execute(text(
            "INSERT INTO billing_events (account_id, kind, quantity, details, created_at) "
            "VALUES (:account, 'seats_added', 2, '{}', CURRENT_TIMESTAMP)"), {"account": newest})
        connection.execute(text("DELETE FROM accounts WHERE id = :id"), {"id": newest})
    with engine.begin() as connection:
        later = connection.execute(add).scalar_one()
        inherited = connection.execute(text(
            "SELECT count(*) FROM billing_events WHERE account_id = :id"), {"id": later})
        assert (later > newest > first, inherited.scalar_one()) == (True, 0)
    engine.dispose()


def _ledger(engine: Engine) -> tuple[list[tuple[Any, ...]], ...]:
    with engine.connect() as connection:
        snapshots = connection.execute(text(
            "SELECT account_id, taken_on, used, unused FROM seat_snapshots")).all()
        events = connection.execute(text(
            "SELECT account_id, kind, quantity FROM billing_events")).all()
        announced = connection.execute(text(
            "SELECT event_id FROM billing_announcements")).scalars().all()
    return ([(row[0], date.fromisoformat(str(row[1])), row[2], row[3]) for row in snapshots],
            [tuple(row) for row in events], list(announced))


def test_create_account_prints_the_account_and_a_working_admin_token(postgres: PostgresServer):
    url = postgres.create_database(f"cli_{uuid.uuid4().hex[:6]}")
    assert provision("migrate", database_url=url).returncode == 0
    made = provision("create-account", "--name", "Acme", "--admin-email", "Boss@Acme.example.com",
                     "--admin-password", "a long password", "--plan", "base", "--seats", "10",
                     database_url=url)
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert set(created) == {"account_id", "admin_token"}

    from falcon.testing import TestClient

    from tests.conftest import activate, deactivate

    previous = activate({"PROVISIONING_DATABASE_URL": url})
    try:
        from api.app import create_app

        api = TestClient(create_app())
        users = api.simulate_get(f"/v1/accounts/{created['account_id']}/users",
                                 headers={"Authorization": f"Bearer {created['admin_token']}"})
        assert users.status_code == 200
        assert [m["email"] for m in users.json["items"]] == ["boss@acme.example.com"]
        assert users.json["items"][0]["role"] == "admin"
    finally:
        deactivate(previous)

    refused = provision("create-account", "--name", "Again", "--admin-email",
                        "boss@acme.example.com", "--admin-password", "a long password",
                        database_url=url)
    assert refused.returncode == 2 and "another account" in refused.stderr
    bad = provision("create-account", "--name", "X", "--admin-email", "nope",
                    "--admin-password", "short", database_url=url)
    assert bad.returncode == 2 and "admin_password" in bad.stderr


def test_create_account_takes_seasonal_seats(postgres: PostgresServer):
    url = postgres.create_database(f"cli_{uuid.uuid4().hex[:6]}")
    assert provision("migrate", database_url=url).returncode == 0
    made = provision("create-account", "--name", "Ski", "--admin-email", "boss@ski.example.com",
                     "--admin-password", "a long password", "--plan", "base", "--seats", "5",
                     "--seasonal-seats", "3", database_url=url)
    assert made.returncode == 0, made.stderr
    import psycopg

    account_id = json.loads(made.stdout)["account_id"]
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as connection:
        seats = connection.execute("SELECT seasonal_seats FROM accounts WHERE id = %s",
                                   (account_id,)).fetchone()
    assert seats == (3,)


def test_the_search_keys_of_members_already_there_are_filled(tmp_path: Path):
    """0017 folds the names and emails of the members a database already holds."""
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'keys.sqlite3'}"
    upgrade(url, "0013")
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in (
            "INSERT INTO accounts (id, name, default_language, seasonal_seats, created_at) "
            "VALUES (1, 'A', 'en', 0, '2026-01-01')",
            "INSERT INTO roles (id, account_id, name, permissions, is_builtin) "
            "VALUES (1, 1, 'member', '[]', 1)",
            "INSERT INTO identities (id, email, name, totp_enabled, created_at, updated_at) "
            "VALUES (1, 'jose@example.com', 'José Álvarez', 0, '2026-01-01', '2026-01-01')",
            "INSERT INTO memberships (id, account_id, identity_id, role_id, user_type, status, "
            "language, created_at) VALUES (1, 1, 1, 1, 'full', 'inactive', 'en', '2026-01-01')",
        ):
            connection.execute(text(statement))
    upgrade(url)
    with engine.connect() as connection:
        row = connection.execute(text(
            "SELECT search_name, search_surname, search_email, inactive_reason "
            "FROM memberships")).one()
    engine.dispose()
    assert tuple(row) == ("jose alvarez", "alvarez", "jose@example.com", "disabled")


def test_create_account_takes_the_plan_seats_and_period(postgres: PostgresServer):
    url = postgres.create_database(f"cli_{uuid.uuid4().hex[:6]}")
    assert provision("migrate", database_url=url).returncode == 0
    made = provision("create-account", "--name", "Annual", "--admin-email",
                     f"annual-{uuid.uuid4().hex[:6]}@example.com", "--admin-password",
                     "a long password", "--plan", "pro", "--seats", "3", "--period", "annual",
                     database_url=url)
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)

    from falcon.testing import TestClient

    from tests.conftest import activate, deactivate

    previous = activate({"PROVISIONING_DATABASE_URL": url})
    try:
        from api.app import create_app

        billing = TestClient(create_app()).simulate_get(
            f"/v1/accounts/{created['account_id']}/billing",
            headers={"Authorization": f"Bearer {created['admin_token']}"}).json
    finally:
        deactivate(previous)
    assert (billing["plan"], billing["period"], billing["seats"]["purchased"]) == (
        "pro", "annual", 3)
    assert billing["trial_ends_at"] is None
    bad = provision("create-account", "--name", "X", "--admin-email", "x@example.com",
                    "--admin-password", "a long password", "--period", "weekly",
                    database_url=url)
    assert bad.returncode == 2 and "period" in bad.stderr
