"""What the benchmarks share: the product's environment on throwaway servers, and an account."""

from __future__ import annotations

import os
import secrets
import tempfile
import uuid
from pathlib import Path

from tests.support.servers import MailSink, RedisServer


def work_dir() -> Path:
    """Where a bench keeps its servers' logs and files: ``BENCH_DIR``, or a new temporary
    directory; readable by the ``postgres`` user a root run starts PostgreSQL as."""
    work = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="provisioner-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    return work


def bench_env(work: Path, database_url: str, redis: RedisServer, sink: MailSink, api_port: int,
              **overrides: str) -> dict[str, str]:
    """The settings every process of a bench reads (``overrides``: more PROVISIONING_ ones)."""
    return {
        "PROVISIONING_DATABASE_URL": database_url,
        "PROVISIONING_BROKER_URL": redis.url(0),
        "PROVISIONING_SMTP_PORT": str(sink.smtp_port),
        "PROVISIONING_VAR_DIR": str(work / "var"),
        "PROVISIONING_SECRET_KEY": secrets.token_hex(32),  # the API and worker require one
        "PROVISIONING_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        **{f"PROVISIONING_{name.upper()}": value for name, value in overrides.items()},
    }


def new_account(seats: int) -> tuple[int, str]:
    """A paid account with ``seats`` purchased: its id and its admin's API key."""
    from provisioning.accounts.workspaces import create_account
    from provisioning.core.db import session_scope

    with session_scope() as session:
        made = create_account(session, name="Bench", plan="base", seats=seats,
                              admin_email=f"admin-{uuid.uuid4().hex[:8]}@bench.example.com",
                              admin_password="bench password")
    return made.account_id, made.admin_token
