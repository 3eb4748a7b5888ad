"""All configuration, read from the environment in this one place.

Each setting is a field of ``Settings`` declared with ``setting(default, meaning)``:
its variable is ``PROVISIONING_`` plus the field's name in capitals, its type is the
field's, and ``docs/configuration.md`` is generated from these declarations
(``provision settings --markdown``). Defaults are the embedded set-up `make run`
uses: a SQLite file and kombu's filesystem transport under ``var/``, the mailsink
on 127.0.0.1:1025 (SMTP) and :8025 (HTTP), the API on 127.0.0.1:8000.

Nothing reads a setting when a module is imported: ``settings()`` reads them all
once, on first use (``settings.cache_clear()`` reads them again).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, get_type_hints
from urllib.parse import urlsplit

from provisioning.mail.sender import SmtpServer

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "PROVISIONING_"
DEVELOPMENT_SECRET_KEY = "insecure-development-key-change-me"
SETTING = "provisioning.setting"  # the key of a field's metadata that makes it a setting


class MissingSecretKey(RuntimeError):
    """A process that signs invitation links was started without a secret key of its own."""


class Declared(NamedTuple):
    """How one setting is declared: its default as the environment would spell it."""

    default: str
    meaning: str
    parse: Callable[[str], Any] | None  # None: by the field's type
    secret: bool  # never in a log line; may come from the file ``…_FILE`` names


def setting(default: str, meaning: str, *, parse: Callable[[str], Any] | None = None,
            secret: bool = False) -> Any:
    """Declare a field of ``Settings`` read from ``PROVISIONING_<FIELD>``.

    ``default`` may name ``{repo}`` (the checkout) and ``{var_dir}`` (the setting).
    """
    return field(repr=not secret,
                 metadata={SETTING: Declared(default, meaning, parse, secret)})


def _optional(text: str) -> str | None:
    return text or None


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


def _resolved(text: str) -> Path:
    return Path(text).resolve()


def _networks(text: str) -> tuple[str, ...]:
    networks = tuple(part.strip() for part in text.split(",") if part.strip())
    for network in networks:
        ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
    return networks


def _url(text: str) -> str:
    return text.rstrip("/")


def _keyword(text: str) -> str:
    return text.strip().lower()


def _list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _amounts(text: str) -> tuple[tuple[str, int], ...]:
    """``name=number`` pairs, comma-separated (e.g. plan prices in cents)."""
    pairs = []
    for part in text.split(","):
        if not part.strip():
            continue
        name, _, number = part.partition("=")
        if not name.strip() or int(number) < 0:  # ValueError names a bad number
            raise ValueError(f"not name=number: {part!r}")
        pairs.append((name.strip(), int(number)))
    return tuple(pairs)


@dataclass(frozen=True)
class Settings:
    var_dir: Path = setting(
        "{repo}/var", "where the embedded database, broker folders, beat schedule and demo "
        "login are kept", parse=_resolved)
    database_url: str = setting(
        "sqlite:///{var_dir}/provisioner.sqlite3",
        "the database, e.g. `postgresql+psycopg://user:pw@host/db`")
    broker_url: str = setting(
        "filesystem://", "the Celery broker, e.g. `redis://host:6379/0`, or "
        "`rediss://host:6380/0` for TLS: the broker's certificate and name are checked against "
        "the system's CAs or `?ssl_ca_certs=/path/ca.pem`; `ssl_cert_reqs=required|optional|none` "
        "(default `required`); `ssl_certfile` and `ssl_keyfile` for a client certificate. A TLS "
        "setting that cannot work stops the process at start-up")
    # Processes
    api_bind: str = setting("127.0.0.1:8000", "where gunicorn serves the API (host:port)")
    web_workers: int = setting("2", "gunicorn worker processes serving the API")
    # What one request may send; a bigger or deeper body is refused before it is read whole.
    max_body_bytes: int = setting(
        "1048576", "the largest request body the API reads (1 MB), with or without a "
        "Content-Length; import files have their own limit, `PROVISIONING_IMPORT_MAX_BYTES`")
    max_json_depth: int = setting(
        "32", "how deeply arrays and objects may nest in a JSON request body")
    worker_concurrency: int = setting(
        "2", "processes of each Celery worker (0: one per CPU core)")
    mailsink_url: str = setting(
        "http://127.0.0.1:8025", "the SMTP sink's HTTP viewer: where `make run` starts it "
        "and what it prints", parse=_url)
    # The SMTP relay
    smtp_host: str = setting("127.0.0.1", "the SMTP relay emails go to")
    smtp_port: int = setting("1025", "the SMTP relay's port")
    smtp_security: str = setting(
        "none", "`starttls` (port 587) or `tls` (TLS from the first byte, port 465); the "
        "relay's certificate and name are checked", parse=_keyword)
    smtp_username: str | None = setting(
        "", "the relay's login (AUTH), sent only over `starttls` or `tls`", parse=_optional)
    smtp_password: str | None = setting(
        "", "the relay's password", parse=_optional, secret=True)
    smtp_ca_file: Path | None = setting(
        "", "a PEM bundle to trust instead of the system's CAs, for a relay with a private CA",
        parse=_optional_path)
    smtp_timeout: float = setting("30", "seconds an SMTP connection waits for the relay")
    # SMTP connections each worker process keeps open and sends over at once.
    smtp_connections: int = setting(
        "8", "SMTP connections each worker process keeps open and sends over at once")
    public_url: str = setting(
        "http://127.0.0.1:8000", "base of links in emails", parse=_url)
    secret_key: str = setting(
        DEVELOPMENT_SECRET_KEY, "**set it**: invitation links derive from it; the API, worker "
        "and beat refuse the development key except on SQLite with the filesystem broker",
        secret=True)
    previous_secret_keys: tuple[str, ...] = setting(
        "", "keys `SECRET_KEY` had before, comma-separated: what was sealed or linked with them "
        "keeps working while `provision reseal-secrets` moves it to the current key",
        parse=_list, secret=True)
    api_token: str | None = setting(
        "", "an admin's API token, for `provision import` through the API without `--token`",
        parse=_optional, secret=True)
    mail_from: str = setting("no-reply@provisioner.local", "sender address")
    mail_from_name: str = setting("Provisioner", "sender name")
    product_name: str = setting("Provisioner", "the product's name in emails and pages")
    # Sessions and invitations
    session_ttl_seconds: int = setting("43200", "how long a login session lasts")
    login_failures_per_email: int = setting(
        "5", "failed logins (password or code) for one email within the window, after which "
        "login answers 429 until the oldest ages out, even with the right password")
    login_failures_per_address: int = setting(
        "100", "failed logins from one client address within the window (an office behind "
        "one address is not locked out by one person)")
    login_failure_window_seconds: float = setting(
        "900", "the window failed logins are counted in")
    trusted_proxies: tuple[str, ...] = setting(
        "", "addresses or networks (comma-separated, e.g. `10.0.0.0/8`) of the proxies whose "
        "`X-Forwarded-For` is believed; otherwise the client is the connection's address",
        parse=_networks)
    invitation_ttl_days: int = setting("7", "how long an invitation link works")
    email_change_ttl_hours: int = setting(
        "24", "how long the link confirming a change of login email works")
    photo_max_bytes: int = setting(
        "2097152", "the largest profile photo upload (2 MB), PNG, JPEG or WebP")
    photo_max_pixels: int = setting(
        "25000000", "the most pixels a profile photo may decode to (decompression bombs "
        "are refused before decoding)")
    invitation_resend_interval_seconds: int = setting(
        "60", "the least time between two sends of one invitation")
    invitation_resends_per_day: int = setting("5", "sends of one invitation a day at most")
    # Outbox: how many emails one task claims and sends, how long a claim lasts
    # before another worker may take the row over, and the retry schedule.
    outbox_batch_size: int = setting("500", "emails one send task claims")
    # A send task goes on claiming mail that comes due while it sends, for this long,
    # at most one claim per interval: mail trickling in rides on the task already running.
    outbox_drain_seconds: float = setting(
        "2", "how long one send task goes on claiming mail that comes due while it sends")
    outbox_claim_interval_seconds: float = setting(
        "0.25", "the least time between two claims of one send task")
    # Outcomes are marked in groups of at most this many, at most this old; at most
    # two groups wait unmarked, so a crash resends (same Message-IDs) no more than those.
    outbox_mark_group_size: int = setting(
        "32", "sent emails are marked in groups of at most this many")
    outbox_mark_interval_seconds: float = setting(
        "0.1", "… and at most this old")
    outbox_lease_seconds: int = setting(
        "300", "how long a claim on an email lasts before another worker may take it over")
    outbox_retention_days: int = setting(
        "30", "sent and failed emails are deleted this long after their last attempt, "
        "except the last email of an open invitation")
    outbox_max_attempts: int = setting("12", "attempts at an email before it is failed")
    outbox_retry_base_seconds: float = setting(
        "5", "retries back off from this delay, doubling each attempt (with jitter)")
    outbox_retry_max_seconds: float = setting("1800", "the longest delay between two retries")
    outbox_dispatch_window_seconds: float = setting(
        "0.5", "at most one wake-up of the send task per this long per process (the first "
        "at once)")
    # Beat: how often each sweeper and purge runs
    outbox_sweep_seconds: float = setting(
        "30", "how often beat re-enqueues due emails no task has taken")
    outbox_purge_seconds: float = setting(
        "3600", "how often beat deletes emails past their retention")
    job_sweep_seconds: float = setting(
        "30", "how often beat resumes jobs whose claim has lapsed")
    season_sweep_seconds: float = setting(
        "300", "how often beat activates and deactivates seasonal members at their window's "
        "edges (logins and tokens outside a window are refused at once, whatever the run)")
    job_purge_seconds: float = setting(
        "21600", "how often beat deletes jobs past their retention")
    # Redis redelivers an unacknowledged message after this long; every countdown
    # stays below it so a delayed retry is never delivered twice by the broker.
    broker_visibility_timeout: int = setting(
        "3600", "seconds before Redis redelivers a message no worker acknowledged")
    default_language: str = setting("en", "the language of emails when none is chosen")
    # Bulk import: upload limits, rows written per transaction (one checkpoint each),
    # how long one task works on a job before it yields the worker to other jobs,
    # and how long a silent running job keeps its claim before a sweeper resumes it.
    import_max_bytes: int = setting("52428800", "the largest import file (50 MB)")
    import_max_rows: int = setting("1000000", "the most rows in one import file")
    imports_per_hour: int = setting(
        "30", "imports (dry runs and commits alike) one account may start in an hour")
    import_chunk_rows: int = setting(
        "10000", "rows written per transaction of an import (one checkpoint each)")
    job_slice_seconds: float = setting(
        "10", "how long one task works on a job before it yields the worker to other jobs")
    job_lease_seconds: float = setting(
        "60", "how long a silent running job keeps its claim before a sweeper resumes it")
    # Member lifecycle: records moved per transaction of a reassignment (one checkpoint
    # each), members handled per transaction of a bulk action, and the most one may name.
    reassign_chunk_rows: int = setting(
        "20000", "records a reassignment moves per transaction (one checkpoint each)")
    bulk_chunk_members: int = setting(
        "100", "members a bulk action handles per transaction (one checkpoint each)")
    bulk_max_members: int = setting("10000", "the most members one bulk action may name")
    job_retention_days: int = setting(
        "30", "finished jobs, their reports and staged rows are kept this long")
    # Notifications: the digest's beat run, the push outbox and the Telegram adapter.
    notification_digest_seconds: float = setting(
        "300", "how often beat sends the digests of people whose local digest time has passed")
    notification_digest_batch_size: int = setting(
        "5000", "digests one transaction of the digest run makes")
    push_sweep_seconds: float = setting(
        "30", "how often beat sends push notifications that are due (retries, lost wake-ups)")
    push_batch_size: int = setting("200", "push notifications one send task claims")
    push_lease_seconds: int = setting(
        "120", "how long a claim on a push notification lasts before another worker may take "
        "it over")
    push_max_attempts: int = setting("8", "attempts at a push notification before it is failed")
    push_retry_base_seconds: float = setting(
        "5", "push retries back off from this delay, doubling each attempt (with jitter)")
    push_retry_max_seconds: float = setting(
        "1800", "the longest delay between two push retries")
    telegram_api_url: str = setting(
        "https://api.telegram.org", "the Telegram Bot API's base URL", parse=_url)
    telegram_bot_token: str | None = setting(
        "", "the Telegram bot's token; without it Telegram notifications are not sent",
        parse=_optional, secret=True)
    push_timeout_seconds: float = setting(
        "10", "seconds a push adapter waits for its service")
    mobile_push_url: str | None = setting(
        "", "a gorush-compatible push gateway's base URL (it serves `/api/push` and forwards to "
        "APNs and FCM); without it mobile notifications are not sent", parse=_optional)
    web_push_private_key: str | None = setting(
        "", "the VAPID private key (PEM, or the raw key in base64url) that signs Web Push "
        "requests; without it browser notifications are not sent", parse=_optional,
        secret=True)
    web_push_subject: str | None = setting(
        "", "the VAPID contact push services may write to (`mailto:` or `https:`); by default "
        "`mailto:` the sender address", parse=_optional)
    web_push_services: tuple[str, ...] = setting(
        "fcm.googleapis.com,push.services.mozilla.com,push.apple.com,notify.windows.com",
        "the push services a browser subscription may name: host names (their subdomains "
        "too) reached over https, or exact `http(s)://host:port` origins", parse=_list)
    push_devices_per_person: int = setting(
        "20", "the most phones and browsers one person may register for notifications")
    notification_retention_days: int = setting(
        "90", "in-app notifications and finished push messages are kept this long (digest "
        "marks a week)")
    # Billing: every billing event is announced once (its emails to the account's admins)
    # and, with a URL, POSTed signed to the operator's billing system from an outbox.
    billing_announce_seconds: float = setting(
        "30", "how often beat announces billing events no wake-up announced (emails, webhooks)")
    billing_seats_quiet_seconds: float = setting(
        "60", "seat purchases are announced once an account has bought none for this long, "
        "so an import that buys seats chunk by chunk sends its admins one email")
    billing_webhook_url: str | None = setting(
        "", "where every billing event is POSTed as signed JSON (see docs/billing-webhooks.md); "
        "empty: no webhook is queued", parse=_optional)
    billing_webhook_secret: str | None = setting(
        "", "the key billing webhooks are signed with (HMAC-SHA256); required with a URL",
        parse=_optional, secret=True)
    billing_webhook_timeout_seconds: float = setting(
        "10", "seconds a billing webhook POST waits for the receiver")
    billing_webhook_lease_seconds: float = setting(
        "60", "how long a claim on a billing webhook lasts before another worker may take it "
        "over (longer than the timeout)")
    billing_webhook_batch_size: int = setting("50", "billing webhooks one send task claims")
    billing_webhook_max_attempts: int = setting(
        "20", "attempts at a billing webhook before it is failed (with the default backoff, "
        "about 1.3 to 2.6 days of retries)")
    billing_webhook_retry_base_seconds: float = setting(
        "30", "billing webhook retries back off from this delay, doubling each attempt (with "
        "jitter)")
    billing_webhook_retry_max_seconds: float = setting(
        "21600", "the longest delay between two billing webhook retries")
    billing_webhook_sweep_seconds: float = setting(
        "30", "how often beat sends billing webhooks that are due (retries, lost wake-ups)")
    # Billing (SPEC §7, docs/billing.md): the plan catalog and the recalculation's schedule.
    billing_currency: str = setting("USD", "the currency of every price and charge")
    billing_prices_cents: tuple[tuple[str, int], ...] = setting(
        "base=1500,advanced=2500,pro=4500", "the paid plans and their price per seat per month "
        "in cents (`enterprise` is priced by contract)", parse=_amounts)
    billing_max_seats: tuple[tuple[str, int], ...] = setting(
        "", "seat caps of paid plans (`plan=seats`, comma-separated); none unless set",
        parse=_amounts)
    billing_annual_months: int = setting(
        "12", "how many months of the monthly price an annual period costs")
    billing_trial_days: int = setting("14", "how long a trial lasts")
    billing_trial_seats: int = setting("10", "the most seats a trial holds")
    billing_trial_ending_days: int = setting(
        "3", "a trial that ends within this many days records a `trial_ending` event")
    billing_unused_notice_days: int = setting(
        "7", "a paid period that renews within this many days with seats its account does not "
        "use records a `seats_unused` event, while the admin can still lower them")
    billing_recalc_delay_seconds: float = setting(
        "60", "a membership change waits this long before its account's billing is "
        "recalculated, so a burst of changes is recalculated once")
    billing_recalc_seconds: float = setting(
        "86400", "how often beat recalculates every account's billing")
    billing_due_sweep_seconds: float = setting(
        "60", "how often beat recalculates accounts whose changes are due (lost wake-ups)")
    # Built from the smtp_* settings above, checked when the settings are read.
    smtp: SmtpServer = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        try:
            smtp = SmtpServer(
                host=self.smtp_host, port=self.smtp_port, timeout=self.smtp_timeout,
                security=self.smtp_security, username=self.smtp_username,
                password=self.smtp_password, ca_file=self.smtp_ca_file)
        except ValueError as exc:
            raise ValueError(f"{PREFIX}SMTP_SECURITY / {PREFIX}SMTP_USERNAME: {exc}") from None
        object.__setattr__(self, "smtp", smtp)
        if self.billing_webhook_url and not self.billing_webhook_secret:
            raise ValueError(f"{PREFIX}BILLING_WEBHOOK_URL is set without "
                             f"{PREFIX}BILLING_WEBHOOK_SECRET: receivers could not tell the "
                             f"webhooks are ours")
        if self.billing_webhook_lease_seconds <= self.billing_webhook_timeout_seconds:
            raise ValueError(f"{PREFIX}BILLING_WEBHOOK_LEASE_SECONDS must exceed "
                             f"{PREFIX}BILLING_WEBHOOK_TIMEOUT_SECONDS, or a slow receiver's "
                             f"webhook could be sent twice at once")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """The current secret key first, then the ones it replaced."""
        return (self.secret_key, *self.previous_secret_keys)

    @property
    def uses_development_key(self) -> bool:
        return self.secret_key == DEVELOPMENT_SECRET_KEY

    @property
    def is_embedded(self) -> bool:
        """The set-up `make run` starts: a SQLite file and kombu's filesystem broker."""
        return self.is_sqlite and self.broker_url.startswith("filesystem://")

    def require_secret_key(self) -> None:
        """Refuse the public development key (or none) anywhere but the embedded set-up:
        with it, whoever reads the database can make a working invitation link."""
        if self.is_embedded or (self.secret_key.strip() and not self.uses_development_key):
            return
        raise MissingSecretKey(
            f"{PREFIX}SECRET_KEY is not set: the development key is only for the embedded "
            f"set-up (SQLite and the filesystem broker), and with it anyone who reads the "
            f"database can make working invitation links. Set {PREFIX}SECRET_KEY (or "
            f"{PREFIX}SECRET_KEY_FILE) to a long random value, e.g. the output of "
            f"`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`.")

    @property
    def mail_domain(self) -> str:
        return self.mail_from.rpartition("@")[2] or "provisioner.local"

    @property
    def mailsink_host_port(self) -> tuple[str, int]:
        url = urlsplit(self.mailsink_url)
        return url.hostname or "127.0.0.1", url.port or 80


