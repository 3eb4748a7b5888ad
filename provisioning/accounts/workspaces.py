"""Creating a workspace with its built-in roles, groups, subscription and first admin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.access.auth import issue_api_key
from provisioning.access.policy import ADMIN_ROLE, BUILTIN_ROLES
from provisioning.accounts.models import Account, Group, Role
from provisioning.billing.models import Subscription
from provisioning.billing.plans import PERIODS, PLAN_NAMES, next_period_end, plan_named
from provisioning.core import audit
from provisioning.core.config import settings
from provisioning.core.errors import FieldError, InvalidInput
from provisioning.core.models import utcnow
from provisioning.core.security import hash_password
from provisioning.core.validation import check_password, normalise_email, normalise_language
from provisioning.members.conflicts import EmailTaken, holds_paid_membership
from provisioning.members.models import Identity, Membership, MemberStatus, UserType
from provisioning.members.rules import FREE_USERS_GROUP

DEFAULT_GROUPS = ("Sales", "Marketing", "Support", FREE_USERS_GROUP)


@dataclass(frozen=True)
class CreatedAccount:
    account_id: int
    admin_id: int
    admin_token: str


def create_account(
    session: Session,
    *,
    name: str,
    admin_email: str,
    admin_password: str,
    admin_name: str = "",
    plan: str = "trial",
    seats: int | None = None,
    language: str = "en",
    period: str = "monthly",
    seasonal_seats: int = 0,
) -> CreatedAccount:
    """A new workspace whose first member is an active admin; returns an API key for it."""
    errors: list[FieldError] = []
    if not name.strip():
        errors.append(FieldError("name", "The account needs a name."))
    if plan not in PLAN_NAMES:
        errors.append(FieldError("plan", f"Use one of: {', '.join(PLAN_NAMES)}."))
    if period not in PERIODS:
        errors.append(FieldError("period", "Use monthly or annual."))
    if seasonal_seats < 0:
        errors.append(FieldError("seasonal_seats", "Use 0 or more seasonal seats."))
    errors += check_password(admin_password, "admin_password")
    if errors:
        raise InvalidInput(errors)
    email = normalise_email(admin_email, "admin_email")
    language = normalise_language(language)
    chosen = plan_named(plan)
    purchased = seats if seats is not None else (chosen.max_seats or 1)
    if purchased < 1 or (chosen.max_seats is not None and purchased > chosen.max_seats):
        raise InvalidInput([FieldError("seats", "Not a valid number of seats for this plan.")])

    now = utcnow()
    account = Account(name=name.strip(), default_language=language,
                      seasonal_seats=seasonal_seats)
    session.add(account)
    session.flush()
    roles = {role: Role(account_id=account.id, name=role, permissions=list(permissions),
                        is_builtin=True) for role, permissions in BUILTIN_ROLES.items()}
    admin_role = roles[ADMIN_ROLE]  # holds every permission of the catalog
    session.add_all(
        [
            *roles.values(),
            *(Group(account_id=account.id, name=group, is_builtin=group == FREE_USERS_GROUP)
              for group in DEFAULT_GROUPS),
            Subscription(
                account_id=account.id,
                plan=plan,
                period=period,
                seats_purchased=purchased,
                full_seats_taken=1,  # the first admin, below
                currency=settings().billing_currency,
                current_period_start=now,
                current_period_end=(now + timedelta(days=chosen.trial_days) if chosen.is_trial
                                    else next_period_end(now, period)),
                trial_ends_at=now + timedelta(days=chosen.trial_days) if chosen.is_trial else None,
            ),
        ]
    )
    identity = session.scalars(select(Identity).where(Identity.email == email)).first()
    if identity is None:
        identity = Identity(email=email, name=admin_name.strip(), language=language)
        session.add(identity)
    elif holds_paid_membership(session, identity.id):
        raise EmailTaken()
    if identity.password_hash is None:
        identity.password_hash = hash_password(admin_password)
    session.flush()
    admin = Membership(
        account_id=account.id,
        identity_id=identity.id,
        role_id=admin_role.id,
        user_type=UserType.FULL.value,
        status=MemberStatus.ACTIVE.value,
        language=language,
        activated_at=now,
    )
    session.add(admin)
    session.flush()
    token = issue_api_key(session, identity, account.id, "created with the account")
    audit.record(
        session,
        account_id=account.id,
        actor_id=identity.id,
        actor_label="system",
        action="account.create",
        target_type="account",
        target_id=account.id,
        after={"name": account.name, "plan": plan, "period": period, "seats": purchased,
               "admin": email},
    )
    return CreatedAccount(account_id=account.id, admin_id=admin.id, admin_token=token)
