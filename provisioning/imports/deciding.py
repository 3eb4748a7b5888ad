"""Each row's outcome against the database: taken addresses (R2) and seats in file order (R7,
R8).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.orm import Session

from provisioning.access.policy import CannotGrant
from provisioning.billing.models import Subscription
from provisioning.billing.plans import plan_named
from provisioning.billing.seats import consumes_seat, seats_in_use, trial_over
from provisioning.core.bulk import among
from provisioning.core.models import utcnow
from provisioning.imports.formats import (
    ImportRow,
    RowError,
)
from provisioning.imports.models import ImportPart
from provisioning.imports.options import CREATE, ERROR, UNCHANGED, UPDATE
from provisioning.jobs.models import Job, JobStatus
from provisioning.members.models import Identity, Membership, MemberStatus, UserType
from provisioning.members.rules import DEFAULT_ROLE

if TYPE_CHECKING:
    from provisioning.imports.planning import Plan


@dataclass
class Outcomes:
    """The decision for every row of one chunk."""

    creates: list[ImportRow] = field(default_factory=list)
    # row, identity id, member id, role id, group id, what changes
    updates: list[tuple[ImportRow, int, int, int, int | None, dict[str, Any]]] = field(
        default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    outcome: dict[int, str] = field(default_factory=dict)  # line -> outcome
    identities: dict[str, tuple[int, bool]] = field(default_factory=dict)  # email -> id, login
    seats_planned: int = 0
    active_admins: int = 0  # counted when an update may demote one


APPLY = "apply"  # the stage of a refusal decided against the database
LAST_ADMIN = "This is the account's last active administrator; make another one first."


def decide_rows(session: Session, plan: Plan, rows: Sequence[ImportRow], free_seats: int | None,
            refusal: str, *, known: Mapping[str, int] | None = None) -> Outcomes:
    """Each row's outcome against the database: R2, R7/R8 in file order, skip or update.

    ``free_seats`` is how many new seat holders may still come in (None: no limit).
    ``known``: look at only these identities (email -> id) and take every other row
    for a new person; inserting one that exists after all fails on the unique email.
    """
    decided = Outcomes()
    if not rows:
        return decided
    connection = session.connection()
    looked_up = select(Identity.id, Identity.email, Identity.name,
                       Identity.password_hash.is_not(None))
    if known is None:
        looked_up = looked_up.where(among(connection, Identity.email,
                                          [row.email for row in rows]))
    else:
        looked_up = looked_up.where(among(connection, Identity.id, list(known.values())))
    identities = {email: (identity_id, name, has_login) for identity_id, email, name, has_login
                  in (connection.execute(looked_up) if known is None or known else ())}
    ids = [value[0] for value in identities.values()]
    members: dict[int, tuple[int, int, int | None, str]] = {}
    paid_elsewhere: set[int] = set()
    elsewhere: set[int] = set()  # members of another account too
    if ids:
        members = {identity_id: (member_id, role_id, group_id, status)
                   for member_id, identity_id, role_id, group_id, status in connection.execute(
                       select(Membership.id, Membership.identity_id, Membership.role_id,
                              Membership.group_id, Membership.status)
                       .where(Membership.account_id == plan.account_id,
                              among(connection, Membership.identity_id, ids)))}
        for identity_id, user_type in connection.execute(
                select(Membership.identity_id, Membership.user_type).where(
                    among(connection, Membership.identity_id, ids),
                    Membership.account_id != plan.account_id)):
            elsewhere.add(identity_id)
            if user_type != UserType.FREE.value:
                paid_elsewhere.add(identity_id)
    if plan.options.on_existing == "update" and plan.admin_role_ids:
        decided.active_admins = session.scalar(
            select(func.count()).select_from(Membership).where(
                Membership.account_id == plan.account_id,
                Membership.status == MemberStatus.ACTIVE.value,
                Membership.user_type != UserType.FREE.value,
                Membership.role_id.in_(plan.admin_role_ids))) or 0
    today = utcnow().date()
    for row in rows:
        identity = identities.get(row.email)
        if identity is not None and identity[0] in members:
            _decide_existing(plan, decided, row, identity[0], identity[1], members[identity[0]],
                             shared=identity[0] in elsewhere)
            continue
        if (identity is not None and row.user_type != UserType.FREE.value
                and identity[0] in paid_elsewhere):
            decided.errors.append(RowError(
                row.line, "email", "email_taken",
                "This email already belongs to a user of another account.", row.email, APPLY))
            decided.outcome[row.line] = ERROR
            continue
        if row.role is None and DEFAULT_ROLE in plan.catalog.ungrantable:
            decided.errors.append(RowError(row.line, "role", "cannot_grant", CannotGrant.ROLE,
                                           None, APPLY))
            decided.outcome[row.line] = ERROR
            continue
        if consumes_seat(row.user_type, MemberStatus.INVITED.value, row.seasonal_start,
                         row.seasonal_end, today):
            if free_seats is not None and decided.seats_planned >= free_seats:
                decided.errors.append(RowError(row.line, "row", "no_seat", refusal, None,
                                               APPLY))
                decided.outcome[row.line] = ERROR
                continue
            decided.seats_planned += 1
        if identity is not None:
            decided.identities[row.email] = (identity[0], identity[2])
        decided.creates.append(row)
        decided.outcome[row.line] = CREATE
    return decided


CHANGE_ADMIN = "Only administrators can change an administrator."


def _decide_existing(plan: Plan, decided: Outcomes, row: ImportRow, identity_id: int,
                     name: str, member: tuple[int, int, int | None, str], *,
                     shared: bool) -> None:
    """A row for a member of this account: with ``on_existing=update``, its role, group and
    name as the file says; the name only when no other account has the person (``shared``),
    since it is how they appear everywhere."""
    member_id, role_id, group_id, status = member
    changes: dict[str, Any] = {}
    if plan.options.on_existing == "update":
        if row.name and row.name != name and not shared:
            changes["name"] = row.name
            changes["name_before"] = name  # for the audit entry
        if row.role and plan.role_ids[row.role] != role_id:
            changes["role_id"] = plan.role_ids[row.role]
            if (role_id in plan.admin_role_ids and status == MemberStatus.ACTIVE.value
                    and changes["role_id"] not in plan.admin_role_ids):
                if decided.active_admins <= 1:  # an account never loses its last admin
                    decided.errors.append(RowError(row.line, "role", "last_admin",
                                                   LAST_ADMIN, row.role, APPLY))
                    decided.outcome[row.line] = ERROR
                    return
                decided.active_admins -= 1
        if row.group and plan.group_ids[row.group] != group_id:
            changes["group_id"] = plan.group_ids[row.group]
    if changes and role_id in plan.admin_role_ids and not plan.starter_is_admin:
        column, value = ("role", row.role) if row.role else ("email", row.email)
        decided.errors.append(RowError(row.line, column, "cannot_change_admin", CHANGE_ADMIN,
                                       value, APPLY))
        decided.outcome[row.line] = ERROR
        return
    if changes:
        decided.updates.append((row, identity_id, member_id, role_id, group_id, changes))
        decided.outcome[row.line] = UPDATE
    else:
        decided.outcome[row.line] = UNCHANGED


def subscription_for(session: Session, plan: Plan) -> Subscription:
    """The account's subscription, locked when its seats have a cap (not in a dry run).

    Under a cap, invites racing this chunk wait for it; without one, parts being
    written (which buy seats) go on beside the planner.
    """
    subscription = session.scalars(
        select(Subscription).where(Subscription.account_id == plan.account_id)).one()
    if not plan.options.dry_run and _seat_cap(subscription)[0] is not None:
        session.refresh(subscription, with_for_update=True)
    return subscription


def _seat_cap(subscription: Subscription) -> tuple[int | None, str]:
    """The most seats the account may hold (None: a paid plan buys more), and the refusal."""
    catalog_plan = plan_named(subscription.plan)
    if trial_over(subscription, utcnow()):
        return 0, "No seat left: the trial has ended. Choose a paid plan to add more users."
    if catalog_plan.is_trial:
        purchased = subscription.seats_purchased
        return purchased, (f"No seat left: all {purchased} seats of the trial are taken. "
                           "Choose a paid plan to add more users.")
    cap = subscription.max_seats if subscription.max_seats is not None \
        else catalog_plan.max_seats
    return cap, f"No seat left: the plan allows at most {cap} seats and all are taken."


def held_seats(session: Session, plan: Plan, checkpoint: dict[str, Any]) -> int:
    """Seats planned but not yet taken: a dry run's own count, or the account's unwritten parts."""
    if plan.options.dry_run:
        return int(checkpoint.get("seats_planned", 0))
    return session.scalar(
        select(func.coalesce(func.sum(ImportPart.seats), 0))
        .join(Job, Job.id == ImportPart.job_id)
        .where(Job.account_id == plan.account_id, Job.status == JobStatus.RUNNING.value,
               ImportPart.written_at.is_(None))) or 0


def seats_left(session: Session, plan: Plan, subscription: Subscription,
                held: Callable[[], int]) -> tuple[int | None, str]:
    """Seats new members may still take (None: no limit, a paid plan buys more), and why not."""
    cap, refusal = _seat_cap(subscription)
    if cap is None:
        return None, ""
    in_use = seats_in_use(session, plan.account_id, utcnow().date())
    return max(cap - in_use - held(), 0), refusal
