"""After a membership change: wake the recalculation of accounts whose changes are due.

The change itself marks its account (``subscriptions.recalc_due_at``, set by the seat
statements); this sends, after commit, at most one delayed task per process and delay, so
a burst of a thousand changes costs a few broker messages and one recalculation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from provisioning.billing.models import Subscription
from provisioning.core import dispatch
from provisioning.core.config import settings
from provisioning.core.db import after_commit
from provisioning.core.models import utcnow

DUE_TASK = "provisioning.recalculate_due_billing"


def _wake() -> None:
    """At most one delayed task per process and delay; a change inside the delay gets a
    trailing send at the delay's end, so every change is followed by a run after it is due
    (the run claims what is due; nothing re-sends itself, so no chain of tasks can grow)."""
    delay = settings().billing_recalc_delay_seconds
    dispatch.debounced(DUE_TASK, delay, daemon=True, countdown=delay + 1)()


def wake_after_commit(session: Session) -> None:
    after_commit(session, _wake)


def mark_changed(session: Session, account_ids: Sequence[int]) -> None:
    """For a path that changes who takes a seat without the seat statements (e.g. seasonal
    members flipping at their window's edges): the accounts are due for recalculation."""
    if not account_ids:
        return
    due_at = utcnow() + timedelta(seconds=settings().billing_recalc_delay_seconds)
    session.execute(update(Subscription).where(Subscription.account_id.in_(list(account_ids)))
                    .values(recalc_due_at=func.coalesce(Subscription.recalc_due_at, due_at)))
    wake_after_commit(session)
