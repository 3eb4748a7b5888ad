"""Members as an admin sees them: one, or a page of the account's list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    false,
    func,
    or_,
    select,
)
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import Permission, require
from provisioning.accounts.models import Group, Role
from provisioning.core.errors import FieldError, InvalidInput, NotFound
from provisioning.core.models import utcnow
from provisioning.core.pages import decode_cursor, encode_cursor, page_size
from provisioning.mail import outbox
from provisioning.mail.models import EmailStatus, OutboxEmail
from provisioning.members import rules, search
from provisioning.members.models import Identity, Invitation, Membership, MemberStatus

MAX_SEARCH_LENGTH = 100
TWO_FACTOR_VALUES = {"true": True, "1": True, "false": False, "0": False}

EMAIL_STATE = {
    EmailStatus.QUEUED.value: "queued",
    EmailStatus.SENDING.value: "queued",
    EmailStatus.DEFERRED.value: "deferred",
    EmailStatus.SENT.value: "sent",
    EmailStatus.FAILED.value: "failed",
}


@dataclass(frozen=True)
class InvitationView:
    state: str  # not_sent | queued | sent | deferred | failed | accepted | expired | revoked
    expires_at: datetime | None
    last_sent_at: datetime | None
    sends: int
    # Why the email never arrived, as the recipient's server put it ("550 5.1.1 no such
    # user"): only when it failed for good, so the admin can correct the address.
    failure: str | None = None


@dataclass(frozen=True)
class MemberView:
    id: int
    email: str
    name: str
    role: str
    group: str | None
    user_type: str
    language: str
    status: str
    two_factor: bool
    invitation: InvitationView | None
    created_at: datetime
    note: str | None  # R12: admins only (``ADMIN_ONLY``)


# What a member object shows admins only (R12): an answer to anyone else leaves it out.
ADMIN_ONLY = frozenset({"note"})


@dataclass(frozen=True)
class Page:
    items: list[MemberView]
    next_cursor: str | None
    total: int | None  # counted only when asked


def invitation_state(invitation: Invitation, email_status: str | None, now: datetime) -> str:
    """What the admin sees of an invitation, so nobody invites the same person twice."""
    return state_of(invitation.accepted_at, invitation.revoked_at,
                    invitation.membership_id is not None, invitation.expires_at,
                    email_status, now)


def state_of(accepted_at: datetime | None, revoked_at: datetime | None, linked: bool,
             expires_at: datetime, email_status: str | None, now: datetime) -> str:
    """``invitation_state`` from an invitation's columns."""
    if accepted_at is not None:
        return "accepted"
    if revoked_at is not None or not linked:
        return "revoked"
    if expires_at <= now:
        return "expired"
    return EMAIL_STATE.get(email_status or "", "queued")


@outbox.keep_while_read
def open_invitations_last_emails(now: datetime) -> Select[Any]:
    """The email each open invitation last sent: the outbox keeps it whatever its age, since
    the invitation's state ("sent", "failed") is read from it."""
    return select(Invitation.last_email_id).where(
        Invitation.last_email_id.is_not(None), Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None), Invitation.expires_at > now)


def invited_name(invitation_name: str | None, identity_name: str, has_login: bool) -> str:
    """The name an account sees for someone it invited who has not joined yet: the one its
    admin wrote, else the identity's only if nobody owns it yet (no login). A person's own
    profile, like their two-factor state, shows only to the accounts they have joined."""
    return invitation_name or ("" if has_login else identity_name)


