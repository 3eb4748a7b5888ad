"""R8's proration, as properties: integer cents, day-based, rounded half up once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from provisioning.billing.plans import (
    PERIOD_DAYS,
    next_period_end,
    period_price_cents,
    prorate,
    prorated_charge_cents,
)

PLANS = st.sampled_from(["base", "advanced", "pro"])
PERIODS = st.sampled_from(["monthly", "annual"])
SEATS = st.integers(min_value=1, max_value=100_000)
STARTS = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1),
                      timezones=st.just(UTC))


def subscription(plan: str, period: str, start: datetime) -> SimpleNamespace:
    return SimpleNamespace(plan=plan, period=period, current_period_start=start,
                           current_period_end=next_period_end(start, period))


@given(PLANS, PERIODS, SEATS, STARTS, st.integers(min_value=-400, max_value=800))
def test_a_charge_is_never_negative_nor_above_a_whole_period(plan: str, period: str,
                                                             seats: int, start: datetime,
                                                             offset_days: int):
    held = subscription(plan, period, start)
    charge = prorated_charge_cents(held, seats, start + timedelta(days=offset_days))
    assert isinstance(charge, int)
    assert 0 <= charge <= period_price_cents(plan, period, seats)


@given(PLANS, PERIODS, SEATS, STARTS)
def test_the_period_edges_are_exact(plan: str, period: str, seats: int, start: datetime):
    held = subscription(plan, period, start)
    whole = period_price_cents(plan, period, seats)
    assert prorated_charge_cents(held, seats, start) == whole  # the first day: all of it
    assert prorated_charge_cents(held, seats, held.current_period_end) == 0  # the end: nothing
    last_day = held.current_period_end - timedelta(days=1)
    assert prorated_charge_cents(held, seats, last_day) == prorate(whole, 1, PERIOD_DAYS[period])


@given(PLANS, PERIODS, SEATS, st.data())
def test_splits_of_a_period_sum_to_the_whole_within_a_cent(plan: str, period: str, seats: int,
                                                           data: st.DataObject):
    days = PERIOD_DAYS[period]
    whole = period_price_cents(plan, period, seats)
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=days), max_size=1)))
    # The period cut where the seats change hands; each part priced on its own days.
    parts = [end - start for start, end in zip([0, *cuts], [*cuts, days], strict=True)]
    assert sum(parts) == days
    assert abs(sum(prorate(whole, part, days) for part in parts) - whole) <= 1


@given(PLANS, SEATS)
def test_an_annual_period_costs_twelve_monthly_ones(plan: str, seats: int):
    assert period_price_cents(plan, "annual", seats) == 12 * period_price_cents(plan, "monthly",
                                                                                 seats)


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=-10, max_value=400),
       st.integers(min_value=1, max_value=366))
def test_the_rounding_rule_is_half_up_on_exact_integers(whole: int, left: int, days: int):
    charge = prorate(whole, left, days)
    exact_times_two = 2 * whole * min(max(left, 0), days)
    assert charge * 2 * days <= exact_times_two + days < (charge + 1) * 2 * days
