"""The plan catalog (SPEC §7): price per seat per month and seat caps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provisioning.billing.models import Subscription


# A subscription's billing periods: how long each runs, and how many months of a
# seat's price it holds.
PERIOD_DAYS = {"monthly": 30, "annual": 365}
PERIOD_MONTHS = {"monthly": 1, "annual": 12}


@dataclass(frozen=True)
class Plan:
    name: str
    price_cents_per_seat: int | None  # None: set by contract
    max_seats: int | None  # None: no built-in maximum
    is_trial: bool = False
    trial_days: int = 0


CATALOG: dict[str, Plan] = {
    plan.name: plan
    for plan in (
        Plan("trial", 0, 10, is_trial=True, trial_days=14),
        Plan("base", 1500, None),
        Plan("advanced", 2500, None),
        Plan("pro", 4500, None),
        Plan("enterprise", None, None),
    )
}


def plan_named(name: str) -> Plan:
    return CATALOG[name]


def prorated_charge_cents(subscription: Subscription, seats: int, now: datetime) -> int:
    """R8: what ``seats`` more seats cost for the rest of the current period."""
    price = plan_named(subscription.plan).price_cents_per_seat
    if not seats or not price:
        return 0
    period = (subscription.current_period_end - subscription.current_period_start).total_seconds()
    left = (subscription.current_period_end - now).total_seconds()
    if period <= 0 or left <= 0:
        return 0
    months = PERIOD_MONTHS[subscription.period]
    return round(price * months * seats * min(left / period, 1.0))
