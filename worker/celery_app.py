"""The Celery application: broker from configuration, ids-only messages, late acks."""

from __future__ import annotations

import ssl
from datetime import timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from celery import Celery, signals
from kombu import Queue

from provisioning.core.config import MissingSecretKey, Settings, settings

SEND_QUEUE = "email"
DEFAULT_QUEUE = "default"


def broker_options(config: Settings) -> dict[str, object]:
    if config.broker_url.startswith("filesystem://"):
        # kombu's filesystem transport: one folder is both inbox and outbox.
        folder = config.var_dir / "broker"
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            "control_folder": str(folder / "control"),
        }
    return {"visibility_timeout": config.broker_visibility_timeout}


def broker_transport(config: Settings) -> str | None:
    """The transport for the broker URL: kombu's own, except Redis' (see redis_transport)."""
    if config.broker_url.startswith(("redis://", "rediss://")):
        return "worker.redis_transport:Transport"
    return None


CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL,
             "none": ssl.CERT_NONE}
SSL_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def broker_ssl(config: Settings) -> dict[str, object] | None:
    """TLS settings for a ``rediss://`` broker, read from its query as redis-py spells them.

    Naming our transport hides the scheme from kombu, which would otherwise switch
    TLS on itself, without checking the certificate; here it is checked unless the
    URL says ``ssl_cert_reqs=none``.
    """
    url = urlsplit(config.broker_url)
    if url.scheme != "rediss":
        return None
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    unknown = sorted(key for key in query
                     if key.startswith("ssl_") and key not in ("ssl_cert_reqs", *SSL_FILES))
    if unknown:
        raise ValueError(f"PROVISIONING_BROKER_URL: unknown TLS setting {', '.join(unknown)}; "
                         f"known are ssl_cert_reqs, {', '.join(SSL_FILES)}")
    reqs = query.get("ssl_cert_reqs", "required")
    cert_reqs = CERT_REQS.get(reqs.lower().removeprefix("cert_"))
    if cert_reqs is None:
        raise ValueError(f"PROVISIONING_BROKER_URL: ssl_cert_reqs is one of "
                         f"{', '.join(CERT_REQS)}, not {reqs!r}")
    return {"ssl_cert_reqs": cert_reqs, **{key: query.get(key) or None for key in SSL_FILES}}


def _without_ssl_query(broker_url: str) -> str:
    # kombu reads ssl_* from the URL too, and they would replace broker_use_ssl whole.
    url = urlsplit(broker_url)
    query = [(key, value) for key, value in parse_qsl(url.query, keep_blank_values=True)
             if not key.startswith("ssl_")]
    return urlunsplit(url._replace(query=urlencode(query)))


def create_app(config: Settings | None = None) -> Celery:
    config = config or settings()
    use_ssl = broker_ssl(config)
    broker_url = _without_ssl_query(config.broker_url) if use_ssl else config.broker_url
    app = Celery("provisioner", broker=broker_url)
    app.conf.update(
        broker_transport=broker_transport(config),
        broker_use_ssl=use_ssl,
        broker_transport_options=broker_options(config),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=DEFAULT_QUEUE,
        task_routes={"provisioning.send_emails": {"queue": SEND_QUEUE},
                     "provisioning.send_pushes": {"queue": SEND_QUEUE},
                     "provisioning.send_billing_webhooks": {"queue": SEND_QUEUE}},
        worker_concurrency=config.worker_concurrency or None,  # None: one per CPU core
        worker_prefetch_multiplier=4,
        worker_hijack_root_logger=False,
        beat_schedule={
            "sweep-outbox": {
                "task": "provisioning.sweep_outbox",
                "schedule": timedelta(seconds=config.outbox_sweep_seconds),
            },
            "sweep-jobs": {
                "task": "provisioning.sweep_jobs",
                "schedule": timedelta(seconds=config.job_sweep_seconds),
            },
            "purge-outbox": {
                "task": "provisioning.purge_outbox",
                "schedule": timedelta(seconds=config.outbox_purge_seconds),
            },
            "send-digests": {
                "task": "provisioning.send_digests",
                "schedule": timedelta(seconds=config.notification_digest_seconds),
            },
            "send-pushes": {
                "task": "provisioning.send_pushes",
                "schedule": timedelta(seconds=config.push_sweep_seconds),
            },
            "purge-notifications": {
                "task": "provisioning.purge_notifications",
                "schedule": timedelta(seconds=config.outbox_purge_seconds),
            },
            "announce-billing-events": {
                "task": "provisioning.announce_billing_events",
                "schedule": timedelta(seconds=config.billing_announce_seconds),
            },
            "send-billing-webhooks": {
                "task": "provisioning.send_billing_webhooks",
                "schedule": timedelta(seconds=config.billing_webhook_sweep_seconds),
            },
            "apply-seasons": {
                "task": "provisioning.apply_seasons",
                "schedule": timedelta(seconds=config.season_sweep_seconds),
            },
            "recalculate-billing": {  # every account, set-based (SPEC §7)
                "task": "provisioning.recalculate_billing",
                "schedule": timedelta(seconds=config.billing_recalc_seconds),
            },
            "recalculate-due-billing": {  # accounts changed, should a wake-up be lost
                "task": "provisioning.recalculate_due_billing",
                "schedule": timedelta(seconds=config.billing_due_sweep_seconds),
            },
            "purge-jobs": {
                "task": "provisioning.purge_jobs",
                "schedule": timedelta(seconds=config.job_purge_seconds),
            },
        },
        beat_schedule_filename=str(config.var_dir / "celerybeat-schedule"),
        # A worker consumes both unless told otherwise (-Q): bulk work never blocks email.
        task_queues=[Queue(DEFAULT_QUEUE), Queue(SEND_QUEUE)],
        worker_send_task_events=False,
    )
    return app


@lru_cache(maxsize=4)
def _client_for(config: Settings) -> Celery:
    return create_app(config)


def send_task(name: str, args: list[Any], options: dict[str, Any]) -> None:
    """The sender the entrypoints connect to ``provisioning.core.dispatch``."""
    # No publish retries: a request must not hang on a broker that is down; the
    # sweeper re-enqueues whatever a failed publish left behind.
    client_app().send_task(name, args=args, retry=False, **options)


def client_app() -> Celery:
    """The app for sending tasks under the current settings (the API's side of Celery)."""
    return _client_for(settings())


@signals.worker_init.connect
@signals.beat_init.connect
def refuse_the_development_key(**_: Any) -> None:
    """The worker and beat make invitation links too: the same rule as the API's at start-up."""
    try:
        settings().require_secret_key()
    except MissingSecretKey as problem:
        # Celery logs and swallows what a signal handler raises; SystemExit stops the process.
        raise SystemExit(f"provisioner: {problem}") from None


app = create_app()
