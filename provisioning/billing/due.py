"""After a membership change: wake the recalculation of accounts whose changes are due.

The change itself marks its account (``subscriptions.recalc_due_at``, set by the seat
statements); this sends, after commit, at most one delayed task per process and delay, so
a burst of a thousand changes costs a few broker messages and one recalculation.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy.orm import Session

from provisioning.core import dispatch
from provisioning.core.config import settings
from provisioning.core.db import after_commit

DUE_TASK = "provisioning.recalculate_due_billing"

_lock = threading.Lock()
_last_sent = [float("-inf")]


def wake_after_commit(session: Session) -> None:
    after_commit(session, _wake)


def _wake() -> None:
    delay = settings().billing_recalc_delay_seconds
    with _lock:
        if time.monotonic() - _last_sent[0] < delay:
            return  # a task sent within the delay runs after this change is due, or re-sends
        _last_sent[0] = time.monotonic()
    dispatch.send_task(DUE_TASK, countdown=delay + 1)
