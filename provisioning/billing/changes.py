"""Changing the subscription (R8), and running the recalculation (SPEC §7) as a job, on a
schedule, and after membership changes.

More seats and upgrades take effect now, with a prorated charge for the rest of the period;
fewer seats and downgrades wait for the next period (``pending``), never below the seats in
use. Disabling or removing a member never lowers the purchased seats.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import Permission, require
from provisioning.billing.account import billing_view, seat_counts, subscription_of
from provisioning.billing.models import BillingEvent, Subscription
from provisioning.billing.plans import (
    PLAN_NAMES,
    next_period_end,
    period_price_cents,
    plan_named,
    prorated_charge_cents,
)
from provisioning.billing.recalculation import (
    PLAN_UPGRADED,
    SEATS_ADDED,
    Recalculated,
    claim_due,
    recalculate,
)
from provisioning.billing.seats import refuse_seat
from provisioning.core import audit
from provisioning.core.db import after_commit, session_scope
from provisioning.core.errors import Conflict, FieldError
from provisioning.core.models import utcnow
from provisioning.core.validation import Form
from provisioning.jobs.kinds import JobKind, register
from provisioning.jobs.models import Job, JobStatus
from provisioning.jobs.runs import enqueue, job_view
from provisioning.jobs.states import SUCCEEDED, move

log = logging.getLogger(__name__)

KIND = "billing"
MOST_SEATS = 1_000_000
ALL_TASK = "provisioning.recalculate_billing"


def change_billing(session: Session, actor: Actor, account_id: int, body: Any
                   ) -> dict[str, Any]:
    """``PATCH …/billing {"seats"?, "plan"?}``: R8's seat and plan changes."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    form = Form(body)
    seats = form.body.get("seats")
    if seats is not None and (isinstance(seats, bool) or not isinstance(seats, int)
                              or not 1 <= seats <= MOST_SEATS):
        form.errors.append(FieldError("seats", f"A whole number from 1 to {MOST_SEATS:,}.",
                                      "invalid"))
    plan = form.text("plan", max_length=32)
    if plan is not None and plan not in PLAN_NAMES[1:]:
        form.errors.append(FieldError("plan", f"Use one of: {', '.join(PLAN_NAMES[1:])}.",
                                      "invalid_plan"))
    if seats is None and plan is None and not form.errors:
        form.errors.append(FieldError("seats", "Give seats, a plan, or both.", "required"))
    form.finish()
    subscription = subscription_of(session, account_id, lock=True)
    before = _terms(subscription)
    now = utcnow()
    used = seat_counts(session, account_id, now)["used"]
    if plan is not None and plan != subscription.plan:
        _change_plan(session, subscription, plan, used, now)
    if seats is not None:
        _change_seats(session, subscription, seats, used, now)
    audit.record(session, account_id=account_id, actor_id=actor.identity_id,
                 actor_label=actor.label, action="billing.change", target_type="subscription",
                 target_id=subscription.id, before=before, after=_terms(subscription))
    session.flush()
    return billing_view(session, subscription, now)


def _terms(subscription: Subscription) -> dict[str, Any]:
    return {"plan": subscription.plan, "seats_purchased": subscription.seats_purchased,
            "pending_plan": subscription.pending_plan,
            "pending_seats": subscription.pending_seats}


def _change_seats(session: Session, subscription: Subscription, seats: int, used: int,
                  now: datetime) -> None:
    if seats < used:
        raise Conflict(f"{used} seats are in use: disable or remove users before lowering "
                       f"to {seats}.", code="seats_in_use",
                       errors=[FieldError("seats", f"At least {used}.", "seats_in_use")])
    plan = plan_named(subscription.plan)
    cap = subscription.max_seats if subscription.max_seats is not None else plan.max_seats
    if cap is not None and seats > cap:
        refuse_seat(f"The {plan.name} plan allows at most {cap} seats. Choose a larger plan.",
                "seat_limit_trial" if plan.is_trial else "seat_limit_plan")
    if seats > subscription.seats_purchased:
        _buy(session, subscription, seats, now)
        subscription.pending_seats = None
    elif seats < subscription.seats_purchased and not plan.is_trial:
        subscription.pending_seats = seats  # R8: lowering waits for the next period
    else:
        subscription.seats_purchased = seats if plan.is_trial else subscription.seats_purchased
        subscription.pending_seats = None


