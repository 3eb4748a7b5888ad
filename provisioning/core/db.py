"""Engine, sessions and the one place that runs work after a commit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import BindParameter, Engine, Select, bindparam, create_engine, delete, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction, sessionmaker

from provisioning.core.config import settings

AFTER_COMMIT = "after_commit_callbacks"
SAVEPOINT_MARKS = "after_commit_savepoint_marks"  # callbacks queued before each open savepoint


class Base(DeclarativeBase):
    pass


def make_engine(url: str) -> Engine:
    """An engine for SQLite (embedded) or PostgreSQL (production)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"isolation_level": None, "timeout": 30, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's deferred BEGIN lets two writers read, then one fails on write;
        # BEGIN IMMEDIATE serialises writers up front (seat checks rely on it).
        event.listen(engine, "begin", _begin_immediate)
        return engine
    # No pre-ping: it costs a round trip per request; a dropped connection is
    # recycled and the request that met it answers 503 (retry).
    return create_engine(url, pool_size=10, max_overflow=20, pool_recycle=1800)


def _begin_immediate(connection: Any) -> None:
    if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def prefixed_values(prefix: str, columns: tuple[str, ...]) -> dict[str, BindParameter[Any]]:
    """An insert's values as parameters named ``<prefix><column>``: the statement can then
    ride inside a bigger one (a data-modifying CTE) beside other tables' inserts."""
    return {column: bindparam(prefix + column) for column in columns}


@lru_cache(maxsize=4)
def engine_for(url: str) -> Engine:
    return make_engine(url)


def engine() -> Engine:
    return engine_for(settings().database_url)


@lru_cache(maxsize=4)
def _session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=engine_for(url), expire_on_commit=False)


def new_session() -> Session:
    return _session_factory(settings().database_url)()


@contextmanager
def session_scope() -> Iterator[Session]:
    """One transaction: commit on success, roll back on error, always close."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's transaction has committed (never on rollback).

    Used to enqueue Celery tasks only for rows that really exist.
    """
    callbacks = session.info.setdefault(AFTER_COMMIT, [])
    if callback not in callbacks:  # a thousand queued emails need one wake-up
        callbacks.append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: its work commits, or not, with the outer transaction
    callbacks = session.info.pop(AFTER_COMMIT, [])
    for callback in callbacks:
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    marks = session.info.get(SAVEPOINT_MARKS)
    if session.in_nested_transaction() and marks:
        # A savepoint rolled back: only what was asked for inside it is dropped.
        del session.info.setdefault(AFTER_COMMIT, [])[marks[-1]:]
        return
    session.info.pop(AFTER_COMMIT, None)


@event.listens_for(Session, "after_transaction_create")
def _mark_savepoint(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        session.info.setdefault(SAVEPOINT_MARKS, []).append(
            len(session.info.get(AFTER_COMMIT, [])))


@event.listens_for(Session, "after_transaction_end")
def _unmark_savepoint(session: Session, transaction: SessionTransaction) -> None:
    marks = session.info.get(SAVEPOINT_MARKS)
    if transaction.nested and marks:
        marks.pop()


# What concurrent writers can do to each other: take the same unique value, or remove a
# row the other refers to. Any other constraint failing (NOT NULL, CHECK) is a bug.
_CONFLICT_SQLSTATES = frozenset({"23505", "23503", "23P01"})  # unique, foreign key, exclusion
_CONFLICT_SQLITE = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY",
                              "SQLITE_CONSTRAINT_FOREIGNKEY"})


def is_conflict(error: IntegrityError) -> bool:
    """Whether an integrity error is a race with another writer, not a broken statement."""
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _CONFLICT_SQLSTATES
    return getattr(original, "sqlite_errorname", None) in _CONFLICT_SQLITE


def delete_in_chunks(model: Any, old: Select[Any], chunk: int) -> int:
    """Delete the rows of ``model`` whose ids ``old`` selects, ``chunk`` at a time, one
    transaction each, so a large backlog never holds a long lock; returns how many went."""
    purged = 0
    while True:
        with session_scope() as session:
            ids = list(session.scalars(old.limit(chunk)))
            if ids:
                session.execute(delete(model).where(model.id.in_(ids)))
        purged += len(ids)
        if len(ids) < chunk:
            return purged
