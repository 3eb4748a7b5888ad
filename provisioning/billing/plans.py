"""The plan catalog (SPEC §7) from configuration, billing periods, and proration (R8).

Money is integer cents everywhere. Proration is day-based and rounded once, here
(``prorate``): a charge for the days left of a period is the period's price times
the days left over the period's days, rounded half up to the cent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from provisioning.core.config import settings

if TYPE_CHECKING:
    from provisioning.billing.models import Subscription


TRIAL = "trial"
ENTERPRISE = "enterprise"
PLAN_NAMES = (TRIAL, "base", "advanced", "pro", ENTERPRISE)
# How long each billing period runs, in days.
PERIOD_DAYS = {"monthly": 30, "annual": 365}
PERIODS = tuple(PERIOD_DAYS)


@dataclass(frozen=True)
class Plan:
    name: str
    price_cents_per_seat: int | None  # a month's price; None: set by contract
    max_seats: int | None  # None: no built-in maximum
    is_trial: bool = False
    trial_days: int = 0
    rank: int = 0  # upgrades go up in rank, downgrades down


def catalog() -> dict[str, Plan]:
    """Every plan, as configured (``PROVISIONING_BILLING_*``)."""
    config = settings()
    prices, caps = dict(config.billing_prices_cents), dict(config.billing_max_seats)
    plans = [Plan(TRIAL, 0, config.billing_trial_seats, is_trial=True,
                  trial_days=config.billing_trial_days)]
    plans += [Plan(name, price, caps.get(name), rank=rank)
              for rank, (name, price) in enumerate(sorted(prices.items(),
                                                          key=lambda item: item[1]), 1)]
    plans.append(Plan(ENTERPRISE, None, caps.get(ENTERPRISE), rank=len(plans) + 1))
    return {plan.name: plan for plan in plans}


def plan_named(name: str) -> Plan:
    return catalog()[name]


def months_in(period: str) -> int:
    """How many months of the monthly price one period costs."""
    return settings().billing_annual_months if period == "annual" else 1


def period_price_cents(plan: str, period: str, seats: int) -> int:
    """A whole period of ``seats`` seats on ``plan`` (0 where the contract sets the price)."""
    price = plan_named(plan).price_cents_per_seat or 0
    return price * months_in(period) * seats


def next_period_end(start: datetime, period: str) -> datetime:
    return start + timedelta(days=PERIOD_DAYS[period])


def prorate(whole_cents: int, days_left: int, period_days: int) -> int:
    """The rounding rule, written once: ``whole_cents`` × days_left / period_days, half up.

    Never negative, never above the whole; the days left are clamped to the period.
    """
    if period_days <= 0 or whole_cents <= 0:
        return 0
    days_left = min(max(days_left, 0), period_days)
    return (2 * whole_cents * days_left + period_days) // (2 * period_days)


def days_left(subscription: Subscription, today: date) -> tuple[int, int]:
    """Whole days left of the current period from ``today`` (today counts), and its days."""
    start = subscription.current_period_start.date()
    end = subscription.current_period_end.date()
    return min(max((end - today).days, 0), (end - start).days), (end - start).days


def prorated_charge_cents(subscription: Subscription, seats: int, now: datetime,
                          plan: str | None = None) -> int:
    """R8: what ``seats`` more seats (on ``plan``, by default the subscription's) cost for the
    rest of the current period."""
    if seats <= 0:
        return 0
    left, period_days = days_left(subscription, now.date())
    whole = period_price_cents(plan or subscription.plan, subscription.period, seats)
    return prorate(whole, left, period_days)
