"""Creating a workspace with its built-in roles, groups, subscription and first admin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning import audit
from provisioning.auth import ADMIN_ROLE, Actor, issue_api_key, require_admin
from provisioning.errors import Conflict, FieldError, InvalidInput
from provisioning.members import EmailTaken, holds_paid_membership
from provisioning.models import (
    Account,
    AuditEntry,
    Group,
    Identity,
    Membership,
    MemberStatus,
    Role,
    Subscription,
    UserType,
    utcnow,
)
from provisioning.pages import decode_cursor, encode_cursor, page_size
from provisioning.plans import CATALOG, PERIOD_DAYS, plan_named
from provisioning.security import hash_password
from provisioning.validation import Form, check_password, normalise_email, normalise_language

MEMBER_ROLE = "member"
FREE_USERS_GROUP = "Free users"
DEFAULT_GROUPS = ("Sales", "Marketing", "Support", FREE_USERS_GROUP)
PERMISSIONS = (
    "leads.view", "leads.edit", "leads.delete", "contacts.view", "contacts.edit",
    "customers.view", "customers.edit", "tasks.view", "tasks.edit", "pipelines.view",
    "pipelines.edit", "integrations.edit", "users.manage", "billing.view",
)
MEMBER_PERMISSIONS = ["leads.view", "leads.edit", "contacts.view", "contacts.edit",
                      "pipelines.view", "tasks.view", "tasks.edit"]


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
) -> CreatedAccount:
    """A new workspace whose first member is an active admin; returns an API key for it."""
    errors: list[FieldError] = []
    if not name.strip():
        errors.append(FieldError("name", "The account needs a name."))
    if plan not in CATALOG:
        errors.append(FieldError("plan", f"Use one of: {', '.join(CATALOG)}."))
    if period not in PERIOD_DAYS:
        errors.append(FieldError("period", "Use monthly or annual."))
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
    account = Account(name=name.strip(), default_language=language)
    session.add(account)
    session.flush()
    admin_role = Role(account_id=account.id, name=ADMIN_ROLE, permissions=["*"], is_builtin=True)
    session.add_all(
        [
            admin_role,
            Role(account_id=account.id, name=MEMBER_ROLE, permissions=MEMBER_PERMISSIONS,
                 is_builtin=True),
            *(Group(account_id=account.id, name=group, is_builtin=group == FREE_USERS_GROUP)
              for group in DEFAULT_GROUPS),
            Subscription(
                account_id=account.id,
                plan=plan,
                period=period,
                seats_purchased=purchased,
                full_seats_taken=1,  # the first admin, below
                current_period_start=now,
                current_period_end=now + timedelta(days=PERIOD_DAYS[period]),
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
        after={"name": account.name, "plan": plan, "seats": purchased, "admin": email},
    )
    return CreatedAccount(account_id=account.id, admin_id=admin.id, admin_token=token)


def list_roles(session: Session, actor: Actor, account_id: int) -> list[dict[str, object]]:
    require_admin(session, actor, account_id)
    roles = session.scalars(select(Role).where(Role.account_id == account_id).order_by(Role.id))
    return [{"id": r.id, "name": r.name, "permissions": r.permissions, "builtin": r.is_builtin}
            for r in roles]


def create_role(session: Session, actor: Actor, account_id: int, body: Any) -> dict[str, object]:
    """A custom role: a named set of permissions from the catalog."""
    require_admin(session, actor, account_id)
    form = Form(body)
    name = form.text("name", required=True, max_length=100)
    permissions = form.body.get("permissions")
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        form.errors.append(FieldError("permissions", "Send a list of permission names."))
    elif unknown := sorted(set(permissions) - set(PERMISSIONS)):
        form.errors.append(FieldError("permissions", f"Unknown: {', '.join(unknown)}. "
                                                     f"Known: {', '.join(PERMISSIONS)}."))
    form.finish()
    assert name is not None and isinstance(permissions, list)
    if session.scalars(select(Role.id).where(Role.account_id == account_id,
                                             Role.name == name)).first():
        raise Conflict(f"A role named {name!r} already exists.", code="role_exists")
    role = Role(account_id=account_id, name=name, permissions=sorted(set(permissions)))
    session.add(role)
    session.flush()
    audit.record(session, account_id=account_id, actor_id=actor.identity_id,
                 actor_label=actor.label, action="role.create", target_type="role",
                 target_id=role.id, after={"name": name, "permissions": role.permissions})
    return {"id": role.id, "name": role.name, "permissions": role.permissions, "builtin": False}


def list_groups(session: Session, actor: Actor, account_id: int) -> list[dict[str, object]]:
    require_admin(session, actor, account_id)
    groups = session.scalars(select(Group).where(Group.account_id == account_id).order_by(Group.id))
    return [{"id": g.id, "name": g.name, "builtin": g.is_builtin} for g in groups]


def list_audit(session: Session, actor: Actor, account_id: int, cursor: str | None,
               limit: int | None) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, a page at a time."""
    require_admin(session, actor, account_id)
    limit = page_size(limit)
    query = select(AuditEntry).where(AuditEntry.account_id == account_id)
    before = decode_cursor(cursor)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    entries = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)).all()
    items = [
        {"id": e.id, "actor": e.actor_label, "action": e.action, "target_type": e.target_type,
         "target_id": e.target_id, "before": e.before, "after": e.after, "at": e.created_at}
        for e in entries[:limit]
    ]
    return items, (encode_cursor(entries[limit - 1].id) if len(entries) > limit else None)