def member_view(
    membership: Membership, invitation: Invitation | None, email_status: str | None,
    now: datetime, email_error: str | None = None,
) -> MemberView:
    identity = membership.identity
    joined = membership.status != MemberStatus.INVITED.value
    invitation_view = None
    if invitation is not None:
        state = invitation_state(invitation, email_status, now)
        invitation_view = InvitationView(
            state=state,
            expires_at=invitation.expires_at,
            last_sent_at=invitation.last_sent_at,
            sends=invitation.sends,
            failure=email_error if state == "failed" else None,
        )
    elif membership.status == MemberStatus.INVITED.value:
        # imported without invitations: "resend" sends the first one
        invitation_view = InvitationView(state="not_sent", expires_at=None, last_sent_at=None,
                                         sends=0)
    return MemberView(
        id=membership.id,
        email=identity.email,
        name=identity.name if joined else invited_name(
            invitation.name if invitation else None, identity.name,
            identity.password_hash is not None),
        role=membership.role.name,
        group=membership.group.name if membership.group else None,
        user_type=membership.user_type,
        language=membership.language,
        status=membership.status,
        two_factor=identity.totp_enabled and joined,
        invitation=invitation_view,
        created_at=membership.created_at,
        note=membership.note,
    )


def catalog(connection: Connection, kind: type[Role] | type[Group], account_id: int
            ) -> dict[str, tuple[int, str]]:
    """The account's roles or groups by ``rules.name_key``: (id, name as stored)."""
    rows = connection.execute(select(kind.id, kind.name).where(kind.account_id == account_id))
    return {rules.name_key(name): (key, name) for key, name in rows}


def _members_query(account_id: int) -> Select[Membership, Invitation, str, str | None]:
    return (
        select(Membership, Invitation, OutboxEmail.status, OutboxEmail.last_error)
        .join(Identity, Identity.id == Membership.identity_id)
        .outerjoin(Invitation, Invitation.membership_id == Membership.id)
        .outerjoin(OutboxEmail, OutboxEmail.id == Invitation.last_email_id)
        .where(Membership.account_id == account_id)
    )


def get_member(session: Session, actor: Actor, account_id: int, member_id: int) -> MemberView:
    require(session, actor, account_id, Permission.USERS_MANAGE)
    return read_member(session, account_id, member_id)


def read_member(session: Session, account_id: int, member_id: int) -> MemberView:
    """One member as the admin sees it, for a caller that has checked the policy."""
    row = session.execute(_members_query(account_id).where(Membership.id == member_id)).first()
    if row is None:
        raise NotFound("No such member in this account.")
    return member_view(row[0], row[1], row[2], utcnow(), row[3])


