"""Seats: who consumes one (R7) and what happens when one more is needed (R8).

Counting an account's members costs a scan that grows with the account, so the
subscription keeps how many seats its full members take (``full_seats_taken``):
an invite reads that counter and counts nobody while the seats fit. Every path
that adds a full member goes through ``take_seat`` or ``settle_seats`` (R8 needs
them anyway), so the counter never runs low; a path that frees a seat calls
``free_seat``, and one that forgets only makes the next invite past the purchased
seats count for real (``settle_seats`` resets the counter to what it counted).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import NamedTuple, NoReturn

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from provisioning.billing import due
from provisioning.billing.models import BillingEvent, Subscription
from provisioning.billing.plans import TRIAL, plan_named, prorated_charge_cents
from provisioning.core import audit
from provisioning.core.config import settings
from provisioning.core.errors import FieldError, SeatLimitReached
from provisioning.core.models import UTCDateTime, utcnow
from provisioning.members.models import Membership, MemberStatus, UserType

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
    return or_(_full_holding(), _seasonal_in_window(today))


def _full_holding() -> ColumnElement[bool]:
    """Full members invited or active: a seat whatever the date, so a counter can keep them."""
    return and_(Membership.status.in_(HOLDING_STATUSES),
                Membership.user_type == UserType.FULL.value)


def _seasonal_in_window(today: date | BindParameter[date]) -> ColumnElement[bool]:
    """Seasonal members hold a seat only inside their window, so they are counted live."""
    return and_(
        # Not IN: an IN list is rendered into the SQL on every execution, and this rides
        # on the invite path.
        or_(*(Membership.status == status for status in HOLDING_STATUSES)),
        seasonal_window_holds(today),
    )


def seasonal_window_holds(today: date | BindParameter[date]) -> ColumnElement[bool]:
    """A seasonal member whose window holds ``today``, whatever its status: R7's window,
    for a count that filters the statuses once for every rule (the recalculation)."""
    return and_(Membership.user_type == UserType.SEASONAL.value,
                Membership.seasonal_start <= today, Membership.seasonal_end >= today)


def seats_in_use(session: Session, account_id: int, today: date) -> int:
    """R7: how many seats the account's members take on ``today`` (the public count)."""
    return session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.account_id == account_id, seat_consuming(today))
    ) or 0


class SeatCount(NamedTuple):
    """What ``COUNT_SEAT`` returned, and the seasonal members holding a seat when the
    caller knows that no transaction can have added one since its statement's snapshot."""

    purchased: int
    full_taken: int  # with the new member's seat
    seasonal: int | None = None  # None: count them now


def take_seat(
    session: Session, account_id: int, today: date, counted: SeatCount, *,
    actor_id: int | None, actor_label: str,
) -> int:
    """R8 for one new seat-consuming member, without counting the account's members.

    ``counted`` comes from ``COUNT_SEAT`` in this transaction. That UPDATE comes last,
    just before commit, and locks the subscription row, so two admins taking the last
    seat queue there. While the counted seats fit the purchased ones nothing else is
    read; past them the members are counted for real before any seat is bought.
    Returns how many seats were bought.
    """
    due.wake_after_commit(session)
    seasonal = counted.seasonal
    if seasonal is None:
        # A statement of its own: under READ COMMITTED it takes a fresh snapshot after the
        # lock wait, so it sees the seasonal members of the transaction that held the lock.
        seasonal = session.connection().execute(SEASONAL_SEATS, {
            "seat_account_id": account_id, "seat_today": today}).scalar_one()
    if counted.full_taken + seasonal <= counted.purchased:
        return 0
    # The counter may run high (a seat freed by a path that did not lower it): never bill
    # on it, count.
    return settle_seats(session, account_id, today, actor_id=actor_id, actor_label=actor_label)


def seat_change(user_type: str) -> int:
    """What a new seat-consuming member adds to the counter of full members' seats."""
    return 1 if user_type == UserType.FULL.value else 0


def free_seat(session: Session, account_id: int, *, user_type: str, status: str) -> None:
    """A member leaves a seat (revoked, disabled, removed): lower the counter ``take_seat``
    reads. Purchased seats stay as they are (R8)."""
    held = user_type == UserType.FULL.value and status in HOLDING_STATUSES
    # Every leaving member marks the account due for recalculation (the counter moves by 0
    # for the others).
    session.connection().execute(COUNT_SEAT, {"seat_account_id": account_id,
                                              "seat_change": -1 if held else 0})
    due.wake_after_commit(session)


def _now() -> datetime:
    return utcnow()


