"""Who may do what in an account (R1, SPEC §10): the permission catalog, the built-in roles'
sets, and the one check every service makes before it acts.

A role holds permission names from the catalog. The built-in admin role stores ``"*"``: it
holds the whole catalog, now and as the catalog grows. Authorization reads the permissions a
role holds, never its name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.accounts.models import Account, Role
from provisioning.core.errors import FieldError, Forbidden, NotAuthenticated, NotFound
from provisioning.members.models import Identity, Membership, MemberStatus, UserType

if TYPE_CHECKING:
    from provisioning.access.auth import Actor


class Permission(StrEnum):
    """Every permission a role can hold, with what it lets a member do."""

    meaning: str

    def __new__(cls, name: str, meaning: str) -> Permission:
        permission = str.__new__(cls, name)
        permission._value_ = name
        permission.meaning = meaning
        return permission

    USERS_MANAGE = ("users.manage", "Invite, import, change the role or group of, disable, "
                    "reactivate and remove members; read the audit log; manage API keys; "
                    "see billing")
    BILLING_VIEW = "billing.view", "See the plan, the seats and the charges"
    LEADS_VIEW = "leads.view", "See leads"
    LEADS_EDIT = "leads.edit", "Create leads and change their fields"
    LEADS_DELETE = "leads.delete", "Delete leads"
    CONTACTS_VIEW = "contacts.view", "See contacts"
    CONTACTS_EDIT = "contacts.edit", "Create contacts and change their fields"
    CUSTOMERS_VIEW = "customers.view", "See customers"
    CUSTOMERS_EDIT = "customers.edit", "Create customers and change their fields"
    TASKS_VIEW = "tasks.view", "See tasks"
    TASKS_EDIT = "tasks.edit", "Create, assign and complete tasks"
    PIPELINES_VIEW = "pipelines.view", "See the sales pipelines and their stages"
    PIPELINES_EDIT = "pipelines.edit", "Create and change sales pipelines"
    INTEGRATIONS_EDIT = "integrations.edit", "Connect and configure integrations"


CATALOG: tuple[Permission, ...] = tuple(Permission)
EVERY_PERMISSION = "*"  # stored by a role that holds the whole catalog
_EVERYTHING = frozenset(CATALOG)
_NAMED = {permission.value: permission for permission in CATALOG}
# R1 gives whoever manages users a view of billing too.
_IMPLIED = {Permission.USERS_MANAGE: (Permission.BILLING_VIEW,)}

ADMIN_ROLE = "admin"
MEMBER_ROLE = "member"
MEMBER_PERMISSIONS: tuple[Permission, ...] = (
    Permission.LEADS_VIEW, Permission.LEADS_EDIT, Permission.CONTACTS_VIEW,
    Permission.CONTACTS_EDIT, Permission.PIPELINES_VIEW, Permission.TASKS_VIEW,
    Permission.TASKS_EDIT,
)
# What each built-in role stores when an account is created.
BUILTIN_ROLES: dict[str, list[str]] = {
    ADMIN_ROLE: [EVERY_PERMISSION],
    MEMBER_ROLE: [permission.value for permission in MEMBER_PERMISSIONS],
}

# R9: a free user holds no permission account-wide, whatever its role stores. On the leads and
# customers it takes part in (and nowhere else) it may do what these allow, and write messages.
PARTICIPANT_PERMISSIONS = frozenset((Permission.LEADS_VIEW, Permission.CUSTOMERS_VIEW))

# Refusal codes clients already rely on; any other permission is refused as permission_required.
_REFUSALS = {Permission.USERS_MANAGE: (
    "admin_required", "Only administrators can manage users (the users.manage permission).")}


def unknown_permissions(names: Iterable[str]) -> list[str]:
    """The names that are not in the catalog, sorted (``"*"`` is not one a client may send)."""
    return sorted(set(names) - set(_NAMED))


def granted(stored: Iterable[str] | None) -> frozenset[Permission]:
    """Every permission a role storing ``stored`` holds: ``"*"`` is the whole catalog."""
    if not stored:
        return frozenset()
    names = set(stored)
    if EVERY_PERMISSION in names:
        return _EVERYTHING
    held = {_NAMED[name] for name in names if name in _NAMED}
    for permission in list(held):
        held.update(_IMPLIED.get(permission, ()))
    return frozenset(held)


def role_permissions(stored: Iterable[str] | None) -> list[str]:
    """A role's permissions as a client reads them: catalog names, ``"*"`` spelled out."""
    names = set(stored or ())
    if EVERY_PERMISSION in names:
        return [permission.value for permission in CATALOG]
    return [permission.value for permission in CATALOG if permission.value in names]


