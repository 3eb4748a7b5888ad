"""Alembic environment: the URL comes from the settings, the schema from every package's models."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from provisioning.core.config import settings
from provisioning.core.db import Base, make_engine
from provisioning.core.schema import import_every_model

import_every_model()

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or settings().database_url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or settings().database_url)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection: Connection) -> None:
    if connection.dialect.name != "sqlite":
        _migrate(connection)
        return
    # SQLite alters a table by copying it and dropping the old one; with foreign keys on,
    # the drop first deletes its rows, cascading to the tables that reference it. So, as
    # SQLite's own procedure for altering tables says: keys off (only possible outside a
    # transaction), migrate in one transaction, check every key still holds before it
    # commits, keys on again once it has ended. SQLite's DDL is not transactional to
    # Alembic, so the transaction is this connection's own, begun before Alembic is
    # configured: Alembic then runs inside it instead of committing migration by migration.
    if connection.in_transaction():
        raise RuntimeError("SQLite migrations need a connection outside any transaction")
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys=OFF")
    if driver.execute("PRAGMA foreign_keys").fetchone()[0] != 0:
        raise RuntimeError("SQLite kept its foreign keys on; the migration would cascade")
    try:
        with connection.begin():
            _migrate(connection)
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
