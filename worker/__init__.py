"""Celery entry point: ``celery -A worker worker`` and ``celery -A worker beat``."""

from provisioning.core import dispatch
from worker import tasks  # noqa: F401,E402  (registers the tasks)
from worker.celery_app import app, send_task

dispatch.use_sender(send_task)  # jobs and the outbox enqueue their next step from the worker

__all__ = ["app"]