def catalog() -> list[dict[str, str]]:
    """The catalog as the API lists it: each permission's name and meaning."""
    return [{"name": permission.value, "description": permission.meaning}
            for permission in CATALOG]


@dataclass(frozen=True)
class AdministeredAccount:
    """What a service needs to know of the account a member acts in."""

    id: int
    name: str
    default_language: str
    seasonal_seats: int


# Read with the bearer token (auth._TOKEN_AND_STANDING), or alone by ``standing_in``.
STANDING_COLUMNS = (Account.id, Account.name, Account.default_language, Account.seasonal_seats,
                    Membership.status, Role.permissions, Membership.id, Membership.user_type)


@dataclass(frozen=True)
class Standing:
    """An identity's membership of one account: what the policy looks at."""

    account_id: int
    account: AdministeredAccount | None  # None: not a member of it
    status: str | None
    permissions: frozenset[Permission]
    is_admin: bool = False  # the role stores "*": it holds the catalog as it grows
    # Session tokens issued up to this moment do not act in this account (a disable).
    sessions_valid_after: datetime | None = None
    member_id: int | None = None
    free: bool = False  # a free user (R9): only the records it takes part in

    @classmethod
    def of(cls, account_id: int, row: Sequence[Any],
           sessions_valid_after: datetime | None = None) -> Standing:
        """From ``STANDING_COLUMNS``; all null when the identity is not a member. A free
        user's role counts for nothing: it holds no permission account-wide (R9)."""
        key, name, language, seasonal_seats, status, stored, member_id, user_type = row
        account = (None if key is None
                   else AdministeredAccount(key, name, language, seasonal_seats))
        free = user_type == UserType.FREE.value
        return cls(account_id, account, status, frozenset() if free else granted(stored),
                   not free and EVERY_PERMISSION in (stored or ()), sessions_valid_after,
                   member_id, free)

    def ended(self, session_issued_at: datetime | None) -> bool:
        """Whether a session token issued at ``session_issued_at`` was ended here by a
        disable (R5): it stays dead after an activation. API keys (None) are revoked instead."""
        return (session_issued_at is not None and self.sessions_valid_after is not None
                and session_issued_at <= self.sessions_valid_after)

    @property
    def is_active(self) -> bool:
        return self.account is not None and self.status == MemberStatus.ACTIVE.value

    def holds(self, permission: Permission) -> bool:
        """Whether this member may act with ``permission`` now (an inactive one may not)."""
        return self.is_active and permission in self.permissions


def beyond_grant(standing: Standing, stored: Iterable[str] | None) -> list[str]:
    """What a role storing ``stored`` holds that this member may not give: nobody grants a
    permission they do not hold, and only an admin makes admins. Empty: it may be given."""
    if standing.is_admin:
        return []
    if EVERY_PERMISSION in set(stored or ()):
        return [EVERY_PERMISSION]
    return sorted(permission.value for permission in granted(stored) - standing.permissions)


class CannotGrant(Forbidden):
    """A role or permission beyond what the acting member holds."""

    code = "cannot_grant"
    ROLE = "You cannot give a role that holds more than your own role does."

    def __init__(self, beyond: list[str], field: str = "role") -> None:
        detail = ("Only administrators can make administrators." if beyond == [EVERY_PERMISSION]
                  else f"You cannot give permissions your own role does not hold: "
                       f"{', '.join(beyond)}.")
        super().__init__(detail, errors=[FieldError(field, detail, self.code)])


def refuse_beyond_grant(standing: Standing, stored: Iterable[str] | None,
                        field: str = "role") -> None:
    if beyond := beyond_grant(standing, stored):
        raise CannotGrant(beyond, field)


