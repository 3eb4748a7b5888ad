"""Throwaway Redis, PostgreSQL, mailsink and Celery workers for the integration tests."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import psycopg

from tests.support.processes import (
    VENV_BIN,
    ManagedProcess,
    free_port,
    port_open,
    wait_until,
)

if TYPE_CHECKING:
    from tests.support.tls import TlsFiles


def postgres_bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed: run `make test`, which installs it")
    return Path(candidates[-1]).parent


@dataclass
class PostgresServer:
    port: int
    process: ManagedProcess
    directory: Path

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_postgres(log_dir: Path) -> PostgresServer:
    """A private cluster on a free port; as root it runs as `postgres` (initdb refuses root)."""
    bindir = postgres_bindir()
    directory = Path(tempfile.mkdtemp(prefix="provisioner-pg-"))
    os.chmod(directory, 0o755)
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    data = directory / "data"
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
         "-E", "UTF8", "--locale=C", "--no-sync"],
        check=True, user=user, capture_output=True, cwd=directory,
    )
    port = free_port()
    process = ManagedProcess(
        "postgres",
        [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(directory),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off", "-c", "max_connections=300"],
        log_dir=log_dir, user=user, cwd=directory, stop_signal="SIGINT",
    ).start()
    server = PostgresServer(port, process, directory)

    def accepting() -> bool:
        if not process.running():
            raise RuntimeError(f"postgres exited:\n{process.log()[-3000:]}")
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
                             connect_timeout=1):
            return True

    wait_until(accepting, timeout=60, message="PostgreSQL to accept connections")
    return server


@dataclass
class RedisServer:
    port: int
    process: ManagedProcess
    tls: TlsFiles | None = None

    def url(self, db: int = 0) -> str:
        """The broker URL; over TLS it names the CA that signed the server's certificate."""
        if self.tls is None:
            return f"redis://127.0.0.1:{self.port}/{db}"
        query = urlencode({"ssl_cert_reqs": "required", "ssl_ca_certs": str(self.tls.ca)})
        return f"rediss://127.0.0.1:{self.port}/{db}?{query}"

    def stop(self) -> None:
        self.process.stop()


REDIS_DATABASES = 256  # one per stack a test session builds (db 0 stays unused)


def start_redis(log_dir: Path, port: int | None = None, *, tls: TlsFiles | None = None
                ) -> RedisServer:
    """A Redis on a free port; with ``tls`` it speaks TLS only, on that port."""
    port = port or free_port()
    listen = ["--port", str(port)]
    if tls is not None:
        listen = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tls.certificate),
                  "--tls-key-file", str(tls.key), "--tls-ca-cert-file", str(tls.ca),
                  "--tls-auth-clients", "no"]
    process = ManagedProcess(
        "redis",
        ["redis-server", *listen, "--bind", "127.0.0.1", "--save", "",
         "--databases", str(REDIS_DATABASES),
         "--appendonly", "no", "--dir", str(log_dir)],
        log_dir=log_dir,
    ).start()
    wait_until(lambda: port_open(port), timeout=30, message="Redis to listen")
    return RedisServer(port, process, tls)


@dataclass
class MailSink:
    """The real SMTP sink, and a small client for its JSON API."""

    smtp_port: int
    http_port: int
    process: ManagedProcess
    database: Path
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.http_port}", timeout=30)

    def messages(self, *, to: str | None = None, q: str | None = None) -> list[dict[str, Any]]:
        """Every stored message matching the filters, all pages."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {k: v for k, v in {"to": to, "q": q, "cursor": cursor,
                                         "limit": 1000}.items() if v}
            page = self.http.get("/api/messages", params=params).raise_for_status().json()
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def deliveries(self) -> dict[str, tuple[int, int]]:
        """address -> (distinct messages, deliveries), read from the sink's store directly.

        For tens of thousands of messages, where paging through the JSON API would
        move hundreds of megabytes.
        """
        with closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT r.address, COUNT(DISTINCT r.message), SUM(m.delivery_count)"
                " FROM recipients r JOIN messages m ON m.id = r.message GROUP BY r.address"
            ).fetchall()
        return {address.lower(): (messages, count) for address, messages, count in rows}

    def restart(self) -> None:
        """Start the sink again on the same ports and store (after ``stop``)."""
        self.process.start()
        wait_until(lambda: port_open(self.smtp_port) and port_open(self.http_port), timeout=30,
                   message="the mailsink to listen again")

    def total(self) -> int:
        """How many messages the sink holds, without reading them."""
        page = self.http.get("/api/messages", params={"limit": 1}).raise_for_status().json()
        return int(page["total"])

    def clear(self) -> None:
        self.http.delete("/api/messages").raise_for_status()

    def stop(self) -> None:
        self.process.stop()


def start_mailsink(log_dir: Path, *, name: str = "mailsink", **options: object) -> MailSink:
    """The sink with its command-line ``options`` (``tempfail_rate=0.5``, ``tls_cert=…``)."""
    smtp_port, http_port = free_port(), free_port()
    argv = [sys.executable, "-m", "mailsink", "--smtp-port", str(smtp_port),
            "--http-port", str(http_port), "--db", str(log_dir / f"{name}.sqlite3")]
    for option, value in options.items():
        argv += [f"--{option.replace('_', '-')}", str(value).lower() if isinstance(value, bool)
                 else str(value)]
    process = ManagedProcess(name, argv, log_dir=log_dir).start()
    process.wait_for_log("mailsink ready", timeout=30)
    return MailSink(smtp_port, http_port, process, log_dir / f"{name}.sqlite3")


def start_web(log_dir: Path, env: dict[str, str], port: int, *, workers: int = 2,
              procfile: bool = False, name: str = "gunicorn") -> ManagedProcess:
    """gunicorn serving the API; returns once it answers. With ``procfile``, as the Procfile
    runs it (the product's gunicorn settings: access log and all), else quietly."""
    options = (["-c", "python:api.gunicorn_conf"] if procfile else [])
    process = ManagedProcess(name, [
        str(VENV_BIN / "gunicorn"), *options, "api.wsgi:app", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--log-level", "info" if procfile else "warning"],
        log_dir=log_dir, env=env).start()
    wait_until(lambda: port_open(port) and httpx.get(
        f"http://127.0.0.1:{port}/healthz").status_code == 200, timeout=60, message="gunicorn")
    return process


def start_worker(log_dir: Path, env: dict[str, str], *, name: str = "worker",
                 concurrency: int = 2, beat: bool = True) -> ManagedProcess:
    """A real Celery worker (prefork), with the beat schedule embedded when asked."""
    argv = [str(VENV_BIN / "celery"), "-A", "worker", "worker", "--loglevel", "INFO",
            "--concurrency", str(concurrency), "--pool", "prefork", "-n", f"{name}@%h",
            "--without-mingle", "--without-gossip"]
    if beat:
        argv += ["-B", "--schedule", str(Path(env["PROVISIONING_VAR_DIR"]) / f"{name}-beat")]
    process = ManagedProcess(name, argv, log_dir=log_dir, env=env).start()
    try:
        process.wait_for_log(" ready.", timeout=90)
    except BaseException:
        process.stop()  # no caller holds it yet to stop it later
        raise
    return process
