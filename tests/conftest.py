"""Fixtures: real PostgreSQL, Redis, mailsink and Celery workers, started by the tests."""

from __future__ import annotations

import os
import secrets
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from tests.support.processes import ManagedProcess
from tests.support.servers import (
    REDIS_DATABASES,
    MailSink,
    PostgresServer,
    RedisServer,
    start_mailsink,
    start_postgres,
    start_redis,
    start_worker,
)


@pytest.fixture(scope="session", autouse=True)
def task_sender() -> None:
    """The test process is an entrypoint too: services it calls enqueue through Celery."""
    from provisioning.core import dispatch
    from worker.celery_app import send_task

    dispatch.use_sender(send_task)


@pytest.fixture(scope="session")
def log_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="provisioner-tests-"))
    os.chmod(directory, 0o755)
    yield directory


@pytest.fixture(scope="session", autouse=True)
def private_defaults(log_dir: Path) -> None:
    """Outside a stack, the configuration's defaults point into this run's own directory,
    not the checkout's `var/`: a wake-up sent after its stack was torn down lands in a
    throwaway broker, never in the one `make run` reads."""
    activate({"PROVISIONING_VAR_DIR": str(log_dir / "var")})


@pytest.fixture(scope="session")
def postgres(log_dir: Path) -> Iterator[PostgresServer]:
    server = start_postgres(log_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(log_dir: Path) -> Iterator[RedisServer]:
    server = start_redis(log_dir)
    yield server
    server.stop()


_redis_databases = iter(range(1, REDIS_DATABASES))


def activate(env: dict[str, str]) -> dict[str, str | None]:
    """Point this test process's configuration at a stack; returns what to restore."""
    from provisioning.core.config import settings

    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    settings.cache_clear()
    return previous


def deactivate(previous: dict[str, str | None]) -> None:
    from provisioning.core.config import settings

    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    settings.cache_clear()


@dataclass
class AdminAccount:
    id: int
    token: str
    email: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Stack:
    """One running system: its database, broker, sink, worker, and the API in-process."""

    env: dict[str, str]
    sink: MailSink
    log_dir: Path
    name: str
    api: falcon.testing.TestClient = field(init=False)
    worker: ManagedProcess | None = None

    def __post_init__(self) -> None:
        from api.app import create_app

        self.api = falcon.testing.TestClient(create_app())

    def start_worker(self, **options: Any) -> ManagedProcess:
        self.worker = start_worker(self.log_dir, self.env, name=f"{self.name}-worker", **options)
        return self.worker

    def create_account(self, *, plan: str = "base", seats: int = 10,
                       language: str = "en") -> AdminAccount:
        from provisioning.accounts.workspaces import create_account
        from provisioning.core.db import session_scope

        email = f"admin-{uuid.uuid4().hex[:10]}@example.com"
        with session_scope() as session:
            created = create_account(session, name=f"Workspace {email[6:12]}", admin_email=email,
                                     admin_password="correct horse battery", admin_name="Ada Admin",
                                     plan=plan, seats=seats, language=language)
        return AdminAccount(created.account_id, created.admin_token, email)

    def invite(self, account: AdminAccount, **payload: Any) -> falcon.testing.Result:
        return self.api.simulate_post(f"/v1/accounts/{account.id}/users", json=payload,
                                      headers=account.headers)


def stack_env(*, database_url: str, broker_url: str, sink: MailSink, var_dir: Path,
             **overrides: str) -> dict[str, str]:
    env = {
        "PROVISIONING_DATABASE_URL": database_url,
        "PROVISIONING_BROKER_URL": broker_url,
        "PROVISIONING_SMTP_HOST": "127.0.0.1",
        "PROVISIONING_SMTP_PORT": str(sink.smtp_port),
        "PROVISIONING_VAR_DIR": str(var_dir),
        "PROVISIONING_PUBLIC_URL": "http://app.example.com",
        "PROVISIONING_SECRET_KEY": secrets.token_hex(16),
        "PROVISIONING_OUTBOX_SWEEP_SECONDS": "1",
        "PROVISIONING_OUTBOX_LEASE_SECONDS": "5",
        "PROVISIONING_OUTBOX_RETRY_BASE_SECONDS": "0.1",
        "PROVISIONING_OUTBOX_RETRY_MAX_SECONDS": "1",
        "PROVISIONING_OUTBOX_MAX_ATTEMPTS": "60",
    }
    env.update({f"PROVISIONING_{key.upper()}": value for key, value in overrides.items()})
    return env


@pytest.fixture(scope="module")
def make_stack(postgres: PostgresServer, redis_server: RedisServer, log_dir: Path,
               request: pytest.FixtureRequest) -> Iterator[Any]:
    """Build one stack for this module (own database, Redis db, sink, worker)."""
    started: list[tuple[Stack, dict[str, str | None]]] = []

    def build(*, worker: bool = True, sink_options: dict[str, object] | None = None,
              broker_url: str | None = None, **overrides: str) -> Stack:
        from provisioning.core.migrate import upgrade

        name = request.module.__name__.rsplit(".", 1)[-1]
        name += f"-{len(started) + 1}" if started else ""  # each stack its own logs and store
        var_dir = log_dir / name
        var_dir.mkdir(exist_ok=True)
        sink = start_mailsink(var_dir, name=f"{name}-mailsink", **(sink_options or {}))
        database_url = postgres.create_database(f"t_{name}_{uuid.uuid4().hex[:6]}")
        broker_url = broker_url or redis_server.url(next(_redis_databases))
        env = stack_env(database_url=database_url, broker_url=broker_url, sink=sink,
                        var_dir=var_dir, **overrides)
        previous = activate(env)
        upgrade()
        stack = Stack(env=env, sink=sink, log_dir=var_dir, name=name)
        started.append((stack, previous))
        if worker:
            stack.start_worker()
        return stack

    yield build
    for stack, previous in reversed(started):
        if stack.worker is not None:
            stack.worker.stop()
        stack.sink.stop()
        deactivate(previous)


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    """The default running system for a test module."""
    return make_stack()


class Clock:
    """A clock the test moves by hand (seconds since the epoch)."""

    def __init__(self) -> None:
        self.at = time.time()

    def __call__(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds


@pytest.fixture
def clock() -> Iterator[Clock]:
    """The clock rate limits and two-factor codes read, moved by the test."""
    from provisioning.access import limits

    moved = Clock()
    previous = limits.use_clock(moved)
    yield moved
    limits.use_clock(previous)
