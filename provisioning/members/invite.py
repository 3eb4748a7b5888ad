"""Inviting a member (R2-R4, R7, R8, R11, R14): the rows of one invitation, in one statement on
PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Insert,
    Select,
    String,
    bindparam,
    cast,
    insert,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.access.policy import Permission, refuse_beyond_grant, require, standing_of
from provisioning.accounts.models import Group, Role
from provisioning.billing import seats
from provisioning.billing.seats import SeatCount, consumes_seat, seat_change, take_seat
from provisioning.core import audit
from provisioning.core.db import prefixed_values
from provisioning.core.errors import FieldError, InvalidInput
from provisioning.core.models import utcnow
from provisioning.core.security import hash_password
from provisioning.mail import outbox
from provisioning.mail.models import EmailStatus
from provisioning.members import rules
from provisioning.members.conflicts import refuse_second_membership
from provisioning.members.directory import (
    EMAIL_STATE,
    InvitationView,
    MemberView,
    catalog,
    invited_name,
)
from provisioning.members.invitation_builder import Addressee, Inviter, new_invitation
from provisioning.members.models import Identity, Invitation, Membership, MemberStatus
from provisioning.members.rules import InviteRequest
from provisioning.members.search import search_keys


def invite_member(session: Session, actor: Actor, account_id: int, body: Any) -> MemberView:
    """Invite someone by email: a membership, an invitation and one email in the outbox.

    Written with Core statements and answered from what was written: the ORM's unit
    of work would cost more than the inserts themselves, on the busiest path there is.
    """
    account = require(session, actor, account_id, Permission.USERS_MANAGE)
    try:
        request = InviteRequest.parse(body)
    except InvalidInput as exc:  # every problem at once, unknown names too
        raise InvalidInput(exc.errors + _unknown_names(session, account.id, body,
                                                       exc.errors)) from None
    rules.seasonal_allowed(request.user_type, account.seasonal_seats)
    resolved = _resolve(session, account.id, request)
    standing = standing_of(session, actor, account.id)
    if not standing.is_admin:  # only then can the role be beyond what the actor may give
        refuse_beyond_grant(standing, session.scalar(
            select(Role.permissions).where(Role.id == resolved.role_id)))
    invitee = _invitee(session, account.id, request, resolved)
    role_id, group_id, group_name = resolved.role_id, resolved.group_id, resolved.group_name
    now = utcnow()
    language = request.language or account.default_language
    invitation = new_invitation(
        Inviter(account.id, account.name, actor.name or actor.email),
        Addressee(invitee.email, invitee.name, language, invitee.has_login), now)
    takes_seat = consumes_seat(request.user_type, MemberStatus.INVITED.value,
                               request.seasonal_start, request.seasonal_end, now.date())
    rows = {
        "member_account_id": account.id, "member_identity_id": invitee.id,
        "member_role_id": role_id, "member_group_id": group_id,
        "member_user_type": request.user_type, "member_status": MemberStatus.INVITED.value,
        "member_language": language, "member_seasonal_start": request.seasonal_start,
        "member_seasonal_end": request.seasonal_end, "member_invited_by_id": actor.identity_id,
        "member_created_at": now,
        **{f"member_{column}": key for column, key in search_keys(
            invited_name(request.name, invitee.name, invitee.has_login), invitee.email).items()},
        **outbox.new_email(**invitation.email),
        "invitation_account_id": account.id, "invitation_email": invitee.email,
        "invitation_token_nonce": invitation.token_nonce,
        "invitation_token_hash": invitation.token_hash,
        "invitation_invited_by_id": actor.identity_id,
        "invitation_existing_identity": invitee.has_login,
        "invitation_expires_at": invitation.expires_at, "invitation_sends": 1,
        "invitation_last_sent_at": now, "invitation_resends_in_window": 0,
        "invitation_created_at": now, "invitation_name": request.name,
        "invitation_initial_password_hash": resolved.password_hash,
        **audit.entry(
            account_id=account.id, actor_id=actor.identity_id, actor_label=actor.label,
            action="member.invite", target_type="member", target_id=None,  # the new member
            after={"email": invitee.email, "role": resolved.role_name, "group": group_name,
                   "user_type": request.user_type, "language": language}),
        "seat_account_id": account.id, "seat_change": seat_change(request.user_type),
        "seat_today": now.date(),
    }
    # Without seasonal seats on contract nobody can add a seasonal member (R10), so the
    # rows' own statement may count them; elsewhere one may have come in since its snapshot.
    member_id, counted = _write_invitation(session.connection(), rows, takes_seat=takes_seat,
                                           seasonal_here=account.seasonal_seats <= 0)
    outbox.wake_after_commit(session)
    if counted is not None:
        take_seat(session, account.id, now.date(), counted, actor_id=actor.identity_id,
                  actor_label=actor.label)
    return MemberView(
        id=member_id, email=invitee.email,
        name=invited_name(request.name, invitee.name, invitee.has_login),
        role=resolved.role_name, group=group_name, user_type=request.user_type,
        language=language, status=MemberStatus.INVITED.value, two_factor=False,
        invitation=InvitationView(state=EMAIL_STATE[EmailStatus.QUEUED.value],
                                  expires_at=invitation.expires_at, last_sent_at=now,
                                  sends=1),
        created_at=now, note=None,
    )


def _write_invitation(connection: Connection, rows: dict[str, Any], *, takes_seat: bool,
                      seasonal_here: bool) -> tuple[int, SeatCount | None]:
    """One invitation's rows: its member, its email, the invitation and its audit entry,
    and last the seat counter when it takes a seat (``seats.COUNT_SEAT``, which locks
    the subscription row). Returns the member's id and what the counter returned.

    PostgreSQL writes them in one statement, which with ``seasonal_here`` also counts
    the seasonal members holding a seat as its snapshot saw them; SQLite, which has no
    data-modifying CTEs, writes them one by one (``take_seat`` counts those members).
    """
    if connection.dialect.name == "postgresql":
        statement = _INVITATION_ROWS[takes_seat, takes_seat and seasonal_here]
        member_id, *counted = connection.execute(statement, rows).one()
        return member_id, SeatCount(*counted) if takes_seat else None
    member_id = connection.execute(_INSERT_MEMBER, rows).scalar_one()
    email_id = connection.execute(outbox.QUEUE_EMAIL, rows).scalar_one()
    connection.execute(_INSERT_INVITATION, {**rows, "invitation_membership_id": member_id,
                                            "invitation_last_email_id": email_id})
    connection.execute(audit.INSERT, {**rows, "audit_target_id": str(member_id)})
    if not takes_seat:
        return member_id, None
    purchased, full_taken = connection.execute(seats.COUNT_SEAT, rows).one()
    return member_id, SeatCount(purchased, full_taken)


_INSERT_MEMBER = insert(Membership).values(prefixed_values("member_", (
    "account_id", "identity_id", "role_id", "group_id", "user_type", "status", "language",
    "seasonal_start", "seasonal_end", "invited_by_id", "created_at", "search_name",
    "search_surname", "search_email",
))).returning(Membership.id)


def _insert_invitation(member_id: Any, email_id: Any) -> Insert:
    return insert(Invitation).values(prefixed_values("invitation_", (
        "account_id", "email", "token_nonce", "token_hash", "invited_by_id",
        "existing_identity", "expires_at", "sends", "last_sent_at", "resends_in_window",
        "created_at", "name", "initial_password_hash",
    )) | {"membership_id": member_id, "last_email_id": email_id})


_INSERT_INVITATION = _insert_invitation(bindparam("invitation_membership_id"),
                                        bindparam("invitation_last_email_id"))


def _invitation_rows_in_one_statement(takes_seat: bool, counts_seasonal: bool
                                      ) -> Select[Any]:
    """``_write_invitation`` on PostgreSQL: the inserts as data-modifying CTEs, each row
    pointing at the new member's and email's ids."""
    member = _INSERT_MEMBER.cte("new_member")
    email = outbox.QUEUE_EMAIL.cte("new_email")
    member_id = select(member.c.id).scalar_subquery()
    invitation = _insert_invitation(member_id, select(email.c.id).scalar_subquery())
    entry = audit.INSERT.values(target_id=cast(member_id, String))
    rows = select(member.c.id).select_from(member)
    if takes_seat:
        # Its WHERE reads the new member, so the member's row is written before the
        # subscription row is locked, as on SQLite (a unique-key wait never holds the lock).
        seat = seats.COUNT_SEAT.where(select(member.c.id).exists()).cte("seat")
        counted: list[ColumnElement[Any]] = [seat.c.seats_purchased, seat.c.full_seats_taken]
        if counts_seasonal:
            counted.append(seats.SEASONAL_SEATS.scalar_subquery())
        rows = select(member.c.id, *counted).select_from(member.join(seat, true()))
    return rows.add_cte(email, invitation.cte("new_invitation"), entry.cte("new_entry"))


_INVITATION_ROWS = {key: _invitation_rows_in_one_statement(*key)
                    for key in ((False, False), (True, False), (True, True))}


@dataclass(frozen=True)
class Invitee:
    """The identity an invitation goes to, as the invitation and the answer need it."""

    id: int
    email: str
    name: str
    has_login: bool


def _invitee(session: Session, account_id: int, request: InviteRequest, resolved: Resolved
             ) -> Invitee:
    """The identity ``_resolve`` inserted for a new address; else the existing one, checked."""
    if resolved.new_identity_id is not None:
        return Invitee(resolved.new_identity_id, request.email, request.name or "",
                       has_login=False)
    identity = session.scalars(select(Identity).where(Identity.email == request.email)).one()
    has_login = identity.password_hash is not None
    refuse_second_membership(session, account_id, identity, request.user_type)
    if resolved.password_hash is not None and has_login:
        raise InvalidInput([FieldError(
            "initial_password",
            "This person already has a login; their password stays unchanged.",
            "identity_exists",
        )])
    # The identity is the person's, maybe known to other accounts: this invite writes
    # nothing on it. Its initial password and name wait on the invitation.
    return Invitee(identity.id, identity.email, identity.name, has_login)


@dataclass(frozen=True)
class Resolved:
    """What an invite names, looked up: the role's id and name, the group's id and name,
    and the identity inserted for a new address."""

    role_id: int
    role_name: str
    group_id: int | None
    group_name: str | None
    new_identity_id: int | None  # None: the address already has an identity (R2 checks it)
    password_hash: str | None  # of the initial password, when one was given


def _resolve(session: Session, account_id: int, request: InviteRequest) -> Resolved:
    """The role and the group (``request.group`` already follows the free-user rule), and
    a new identity for a new address, inserted at once: one round trip on PostgreSQL. A
    request refused here rolls the identity back with the rest.

    Names spelled as stored are found by that statement; another spelling (``rules.
    name_key``: any case) is looked up in the account's catalog only when it missed.
    """
    role_name = request.role
    group_name = request.group
    password_hash = (hash_password(request.initial_password)
                     if request.initial_password is not None else None)
    now = utcnow()
    names = {
        "account_id": account_id, "role": role_name, "group": group_name,
        "identity_email": request.email, "identity_name": request.name or "",
        "identity_language": request.language,
        "identity_totp_enabled": False, "identity_created_at": now, "identity_updated_at": now,
    }
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        role_id, group_id, new_id = connection.execute(_RESOLVE_AND_INSERT_IDENTITY,
                                                       names).one()
    else:
        new_id = connection.scalar(_INSERT_IDENTITY["sqlite"], names)
        role_id = connection.scalar(_ROLE_ID, names)
        group_id = connection.scalar(_GROUP_ID, names) if group_name is not None else None
    errors: list[FieldError] = []
    if role_id is None:
        try:
            role_id, role_name = rules.named(role_name, catalog(connection, Role, account_id),
                                             "role")
        except InvalidInput as exc:
            errors += exc.errors
    if group_name is not None and group_id is None:
        try:
            group_id, group_name = rules.named(
                group_name, catalog(connection, Group, account_id), "group")
        except InvalidInput as exc:
            errors += exc.errors
    if errors:
        raise InvalidInput(errors)
    return Resolved(role_id, role_name, group_id, group_name, new_id, password_hash)


def _unknown_names(session: Session, account_id: int, body: Any,
                   found: list[FieldError]) -> list[FieldError]:
    """The role and group a refused invite names that the account does not have."""
    if not isinstance(body, dict):
        return []
    named = [field for field in ("role", "group") if isinstance(body.get(field), str)
             and body[field].strip() and field not in {error.field for error in found}]
    errors: list[FieldError] = []
    for field in named:
        kind = Role if field == "role" else Group
        try:
            rules.named(body[field], catalog(session.connection(), kind, account_id), field)
        except InvalidInput as exc:
            errors += exc.errors
    return errors


_ROLE_ID = select(Role.id).where(Role.account_id == bindparam("account_id"),
                                 Role.name == bindparam("role"))
_GROUP_ID = select(Group.id).where(Group.account_id == bindparam("account_id"),
                                   Group.name == bindparam("group"))
# A new address inserts its identity; a known one (R2) inserts nothing.
_INSERT_IDENTITY = {
    name: dialect.insert(Identity).values(prefixed_values("identity_", (
        "email", "name", "language", "totp_enabled", "created_at", "updated_at",
    ))).on_conflict_do_nothing(index_elements=[Identity.email]).returning(Identity.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_new_identity = _INSERT_IDENTITY["postgresql"].cte("new_identity")
_RESOLVE_AND_INSERT_IDENTITY = select(_ROLE_ID.scalar_subquery(), _GROUP_ID.scalar_subquery(),
                                      select(_new_identity.c.id).scalar_subquery())
