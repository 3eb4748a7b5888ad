"""All configuration, read from the environment in this one place.

Defaults are the embedded set-up `make run` uses: a SQLite file and kombu's
filesystem transport under ``var/``, the mailsink on 127.0.0.1:1025.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from provisioning.mail.sender import SmtpServer

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "PROVISIONING_"
DEVELOPMENT_SECRET_KEY = "insecure-development-key-change-me"


def _env(name: str, default: str) -> str:
    return os.environ.get(PREFIX + name, default)


def _secret(name: str, default: str) -> str:
    """A secret from the environment, or from the file ``…_FILE`` names (Docker and
    Kubernetes secrets), its trailing newline dropped."""
    path = os.environ.get(f"{PREFIX}{name}_FILE")
    if path:
        try:
            return Path(path).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"{PREFIX}{name}_FILE: cannot read {path}: {exc.strerror}") from None
    return _env(name, default)


def _env_int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _env_float(name: str, default: float) -> float:
    return float(_env(name, str(default)))


@dataclass(frozen=True)
class Settings:
    var_dir: Path
    database_url: str
    broker_url: str
    smtp: SmtpServer
    # SMTP connections each worker process keeps open and sends over at once.
    smtp_connections: int
    public_url: str
    secret_key: str = field(repr=False)  # never in a log line
    mail_from: str
    mail_from_name: str
    product_name: str
    # Sessions and invitations
    session_ttl_seconds: int
    invitation_ttl_days: int
    invitation_resend_interval_seconds: int
    invitation_resends_per_day: int
    # Outbox: how many emails one task claims and sends, how long a claim lasts
    # before another worker may take the row over, and the retry schedule.
    outbox_batch_size: int
    # A send task goes on claiming mail that comes due while it sends, for this long,
    # at most one claim per interval: mail trickling in rides on the task already running.
    outbox_drain_seconds: float
    outbox_claim_interval_seconds: float
    # Outcomes are marked in groups of at most this many, at most this old; at most
    # two groups wait unmarked, so a crash resends (same Message-IDs) no more than those.
    outbox_mark_group_size: int
    outbox_mark_interval_seconds: float
    outbox_lease_seconds: int
    outbox_retention_days: int
    outbox_max_attempts: int
    outbox_retry_base_seconds: float
    outbox_retry_max_seconds: float
    outbox_sweep_seconds: float
    outbox_dispatch_window_seconds: float
    invitation_expiry_sweep_seconds: float
    # Redis redelivers an unacknowledged message after this long; every countdown
    # stays below it so a delayed retry is never delivered twice by the broker.
    broker_visibility_timeout: int
    default_language: str
    # Bulk import: upload limits, rows written per transaction (one checkpoint each),
    # how long one task works on a job before it yields the worker to other jobs,
    # and how long a silent running job keeps its claim before a sweeper resumes it.
    import_max_bytes: int
    import_max_rows: int
    import_chunk_rows: int
    job_slice_seconds: float
    job_lease_seconds: float
    job_sweep_seconds: float
    job_retention_days: int

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def uses_development_key(self) -> bool:
        return self.secret_key == DEVELOPMENT_SECRET_KEY

    @property
    def mail_domain(self) -> str:
        return self.mail_from.rpartition("@")[2] or "provisioner.local"


def _smtp_server() -> SmtpServer:
    # Read first, so a port or timeout that is not a number is not blamed on the TLS setting.
    host, port = _env("SMTP_HOST", "127.0.0.1"), _env_int("SMTP_PORT", 1025)
    timeout = _env_float("SMTP_TIMEOUT", 30.0)
    password = _secret("SMTP_PASSWORD", "") or None
    ca_file = _env("SMTP_CA_FILE", "")
    try:
        return SmtpServer(
            host=host, port=port, timeout=timeout,
            security=_env("SMTP_SECURITY", "none").strip().lower(),
            username=_env("SMTP_USERNAME", "") or None,
            password=password,
            ca_file=Path(ca_file) if ca_file else None,
        )
    except ValueError as exc:
        raise ValueError(f"{PREFIX}SMTP_SECURITY / {PREFIX}SMTP_USERNAME: {exc}") from None


def load_settings() -> Settings:
    """Read the settings from the environment (no caching: tests change it)."""
    var_dir = Path(_env("VAR_DIR", str(REPO_ROOT / "var"))).resolve()
    return Settings(
        var_dir=var_dir,
        database_url=_env("DATABASE_URL", f"sqlite:///{var_dir / 'provisioner.sqlite3'}"),
        broker_url=_env("BROKER_URL", "filesystem://"),
        smtp=_smtp_server(),
        smtp_connections=_env_int("SMTP_CONNECTIONS", 8),
        public_url=_env("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
        secret_key=_secret("SECRET_KEY", DEVELOPMENT_SECRET_KEY),
        mail_from=_env("MAIL_FROM", "no-reply@provisioner.local"),
        mail_from_name=_env("MAIL_FROM_NAME", "Provisioner"),
        product_name=_env("PRODUCT_NAME", "Provisioner"),
        session_ttl_seconds=_env_int("SESSION_TTL_SECONDS", 12 * 3600),
        invitation_ttl_days=_env_int("INVITATION_TTL_DAYS", 7),
        invitation_resend_interval_seconds=_env_int("INVITATION_RESEND_INTERVAL_SECONDS", 60),
        invitation_resends_per_day=_env_int("INVITATION_RESENDS_PER_DAY", 5),
        outbox_batch_size=_env_int("OUTBOX_BATCH_SIZE", 500),
        outbox_drain_seconds=_env_float("OUTBOX_DRAIN_SECONDS", 2.0),
        outbox_claim_interval_seconds=_env_float("OUTBOX_CLAIM_INTERVAL_SECONDS", 0.25),
        outbox_mark_group_size=_env_int("OUTBOX_MARK_GROUP_SIZE", 32),
        outbox_mark_interval_seconds=_env_float("OUTBOX_MARK_INTERVAL_SECONDS", 0.1),
        outbox_lease_seconds=_env_int("OUTBOX_LEASE_SECONDS", 300),
        outbox_retention_days=_env_int("OUTBOX_RETENTION_DAYS", 30),
        outbox_max_attempts=_env_int("OUTBOX_MAX_ATTEMPTS", 12),
        outbox_retry_base_seconds=_env_float("OUTBOX_RETRY_BASE_SECONDS", 5.0),
        outbox_retry_max_seconds=_env_float("OUTBOX_RETRY_MAX_SECONDS", 1800.0),
        outbox_sweep_seconds=_env_float("OUTBOX_SWEEP_SECONDS", 30.0),
        outbox_dispatch_window_seconds=_env_float("OUTBOX_DISPATCH_WINDOW_SECONDS", 0.5),
        invitation_expiry_sweep_seconds=_env_float("INVITATION_EXPIRY_SWEEP_SECONDS", 300.0),
        broker_visibility_timeout=_env_int("BROKER_VISIBILITY_TIMEOUT", 3600),
        default_language=_env("DEFAULT_LANGUAGE", "en"),
        import_max_bytes=_env_int("IMPORT_MAX_BYTES", 50 * 1024 * 1024),
        import_max_rows=_env_int("IMPORT_MAX_ROWS", 1_000_000),
        import_chunk_rows=_env_int("IMPORT_CHUNK_ROWS", 10_000),
        job_slice_seconds=_env_float("JOB_SLICE_SECONDS", 10.0),
        job_lease_seconds=_env_float("JOB_LEASE_SECONDS", 60.0),
        job_sweep_seconds=_env_float("JOB_SWEEP_SECONDS", 30.0),
        job_retention_days=_env_int("JOB_RETENTION_DAYS", 30),
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