def _due() -> datetime:
    return utcnow() + timedelta(seconds=settings().billing_recalc_delay_seconds)


def trial_over(subscription: Subscription, now: datetime) -> bool:
    """A trial whose days are spent gives no seat at all."""
    return (plan_named(subscription.plan).is_trial and subscription.trial_ends_at is not None
            and subscription.trial_ends_at <= now)


# Built once: on the invite path, building a statement costs more than running it.
# Changes the counter of full members' seats by ``seat_change``, marks the account due for
# recalculation (the first change of a burst sets when), and returns what ``take_seat``
# needs: a trial past its end has no purchased seat, so any seat goes to ``settle_seats``.
COUNT_SEAT = (
    update(Subscription)
    .where(Subscription.account_id == bindparam("seat_account_id"))
    .values(full_seats_taken=Subscription.full_seats_taken + bindparam("seat_change"),
            recalc_due_at=func.coalesce(Subscription.recalc_due_at, bindparam(
                "seat_due", type_=UTCDateTime(), callable_=_due)))
    .returning(case((and_(Subscription.plan == TRIAL, Subscription.trial_ends_at <= bindparam(
                        "seat_now", type_=UTCDateTime(), callable_=_now)), 0),
                    else_=Subscription.seats_purchased).label("seats_purchased"),
               Subscription.full_seats_taken)
)
SEASONAL_SEATS = (
    select(func.count()).select_from(Membership)
    .where(Membership.account_id == bindparam("seat_account_id"),
           _seasonal_in_window(bindparam("seat_today")))
)


def settle_seats(
    session: Session, account_id: int, today: date, *, actor_id: int | None, actor_label: str,
) -> int:
    """R8, once the new members are in the transaction: make room for them, or refuse.

    Called last, just before commit: it locks the subscription row so two admins
    adding members at once cannot both take the last seat, and the lock is held
    only for the count and the commit. It counts the members, and sets the
    subscription's counter of full members' seats to what it counted. Returns how
    many seats were bought.
    """
    subscription = session.scalars(
        select(Subscription).where(Subscription.account_id == account_id).with_for_update()
        .execution_options(populate_existing=True)  # the row as locked, not as read before
    ).one()
    # A separate statement: under READ COMMITTED it takes a fresh snapshot after the lock
    # wait, so it counts the members of the transaction that held the lock.
    full, needed = session.execute(
        select(func.count().filter(Membership.user_type == UserType.FULL.value), func.count())
        .where(Membership.account_id == account_id, seat_consuming(today))
    ).one()
    subscription.full_seats_taken = full
    if subscription.recalc_due_at is None:
        subscription.recalc_due_at = _due()
    due.wake_after_commit(session)
    return _buy_seats(session, subscription, needed, actor_id=actor_id, actor_label=actor_label)


def _buy_seats(
    session: Session, subscription: Subscription, needed: int, *, actor_id: int | None,
    actor_label: str,
) -> int:
    """R8: a paid plan buys the seats ``needed`` beyond the purchased ones; a trial or a cap
    refuses."""
    now = utcnow()
    plan = plan_named(subscription.plan)
    if trial_over(subscription, now) and needed > 0:
        refuse_seat("The trial has ended. Choose a paid plan (PATCH …/billing with a plan) to "
                "add or activate users.", "trial_ended")
    if needed <= subscription.seats_purchased:
        return 0
    account_id = subscription.account_id
    cap = subscription.max_seats if subscription.max_seats is not None else plan.max_seats
    if plan.is_trial:
        refuse_seat(f"All {subscription.seats_purchased} seats of the trial are taken. "
                "Choose a paid plan to add more users.", "seat_limit_trial")
    if cap is not None and needed > cap:
        refuse_seat(f"The {plan.name} plan allows at most {cap} seats and all are taken. "
                "Remove or disable a user, or choose a larger plan.", "seat_limit_plan")
    added = needed - subscription.seats_purchased
    before = subscription.seats_purchased
    subscription.seats_purchased = needed
    session.add(
        BillingEvent(
            account_id=account_id,
            kind="seats_added",
            quantity=added,
            details={"from": before, "to": needed, "plan": subscription.plan,
                     "currency": subscription.currency,
                     "prorated_charge_cents": prorated_charge_cents(subscription, added, now)},
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


def refuse_seat(detail: str, reason: str) -> NoReturn:
    """R8: 402 ``seat_limit``, the reason in the field error's code."""
    raise SeatLimitReached(detail, code="seat_limit",
                           errors=[FieldError("seats", detail, reason)])