def list_members(
    session: Session, actor: Actor, account_id: int, filters: dict[str, str | None],
    cursor: str | None, limit: int | None, *, with_total: bool = False,
) -> Page:
    """Members in creation order, filtered, a page at a time: the cursor is the last id
    seen, so a deep page reads as little as the first (``ix_memberships_list``), and members
    added meanwhile come after every page already read. ``with_total`` counts the matches."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    size = page_size(limit)
    after = decode_cursor(cursor)
    criteria = member_criteria(session.connection(), account_id, filters)
    matches = select(Membership.id).where(Membership.account_id == account_id, *criteria)
    if filters.get("two_factor") is not None:  # the only filter on the identity
        matches = matches.join(Identity, Identity.id == Membership.identity_id)
    total = None
    if with_total:
        total = session.scalar(select(func.count()).select_from(matches.subquery())) or 0
    if after is not None:
        matches = matches.where(Membership.id > after)
    # The page's ids first, then their columns: the joins run for one page, not for every
    # member the search matched.
    page = matches.order_by(Membership.id).limit(size + 1).scalar_subquery()
    rows = session.connection().execute(
        _LISTED.where(Membership.id.in_(page)).order_by(Membership.id)).all()
    now = utcnow()
    items = [listed_view(row, now) for row in rows[:size]]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > size else None
    return Page(items=items, next_cursor=next_cursor, total=total)


# A page of the list as plain columns: the same view as ``member_view`` without an ORM
# object per row, which would cost more than the query.
_LISTED = (
    select(Membership.id, Identity.email, Identity.name, Identity.password_hash.is_not(None),
           Role.name, Group.name, Membership.user_type, Membership.language, Membership.status,
           Identity.totp_enabled, Membership.created_at, Invitation.id, Invitation.accepted_at,
           Invitation.revoked_at, Invitation.expires_at, Invitation.last_sent_at,
           Invitation.sends, Invitation.name, OutboxEmail.status, OutboxEmail.last_error,
           Membership.note)
    .select_from(Membership)
    .join(Identity, Identity.id == Membership.identity_id)
    .join(Role, Role.id == Membership.role_id)
    .outerjoin(Group, Group.id == Membership.group_id)
    .outerjoin(Invitation, Invitation.membership_id == Membership.id)
    .outerjoin(OutboxEmail, OutboxEmail.id == Invitation.last_email_id)
)


def listed_view(row: Any, now: datetime) -> MemberView:
    """One row of ``_LISTED`` as the admin sees it (``member_view``'s rules)."""
    (member_id, email, identity_name, has_login, role, group, user_type, language, status,
     totp_enabled, created_at, invitation_id, accepted_at, revoked_at, expires_at,
     last_sent_at, sends, invitation_name, email_status, email_error, note) = row
    joined = status != MemberStatus.INVITED.value
    invitation_view = None
    if invitation_id is not None:
        state = state_of(accepted_at, revoked_at, True, expires_at, email_status, now)
        invitation_view = InvitationView(state=state, expires_at=expires_at,
                                         last_sent_at=last_sent_at, sends=sends,
                                         failure=email_error if state == "failed" else None)
    elif not joined:
        invitation_view = InvitationView(state="not_sent", expires_at=None,
                                         last_sent_at=None, sends=0)
    return MemberView(
        id=member_id, email=email,
        name=identity_name if joined else invited_name(invitation_name, identity_name,
                                                        has_login),
        role=role, group=group, user_type=user_type, language=language, status=status,
        two_factor=bool(totp_enabled) and joined, invitation=invitation_view,
        created_at=created_at, note=note)


def member_criteria(connection: Connection, account_id: int, filters: dict[str, str | None]
                    ) -> list[ColumnElement[bool]]:
    """The list's filters as conditions on memberships (and identities, for two-factor),
    each bad value refused naming its field; an unknown role or group matches nobody."""
    criteria: list[ColumnElement[bool]] = []
    errors: list[FieldError] = []
    status = filters.get("status")
    if status:
        if status not in {s.value for s in MemberStatus}:
            errors.append(FieldError("status", "Filter by invited, active or inactive."))
        criteria.append(Membership.status == status)
    kind = filters.get("user_type")
    if kind:
        if kind not in rules.USER_TYPES:
            errors.append(FieldError("user_type",
                                     f"Filter by {', '.join(rules.USER_TYPES)}."))
        criteria.append(Membership.user_type == kind)
    for field, model, column in (("role", Role, Membership.role_id),
                                 ("group", Group, Membership.group_id)):
        if filters.get(field):  # a name, in any case; one the account lacks matches nobody
            found = catalog(connection, model, account_id).get(
                rules.name_key(filters[field] or ""))
            criteria.append(column == found[0] if found else false())
    two_factor = filters.get("two_factor")
    if two_factor is not None:
        if two_factor not in TWO_FACTOR_VALUES:
            errors.append(FieldError("two_factor", "Filter by true or false."))
        # Shown only once the person joined (member_view), so filtered the same way.
        joined = Membership.status != MemberStatus.INVITED.value
        criteria.append(and_(Identity.totp_enabled.is_(True), joined)
                        if TWO_FACTOR_VALUES.get(two_factor) else
                        or_(Identity.totp_enabled.is_(False), ~joined))
    text = filters.get("q")
    if text and len(text) > MAX_SEARCH_LENGTH:
        errors.append(FieldError("q", f"Search for at most {MAX_SEARCH_LENGTH} characters.",
                                 "too_long"))
    elif text:
        found_by = search.matching(text)
        if found_by is not None:
            criteria.append(found_by)
    if errors:
        raise InvalidInput(errors)
    return criteria
