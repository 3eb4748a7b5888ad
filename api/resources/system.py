from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon
from sqlalchemy import text

from provisioning.core.db import engine


class Health:
    auth = "none"
    uses_database = False

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Ready:
    """Ready when the database and the broker both answer."""

    auth = "none"
    uses_database = False

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = {"database": _check_database(), "broker": _check_broker()}
        ready = all(value == "ok" for value in checks.values())
        resp.status = falcon.HTTP_200 if ready else falcon.HTTP_503
        resp.media = {"status": "ok" if ready else "unavailable", "checks": checks}


def _check_database() -> str:
    try:
        with engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"


def _check_broker() -> str:
    from worker.celery_app import client_app

    try:
        with client_app().connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"


class OpenApi:
    """The API's own description, drawn from the route table the app was built from."""

    auth = "none"
    uses_database = False

    def __init__(self, document: Callable[[], dict[str, Any]]) -> None:
        self._document = document

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._document()
