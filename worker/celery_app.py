"""The Celery application: broker from configuration, ids-only messages, late acks."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache

from celery import Celery
from kombu import Queue

from provisioning.config import Settings, settings

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
    if config.broker_url.startswith("redis://"):
        return "worker.redis_transport:Transport"
    return None


def create_app(config: Settings | None = None) -> Celery:
    config = config or settings()
    app = Celery("provisioner", broker=config.broker_url)
    app.conf.update(
        broker_transport=broker_transport(config),
        broker_transport_options=broker_options(config),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=DEFAULT_QUEUE,
        task_routes={"provisioning.send_emails": {"queue": SEND_QUEUE}},
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
                "schedule": timedelta(hours=1),
            },
            "purge-jobs": {
                "task": "provisioning.purge_jobs",
                "schedule": timedelta(hours=6),
            },
            "expire-invitations": {
                "task": "provisioning.expire_invitations",
                "schedule": timedelta(seconds=config.invitation_expiry_sweep_seconds),
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


def client_app() -> Celery:
    """The app for sending tasks under the current settings (the API's side of Celery)."""
    return _client_for(settings())


app = create_app()
