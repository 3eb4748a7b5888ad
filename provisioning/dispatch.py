"""Handing work to the Celery workers. The broker carries ids only.

Services call ``send_task`` after their transaction commits; if the broker is
unreachable the rows stay queued in the database and the beat sweepers pick
them up, so a failed dispatch is logged and never fails the request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Sender = Callable[[str, list[Any], dict[str, Any]], None]


def _celery_sender(name: str, args: list[Any], options: dict[str, Any]) -> None:
    from worker.celery_app import client_app  # the API only needs the sending side

    client_app().send_task(name, args=args, **options)


_sender: Sender = _celery_sender


def use_sender(sender: Sender) -> Sender:
    """Swap how tasks are sent (unit tests of pure rules); returns the previous one."""
    global _sender
    previous, _sender = _sender, sender
    return previous


def send_task(name: str, *args: Any, **options: Any) -> None:
    try:
        _sender(name, list(args), options)
    except Exception:
        log.warning("could not enqueue %s; the sweeper will retry", name, exc_info=True)
