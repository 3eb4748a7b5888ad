"""What an account's admins see of billing (SPEC §10): the plan, the seats, what each member
takes, the events, and what more seats would cost."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import Permission, require
from provisioning.billing.models import BillingEvent, Subscription
from provisioning.billing.plans import days_left, prorated_charge_cents
from provisioning.billing.seats import HOLDING_STATUSES, consumes_seat, seat_consuming
from provisioning.core.errors import FieldError, InvalidInput
from provisioning.core.models import utcnow
from provisioning.core.pages import decode_cursor, encode_cursor, page_size
from provisioning.members.models import Membership, UserType

MOST_SEATS_PREVIEWED = 1_000_000


def subscription_of(session: Session, account_id: int, *, lock: bool = False) -> Subscription:
    query = select(Subscription).where(Subscription.account_id == account_id)
    return session.scalars(query.with_for_update() if lock else query).one()


def seat_counts(session: Session, account_id: int, now: datetime) -> dict[str, int]:
    """R7's count of the account now: seats used, of which seasonal, and free members."""
    today = now.date()
    used, seasonal, free = session.execute(
        select(func.count().filter(seat_consuming(today)),
               func.count().filter(and_(seat_consuming(today),
                                        Membership.user_type == UserType.SEASONAL.value)),
               func.count().filter(and_(Membership.status.in_(HOLDING_STATUSES),
                                        Membership.user_type == UserType.FREE.value)))
        .where(Membership.account_id == account_id)).one()
    return {"used": used, "seasonal_used": seasonal, "free_members": free}


def billing_view(session: Session, subscription: Subscription, now: datetime) -> dict[str, Any]:
    counts = seat_counts(session, subscription.account_id, now)
    purchased = subscription.seats_purchased
    pending: list[dict[str, Any]] = []
    if subscription.pending_seats is not None:
        pending.append({"change": "seats", "seats": subscription.pending_seats,
                        "effective_at": subscription.current_period_end})
    if subscription.pending_plan is not None:
        pending.append({"change": "plan", "plan": subscription.pending_plan,
                        "effective_at": subscription.current_period_end})
    return {
        "plan": subscription.plan, "period": subscription.period,
        "period_start": subscription.current_period_start,
        "period_end": subscription.current_period_end, "currency": subscription.currency,
        "seats": {"purchased": purchased, **counts,
                  "unused": max(purchased - counts["used"], 0)},
        "pending": pending, "trial_ends_at": subscription.trial_ends_at,
    }


def get_billing(session: Session, actor: Actor, account_id: int) -> dict[str, Any]:
    """``GET …/billing``: the plan, its period, the seats (R7) and the changes waiting."""
    require(session, actor, account_id, Permission.BILLING_VIEW)
    return billing_view(session, subscription_of(session, account_id), utcnow())


def list_events(session: Session, actor: Actor, account_id: int, cursor: str | None,
                limit: int | None) -> tuple[list[dict[str, Any]], str | None]:
    """``GET …/billing/events``: newest first."""
    require(session, actor, account_id, Permission.BILLING_VIEW)
    size, before = page_size(limit), decode_cursor(cursor)
    query = select(BillingEvent).where(BillingEvent.account_id == account_id)
    if before is not None:
        query = query.where(BillingEvent.id < before)
    found = list(session.scalars(query.order_by(BillingEvent.id.desc()).limit(size + 1)))
    page = found[:size]
    items = [{"id": event.id, "kind": event.kind, "quantity": event.quantity,
              "details": event.details, "period_start": event.period_start,
              "created_at": event.created_at} for event in page]
    return items, (encode_cursor(page[-1].id) if len(found) > size else None)


def seat_reason(user_type: str, status: str, takes_seat: bool) -> str:
    """Why a member takes a seat or not, in R7's words."""
    if status not in HOLDING_STATUSES:
        return f"{status}_member"  # inactive: the seat is freed
    if user_type == UserType.SEASONAL.value:
        return "seasonal_in_window" if takes_seat else "seasonal_outside_window"
    return f"{user_type}_{status}" if takes_seat else "free_member"


def list_seats(session: Session, actor: Actor, account_id: int, cursor: str | None,
               limit: int | None) -> tuple[list[dict[str, Any]], str | None]:
    """``GET …/billing/seats``: every member, whether they take a seat and why (R7)."""
    require(session, actor, account_id, Permission.BILLING_VIEW)
    size, after = page_size(limit), decode_cursor(cursor)
    query = select(Membership.id, Membership.user_type, Membership.status,
                   Membership.seasonal_start, Membership.seasonal_end
                   ).where(Membership.account_id == account_id)
    if after is not None:
        query = query.where(Membership.id > after)
    found = session.execute(query.order_by(Membership.id).limit(size + 1)).all()
    page = found[:size]
    today = utcnow().date()
    items = []
    for member_id, user_type, status, start, end in page:
        takes = consumes_seat(user_type, status, start, end, today)
        items.append({"user_id": member_id, "takes_seat": takes,
                      "reason": seat_reason(user_type, status, takes)})
    return items, (encode_cursor(page[-1][0]) if len(found) > size else None)


def preview(session: Session, actor: Actor, account_id: int, add: str | None
            ) -> dict[str, Any]:
    """``GET …/billing/preview?add=N``: what N more seat-taking members would cost now."""
    require(session, actor, account_id, Permission.BILLING_VIEW)
    try:
        more = int(add or "")
    except ValueError:
        more = -1
    if not 1 <= more <= MOST_SEATS_PREVIEWED:
        raise InvalidInput([FieldError(
            "add", f"Give how many members to add, from 1 to {MOST_SEATS_PREVIEWED:,}.")])
    subscription = subscription_of(session, account_id)
    now = utcnow()
    used = seat_counts(session, account_id, now)["used"]
    to_buy = max(used + more - subscription.seats_purchased, 0)
    left, _ = days_left(subscription, now.date())
    return {"charge_cents": prorated_charge_cents(subscription, to_buy, now),
            "currency": subscription.currency, "days_left": left, "seats_to_add": to_buy}

