"""TOTP secrets stored in clear before migration 0012 are sealed by it, and nothing that
hangs off an identity is lost on the way (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import create_engine, text

from provisioning.access.codes import open_secret
from provisioning.core.migrate import upgrade
from tests.conftest import activate, deactivate


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'sealed.sqlite3'}"
    previous = activate({"PROVISIONING_DATABASE_URL": url,
                         "PROVISIONING_BROKER_URL": "filesystem://",
                         "PROVISIONING_VAR_DIR": str(tmp_path)})
    yield url
    deactivate(previous)


def test_the_migration_seals_secrets_stored_in_clear(database: str) -> None:
    upgrade(database, "0011")
    secret = pyotp.random_base32()
    engine = create_engine(database)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO identities (email, name, totp_secret, totp_enabled, created_at, "
            "updated_at) VALUES ('ana@example.com', 'Ana', :secret, 1, '2026-01-01', "
            "'2026-01-01')"), {"secret": secret})
        connection.execute(text(
            "INSERT INTO api_tokens (identity_id, kind, name, token_hash, created_at) "
            "VALUES (1, 'session', '', 'h', '2026-01-01')"))
    upgrade(database)
    with engine.begin() as connection:
        stored = connection.execute(text("SELECT totp_secret FROM identities")).scalar_one()
        sessions = connection.execute(text("SELECT count(*) FROM api_tokens")).scalar_one()
    assert sessions == 1, "the identity's sessions outlive the migration"
    assert stored != secret and secret not in stored
    assert open_secret(stored) == secret
