"""Seats: who consumes one (R7) and what happens when one more is needed (R8)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from provisioning import audit
from provisioning.errors import SeatLimitReached
from provisioning.models import (
    BillingEvent,
    Membership,
    MemberStatus,
    Subscription,
    UserType,
    utcnow,
)
from provisioning.plans import plan_named, prorated_charge_cents

HOLDING_STATUSES = (MemberStatus.INVITED.value, MemberStatus.ACTIVE.value)


def consumes_seat(user_type: str, status: str, start: date | None, end: date | None,
                  today: date) -> bool:
    """R7 for one member: full members invited or active, seasonal ones inside their window."""
    if status not in HOLDING_STATUSES:
        return False
    if user_type == UserType.FULL.value:
        return True
    if user_type == UserType.SEASONAL.value:
        return start is not None and end is not None and start <= today <= end
    return False


def seat_consuming(today: date) -> ColumnElement[bool]:
    """R7 as a SQL condition, the same rule as ``consumes_seat``."""
    return and_(
        Membership.status.in_(HOLDING_STATUSES),
        or_(
            Membership.user_type == UserType.FULL.value,
            and_(
                Membership.user_type == UserType.SEASONAL.value,
                Membership.seasonal_start <= today,
                Membership.seasonal_end >= today,
            ),
        ),
    )


def seats_in_use(session: Session, account_id: int, today: date) -> int:
    return session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.account_id == account_id, seat_consuming(today))
    ) or 0


def settle_seats(
    session: Session, account_id: int, today: date, *, actor_id: int | None, actor_label: str,
) -> int:
    """R8, once the new members are in the transaction: make room for them, or refuse.

    Called last, just before commit: it locks the subscription row so two admins
    adding members at once cannot both take the last seat, and the lock is held
    only for the count and the commit. Returns how many seats were bought.
    """
    subscription = session.scalars(
        select(Subscription).where(Subscription.account_id == account_id).with_for_update()
    ).one()
    # A separate statement: under READ COMMITTED it takes a fresh snapshot after the
    # lock wait, so it counts the members of the transaction that held the lock.
    needed = seats_in_use(session, account_id, today)
    if needed <= subscription.seats_purchased:
        return 0
    plan = plan_named(subscription.plan)
    cap = subscription.max_seats if subscription.max_seats is not None else plan.max_seats
    if plan.is_trial:
        raise SeatLimitReached(
            f"All {subscription.seats_purchased} seats of the trial are taken. "
            "Choose a paid plan to add more users.",
            code="seat_limit_trial",
        )
    if cap is not None and needed > cap:
        raise SeatLimitReached(
            f"The plan allows at most {cap} seats and all are taken.", code="seat_limit_plan"
        )
    added = needed - subscription.seats_purchased
    before = subscription.seats_purchased
    subscription.seats_purchased = needed
    session.add(
        BillingEvent(
            account_id=account_id,
            kind="seats_added",
            quantity=added,
            details={"from": before, "to": needed, "plan": subscription.plan,
                     "prorated_charge_cents": prorated_charge_cents(subscription, added,
                                                                    utcnow())},
        )
    )
    audit.record(
        session,
        account_id=account_id,
        actor_id=actor_id,
        actor_label=actor_label,
        action="subscription.seats_added",
        target_type="subscription",
        target_id=subscription.id,
        before={"seats_purchased": before},
        after={"seats_purchased": needed},
    )
    return added