class Entry(NamedTuple):
    """One row of the settings table."""

    variable: str
    field: str
    type: Any
    declared: Declared


def table() -> Iterator[Entry]:
    """Every setting, in declaration order: its variable, field, type and declaration."""
    types = get_type_hints(Settings)
    for item in dataclasses.fields(Settings):
        declared = item.metadata.get(SETTING)
        if declared is not None:
            yield Entry(PREFIX + item.name.upper(), item.name, types[item.name], declared)


def _by_type(kind: Any) -> Callable[[str], Any]:
    for parse in (int, float, Path, str):
        if kind is parse:
            return parse
    raise TypeError(f"no parser for {kind!r}: declare one with parse=")


def _raw(entry: Entry, defaults: dict[str, str]) -> str:
    if entry.declared.secret:
        path = os.environ.get(f"{entry.variable}_FILE")
        if path:
            try:
                return Path(path).read_text().rstrip("\r\n")
            except OSError as exc:
                raise ValueError(f"{entry.variable}_FILE: cannot read {path}: "
                                 f"{exc.strerror}") from None
    return os.environ.get(entry.variable, entry.declared.default.format(**defaults))


def load_settings() -> Settings:
    """Read the settings from the environment (no caching: tests change it)."""
    defaults = {"repo": str(REPO_ROOT)}
    values: dict[str, Any] = {}
    for entry in table():
        parse = entry.declared.parse or _by_type(entry.type)
        text = _raw(entry, defaults)
        try:
            values[entry.field] = parse(text)
        except ValueError as exc:
            raise ValueError(f"{entry.variable}: {text!r} is not valid: {exc}") from None
        if entry.field == "var_dir":
            defaults["var_dir"] = str(values["var_dir"])
    return Settings(**values)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def markdown_table() -> str:
    """``docs/configuration.md``: every setting with its default and meaning."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated from provisioning/core/config.py by `provision settings --markdown`;",
        "     edit the declarations there, then regenerate. -->",
        "",
        "Every setting is an environment variable, read once per process on first use.",
        "The defaults are the embedded set-up `make run` starts. A secret may instead be",
        "read from the file that `…_FILE` names (Docker and Kubernetes secrets).",
        "`{repo}` is the checkout, `{var_dir}` the value of `PROVISIONING_VAR_DIR`.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for entry in table():
        name = f"`{entry.variable}`"
        if entry.declared.secret:
            name += f" (or `{entry.variable}_FILE`)"
        default = entry.declared.default
        shown = "a development key" if entry.declared.secret and default else (
            f"`{default}`" if default else "—")
        meaning = entry.declared.meaning.replace("|", r"\|")
        lines.append(f"| {name} | {shown} | {meaning} |")
    return "\n".join(lines) + "\n"
