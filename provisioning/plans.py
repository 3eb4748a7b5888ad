"""The plan catalog (SPEC §7): price per seat per month and seat caps."""

from __future__ import annotations

from dataclasses import dataclass


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
