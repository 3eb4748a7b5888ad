"""Invitation links derive from PROVISIONING_SECRET_KEY. The development key is public, so the
API, the worker and beat start with it only on the embedded set-up `make run` starts (SQLite
and the filesystem broker); against PostgreSQL or Redis they refuse, and say which setting."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from provisioning.core.config import (
    DEVELOPMENT_SECRET_KEY,
    MissingSecretKey,
    load_settings,
)
from tests.support.processes import VENV_BIN, ManagedProcess, free_port, wait_until
from tests.support.servers import PostgresServer, RedisServer

SQLITE = "sqlite:///{var_dir}/provisioner.sqlite3"
CELERY = [str(VENV_BIN / "celery"), "-A", "worker"]
WORKER = [*CELERY, "worker", "--loglevel", "INFO", "--concurrency", "1", "--pool", "solo",
          "--without-mingle", "--without-gossip"]


def shell(var_dir: Path, **settings: str) -> dict[str, str]:
    """An operator's shell that sets no secret key: only ``settings``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROVISIONING_")}
    env["PROVISIONING_VAR_DIR"] = str(var_dir)
    env.update({f"PROVISIONING_{key.upper()}": value for key, value in settings.items()})
    return env


@pytest.mark.parametrize(("database", "broker", "refused"), [
    ("sqlite", "filesystem://", False),
    ("postgresql+psycopg://db/provisioner", "redis://redis:6379/0", True),
    ("sqlite", "redis://redis:6379/0", True),
    ("postgresql+psycopg://db/provisioner", "filesystem://", True),
])
def test_the_development_key_is_only_for_the_embedded_set_up(
        database: str, broker: str, refused: bool, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVISIONING_SECRET_KEY", raising=False)
    config = dataclasses.replace(
        load_settings(), secret_key=DEVELOPMENT_SECRET_KEY, broker_url=broker,
        database_url=SQLITE.format(var_dir=tmp_path) if database == "sqlite" else database)
    if refused:
        with pytest.raises(MissingSecretKey, match="PROVISIONING_SECRET_KEY"):
            config.require_secret_key()
    else:
        config.require_secret_key()
    dataclasses.replace(config, secret_key="a-real-secret-key").require_secret_key()
    with pytest.raises(MissingSecretKey):
        dataclasses.replace(config, secret_key="", database_url="postgresql+psycopg://db/x"
                            ).require_secret_key()


@pytest.fixture
def production(postgres: PostgresServer, redis_server: RedisServer, tmp_path: Path
               ) -> dict[str, str]:
    """PostgreSQL and Redis that answer, and no secret key."""
    return shell(tmp_path, database_url=postgres.create_database("secret_key_check"),
                 broker_url=redis_server.url(0))


def _refused(process: ManagedProcess, started: Callable[[], bool] = lambda: False) -> None:
    """The process exits with an error naming the setting, instead of starting."""
    try:
        wait_until(lambda: not process.running() or started(), timeout=30,
                   message=f"{process.name} to stop")
        assert not process.running(), f"{process.name} started:\n{process.log()[-2000:]}"
        assert process.process is not None and process.process.returncode != 0
        assert "PROVISIONING_SECRET_KEY" in process.log(), process.log()[-2000:]
    finally:
        process.stop()


def _answers(port: int) -> bool:
    return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200


def _web(log_dir: Path, env: dict[str, str], port: int) -> ManagedProcess:
    return ManagedProcess("gunicorn-key", [
        str(VENV_BIN / "gunicorn"), "-c", "python:api.gunicorn_conf", "api.wsgi:app",
        "--bind", f"127.0.0.1:{port}", "--workers", "1"], log_dir=log_dir, env=env).start()


def test_the_api_refuses_the_development_key_on_postgresql_and_redis(
        production: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    _refused(_web(tmp_path, production, port), lambda: _answers(port))


def test_the_worker_and_beat_refuse_the_development_key_on_postgresql_and_redis(
        production: dict[str, str], tmp_path: Path) -> None:
    worker = ManagedProcess("worker-key", WORKER, log_dir=tmp_path, env=production).start()
    _refused(worker, lambda: " ready." in worker.log())
    beat = [*CELERY, "beat", "--loglevel", "INFO", "--schedule", str(tmp_path / "beat")]
    _refused(ManagedProcess("beat-key", beat, log_dir=tmp_path, env=production).start())


def test_the_api_and_the_worker_start_with_the_development_key_on_the_embedded_set_up(
        tmp_path: Path) -> None:
    env = shell(tmp_path)
    port = free_port()
    web = _web(tmp_path, env, port)
    worker = ManagedProcess("worker-embedded", WORKER, log_dir=tmp_path, env=env).start()
    try:
        wait_until(lambda: _answers(port), timeout=60,
                   message=f"gunicorn to answer\n{web.log()[-2000:]}")
        worker.wait_for_log(" ready.", timeout=90)
    finally:
        web.stop()
        worker.stop()