def refuse_changing_admin(standing: Standing, member_role: Iterable[str] | None) -> None:
    """Only an admin changes, disables or removes an admin: a role holding users.manage does
    what R1 gives admins, except to admins (403 ``cannot_change_admin``)."""
    if not standing.is_admin and EVERY_PERMISSION in set(member_role or ()):
        raise Forbidden("Only administrators can change, disable or remove an administrator.",
                        code="cannot_change_admin")


def standing_of(session: Session, actor: Actor, account_id: int) -> Standing:
    """``actor``'s standing in the account, read with its token when the request named it."""
    standing = actor.standing
    if standing is None or standing.account_id != account_id:
        standing = standing_in(session, actor.identity_id, account_id)
    return standing


def require(session: Session, actor: Actor, account_id: int, permission: Permission
            ) -> AdministeredAccount:
    """The account, if ``actor`` is an active member whose role holds ``permission``.

    Another account (or an API key of another account) is not found; an inactive member, a
    free user, or a role without the permission, is refused naming the permission.
    """
    return require_reach(session, actor, account_id, permission, participant_may=False).account


@dataclass(frozen=True)
class Reach:
    """Where a permission lets a member act: the whole account, or (a free user) only the
    leads and customers it takes part in."""

    account: AdministeredAccount
    member_id: int
    participant_only: bool


def require_reach(session: Session, actor: Actor, account_id: int, permission: Permission,
                  *, participant_may: bool | None = None) -> Reach:
    """``require`` for record routes: a free user passes where R9 lets a participant act
    (``participant_may``, by default ``permission in PARTICIPANT_PERMISSIONS``), and its
    reach is then only the records it takes part in."""
    if actor.account_id is not None and actor.account_id != account_id:
        raise NotFound("No such account.")
    standing = standing_of(session, actor, account_id)
    if standing.account is None or standing.member_id is None:
        raise NotFound("No such account.")
    if standing.ended(actor.session_issued_at):
        raise NotAuthenticated("Your session in this account ended when your membership was "
                               "disabled; log in again.", code="invalid_token")
    if not standing.is_active:
        raise Forbidden("Your membership of this account is not active.")
    if standing.free:
        allowed = (permission in PARTICIPANT_PERMISSIONS if participant_may is None
                   else participant_may)
        if not allowed:
            raise Forbidden(f"Free users only see the leads and customers they take part in; "
                            f"this needs the {permission.value} permission.", code="free_user")
        return Reach(standing.account, standing.member_id, participant_only=True)
    if permission not in standing.permissions:
        code, detail = _REFUSALS.get(permission, (
            "permission_required",
            f"Your role does not hold the {permission.value} permission: {permission.meaning}."))
        raise Forbidden(detail, code=code)
    return Reach(standing.account, standing.member_id, participant_only=False)


def standing_in(session: Session, identity_id: int, account_id: int) -> Standing:
    """An identity's standing in an account, read alone (a job acting for its starter)."""
    row = session.connection().execute(
        select(*STANDING_COLUMNS, Membership.sessions_valid_after)
        .join(Membership, Membership.account_id == Account.id)
        .join(Role, Role.id == Membership.role_id)
        .where(Account.id == account_id, Membership.identity_id == identity_id)
    ).first()
    if row is None:
        return Standing.of(account_id, (None,) * len(STANDING_COLUMNS))
    return Standing.of(account_id, row[:-1], row[-1])


def first_member_holding(session: Session, account_id: int, permission: Permission
                         ) -> Identity | None:
    """The account's longest-standing active member whose role holds ``permission``."""
    roles = session.execute(select(Role.id, Role.permissions)
                            .where(Role.account_id == account_id)).all()
    holding = [role_id for role_id, stored in roles if permission in granted(stored)]
    if not holding:
        return None
    return session.scalars(
        select(Identity)
        .join(Membership, Membership.identity_id == Identity.id)
        .where(Membership.account_id == account_id, Membership.role_id.in_(holding),
               Membership.status == MemberStatus.ACTIVE.value,
               Membership.user_type != UserType.FREE.value)
        .order_by(Membership.id).limit(1)).first()
