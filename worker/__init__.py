"""Celery entry point: ``celery -A worker worker`` and ``celery -A worker beat``."""

from worker import tasks  # noqa: F401,E402  (registers the tasks)
from worker.celery_app import app

__all__ = ["app"]