def _buy(session: Session, subscription: Subscription, seats: int, now: datetime) -> None:
    added, before = seats - subscription.seats_purchased, subscription.seats_purchased
    subscription.seats_purchased = seats
    session.add(BillingEvent(
        account_id=subscription.account_id, kind=SEATS_ADDED, quantity=added, created_at=now,
        details={"from": before, "to": seats, "plan": subscription.plan,
                 "currency": subscription.currency,
                 "prorated_charge_cents": prorated_charge_cents(subscription, added, now)}))


def _change_plan(session: Session, subscription: Subscription, name: str, used: int,
                 now: datetime) -> None:
    current, chosen = plan_named(subscription.plan), plan_named(name)
    if chosen.max_seats is not None and used > chosen.max_seats:
        refuse_seat(f"{used} seats are in use and the {name} plan allows {chosen.max_seats}.",
                "seat_limit_plan")
    if current.is_trial:  # a paid period starts now, for the seats in use at least
        subscription.plan, subscription.trial_ends_at = name, None
        subscription.current_period_start = now
        subscription.current_period_end = next_period_end(now, subscription.period)
        subscription.seats_purchased = max(subscription.seats_purchased, used, 1)
        charge = period_price_cents(name, subscription.period, subscription.seats_purchased)
    elif chosen.rank > current.rank:  # upgrade now: the difference for the rest of the period
        charge = (prorated_charge_cents(subscription, subscription.seats_purchased, now, name)
                  - prorated_charge_cents(subscription, subscription.seats_purchased, now))
        subscription.plan = name
    else:  # downgrade at the period's end
        subscription.pending_plan = name
        return
    subscription.pending_plan = None
    session.add(BillingEvent(
        account_id=subscription.account_id, kind=PLAN_UPGRADED,
        quantity=subscription.seats_purchased, created_at=now,
        details={"from": current.name, "to": name, "currency": subscription.currency,
                 "prorated_charge_cents": max(charge, 0)}))


def start_recalculation(session: Session, actor: Actor, account_id: int) -> dict[str, Any]:
    """``POST …/billing/recalculate``: a job that recalculates this account now."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    job = Job(account_id=account_id, kind=KIND, status=JobStatus.QUEUED.value, total=1,
              done=0, summary={"accounts": 0, "events": 0}, checkpoint={},
              created_by_id=actor.identity_id, params={"actor_label": actor.label})
    session.add(job)
    session.flush()
    job_id = job.id
    after_commit(session, lambda: enqueue(job_id))
    return job_view(session, job)


def run_recalculation_job(job_id: int, deadline: float) -> bool:
    with session_scope() as session:
        job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
        if job is None or job.status != JobStatus.RUNNING.value:
            return True
        done = recalculate(session.connection(), utcnow(), [job.account_id])
        job.summary, job.done = {"accounts": done.accounts, "events": done.events}, 1
        move(job, SUCCEEDED)
        audit.record(session, account_id=job.account_id, actor_id=job.created_by_id,
                     actor_label=str((job.params or {}).get("actor_label", "")),
                     action="billing.recalculate", target_type="job", target_id=job.id,
                     after=job.summary)
    return True


RECALCULATION = register(JobKind(name=KIND, run=run_recalculation_job))


def recalculate_billing(account_id: int | None = None) -> dict[str, int]:
    """Recalculate one account, or every account (beat, daily)."""
    with session_scope() as session:
        done = recalculate(session.connection(), utcnow(),
                           None if account_id is None else [account_id])
    return asdict(done)


def recalculate_due_billing() -> dict[str, int]:
    """Recalculate the accounts whose membership changes are due, together."""
    now = utcnow()
    with session_scope() as session:
        accounts = claim_due(session.connection(), now)
        done = (recalculate(session.connection(), now, accounts) if accounts
                else Recalculated(0, 0, 0))
    return asdict(done)

