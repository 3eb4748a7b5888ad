"""Members of an account: inviting (R2–R4, R7–R8, R11, R14), listing, reading."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from provisioning import audit, outbox
from provisioning.auth import Actor, require_admin
from provisioning.config import settings
from provisioning.errors import Conflict, FieldError, InvalidInput, NotFound
from provisioning.models import (
    Account,
    EmailStatus,
    Group,
    Identity,
    Invitation,
    Membership,
    MemberStatus,
    OutboxEmail,
    Role,
    UserType,
    utcnow,
)
from provisioning.pages import decode_cursor, encode_cursor, page_size
from provisioning.seats import consumes_seat, settle_seats
from provisioning.security import hash_password, hash_secret, invitation_token, new_secret
from provisioning.validation import USER_TYPES, Form, check_password

FREE_USERS_GROUP = "Free users"

_EMAIL_STATE = {
    EmailStatus.QUEUED.value: "queued",
    EmailStatus.SENDING.value: "queued",
    EmailStatus.DEFERRED.value: "deferred",
    EmailStatus.SENT.value: "sent",
    EmailStatus.FAILED.value: "failed",
}


class EmailTaken(Conflict):
    """R2: the address already holds a non-free membership elsewhere; never say where."""

    code = "email_taken"

    def __init__(self) -> None:
        super().__init__("This email address already belongs to a user of another account.")


@dataclass(frozen=True)
class InvitationView:
    state: str  # not_sent | queued | sent | deferred | failed | accepted | expired | revoked
    expires_at: datetime | None
    last_sent_at: datetime | None
    sends: int


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


@dataclass(frozen=True)
class Page:
    items: list[MemberView]
    next_cursor: str | None
    total: int


def invitation_state(invitation: Invitation, email_status: str | None, now: datetime) -> str:
    """What the admin sees of an invitation, so nobody invites the same person twice."""
    if invitation.accepted_at is not None:
        return "accepted"
    if invitation.revoked_at is not None or invitation.membership_id is None:
        return "revoked"
    if invitation.expires_at <= now:
        return "expired"
    return _EMAIL_STATE.get(email_status or "", "queued")


def holds_paid_membership(
    session: Session, identity_id: int, *, other_than_account: int | None = None
) -> bool:
    query = select(Membership.id).where(
        Membership.identity_id == identity_id, Membership.user_type != UserType.FREE.value
    )
    if other_than_account is not None:
        query = query.where(Membership.account_id != other_than_account)
    return session.scalars(query.limit(1)).first() is not None


@dataclass(frozen=True)
class InviteRequest:
    email: str
    name: str | None
    role: str
    group: str | None
    user_type: str
    language: str | None
    initial_password: str | None
    seasonal_start: date | None
    seasonal_end: date | None

    @classmethod
    def parse(cls, body: Any) -> InviteRequest:
        form = Form(body)
        email = form.email()
        name = form.text("name")
        role = form.text("role", max_length=100) or "member"
        group = form.text("group", max_length=100)
        user_type = form.choice("user_type", USER_TYPES, "full")
        language = form.language()
        password = form.secret("initial_password")
        if password is not None:
            form.errors += check_password(password, "initial_password")
        start = _date(form, "seasonal_start")
        end = _date(form, "seasonal_end")
        if user_type == UserType.SEASONAL.value:
            named = {error.field for error in form.errors}
            for field, value in (("seasonal_start", start), ("seasonal_end", end)):
                if value is None and field not in named:
                    form.errors.append(FieldError(field, "Seasonal users need a window.",
                                                  "required"))
            if start is not None and end is not None and end < start:
                form.errors.append(FieldError("seasonal_end", "The window ends before it starts.",
                                              "invalid"))
        form.finish()
        assert email is not None
        return cls(email, name, role, group, user_type, language, password, start, end)


def _date(form: Form, field: str) -> date | None:
    value = form.body.get(field)
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        form.errors.append(FieldError(field, "Use a date like 2026-12-31.", "invalid_date"))
        return None


def invite_member(session: Session, actor: Actor, account_id: int, body: Any) -> MemberView:
    """Invite someone by email: a membership, an invitation and one email in the outbox."""
    account = require_admin(session, actor, account_id)
    request = InviteRequest.parse(body)
    role, group = _resolve_role_and_group(session, account, request)
    if request.user_type == UserType.SEASONAL.value and account.seasonal_seats <= 0:
        raise InvalidInput(
            [FieldError("user_type", "This account has no seasonal seats on its contract.",
                        "seasonal_not_available")]
        )

    identity = session.scalars(select(Identity).where(Identity.email == request.email)).first()
    has_login = identity is not None and identity.password_hash is not None
    if identity is not None:
        _refuse_second_membership(session, account.id, identity, request)
        if request.initial_password is not None and has_login:
            raise InvalidInput([FieldError(
                "initial_password",
                "This person already has a login; their password stays unchanged.",
                "identity_exists",
            )])
    else:
        identity = Identity(email=request.email, name=request.name or "",
                            language=request.language)
        session.add(identity)
    if request.initial_password is not None:
        identity.password_hash = hash_password(request.initial_password)
    if request.name and not identity.name:
        identity.name = request.name

    now = utcnow()
    membership = Membership(
        account_id=account.id,
        identity=identity,
        role=role,
        group=group,
        user_type=request.user_type,
        status=MemberStatus.INVITED.value,
        language=request.language or account.default_language,
        seasonal_start=request.seasonal_start,
        seasonal_end=request.seasonal_end,
        invited_by_id=actor.identity_id,
    )
    session.add(membership)
    session.flush()
    invitation = Invitation(  # token and expiry are set by send_invitation
        account_id=account.id,
        membership_id=membership.id,
        email=identity.email,
        invited_by_id=actor.identity_id,
        existing_identity=has_login,
    )
    send_invitation(session, account, invitation, membership, identity, actor.name or actor.email)
    audit.record(
        session,
        account_id=account.id,
        actor_id=actor.identity_id,
        actor_label=actor.label,
        action="member.invite",
        target_type="member",
        target_id=membership.id,
        after={"email": identity.email, "role": role.name, "group": group.name if group else None,
               "user_type": request.user_type, "language": membership.language},
    )
    if consumes_seat(request.user_type, MemberStatus.INVITED.value, request.seasonal_start,
                     request.seasonal_end, now.date()):
        settle_seats(session, account.id, now.date(), actor_id=actor.identity_id,
                     actor_label=actor.label)
    return member_view(membership, invitation, EmailStatus.QUEUED.value, now)


def send_invitation(
    session: Session,
    account: Account,
    invitation: Invitation,
    membership: Membership,
    identity: Identity,
    inviter_name: str,
) -> None:
    """Give the invitation a fresh token and expiry and queue its email (the old link dies)."""
    config = settings()
    now = utcnow()
    nonce = new_secret()
    invitation.token_nonce = nonce
    invitation.token_hash = hash_secret(invitation_token(config.secret_key, nonce))
    invitation.expires_at = now + timedelta(days=config.invitation_ttl_days)
    invitation.expired_at = None
    invitation.sends = (invitation.sends or 0) + 1
    invitation.last_sent_at = now
    email = outbox.queue_email(
        session,
        account_id=account.id,
        recipient=identity.email,
        recipient_name=identity.name or None,
        template="invite_existing" if invitation.existing_identity else "invite_new",
        language=membership.language,
        context={
            "account_name": account.name,
            "inviter_name": inviter_name,
            "invitee_name": identity.name or None,
            "email": identity.email,
            "expires_at": invitation.expires_at.isoformat(),
            outbox.INVITATION_NONCE: nonce,
        },
    )
    invitation.last_email_id = email.id
    if invitation.id is None:
        session.add(invitation)  # inserted with the email's id already set: no extra UPDATE


def _resolve_role_and_group(
    session: Session, account: Account, request: InviteRequest
) -> tuple[Role, Group | None]:
    errors: list[FieldError] = []
    role = session.scalars(
        select(Role).where(Role.account_id == account.id, Role.name == request.role)
    ).first()
    if role is None:
        errors.append(FieldError("role", f"No role named {request.role!r} in this account.",
                                 "unknown_role"))
    group_name = request.group
    if request.user_type == UserType.FREE.value:
        if group_name not in (None, FREE_USERS_GROUP):
            errors.append(FieldError("group", f"Free users belong to {FREE_USERS_GROUP!r}.",
                                     "invalid_group"))
        group_name = FREE_USERS_GROUP
    group = None
    if group_name is not None:
        group = session.scalars(
            select(Group).where(Group.account_id == account.id, Group.name == group_name)
        ).first()
        if group is None:
            errors.append(FieldError("group", f"No group named {group_name!r} in this account.",
                                     "unknown_group"))
    if errors:
        raise InvalidInput(errors)
    assert role is not None
    return role, group


def _refuse_second_membership(
    session: Session, account_id: int, identity: Identity, request: InviteRequest
) -> None:
    existing = session.scalars(
        select(Membership).where(
            Membership.account_id == account_id, Membership.identity_id == identity.id
        )
    ).first()
    if existing is not None:
        if existing.status == MemberStatus.INVITED.value:
            row = session.execute(
                select(Invitation, OutboxEmail.status)
                .outerjoin(OutboxEmail, OutboxEmail.id == Invitation.last_email_id)
                .where(Invitation.membership_id == existing.id)
            ).first()
            state = invitation_state(row[0], row[1], utcnow()) if row else "queued"
            raise Conflict(f"{identity.email} is already invited (member {existing.id}, "
                           f"invitation {state}); resend it instead.", code="already_invited")
        raise Conflict(f"{identity.email} is already a member (member {existing.id}).",
                       code="already_member")
    if request.user_type != UserType.FREE.value and holds_paid_membership(
        session, identity.id, other_than_account=account_id
    ):
        raise EmailTaken()


def member_view(
    membership: Membership, invitation: Invitation | None, email_status: str | None,
    now: datetime,
) -> MemberView:
    identity = membership.identity
    invitation_view = None
    if invitation is not None:
        invitation_view = InvitationView(
            state=invitation_state(invitation, email_status, now),
            expires_at=invitation.expires_at,
            last_sent_at=invitation.last_sent_at,
            sends=invitation.sends,
        )
    elif membership.status == MemberStatus.INVITED.value:
        # imported without invitations: "resend" sends the first one
        invitation_view = InvitationView(state="not_sent", expires_at=None, last_sent_at=None,
                                         sends=0)
    return MemberView(
        id=membership.id,
        email=identity.email,
        name=identity.name,
        role=membership.role.name,
        group=membership.group.name if membership.group else None,
        user_type=membership.user_type,
        language=membership.language,
        status=membership.status,
        two_factor=identity.totp_enabled,
        invitation=invitation_view,
        created_at=membership.created_at,
    )


def _members_query(account_id: int) -> Select[Membership, Invitation, str]:
    return (
        select(Membership, Invitation, OutboxEmail.status)
        .join(Identity, Identity.id == Membership.identity_id)
        .outerjoin(Invitation, Invitation.membership_id == Membership.id)
        .outerjoin(OutboxEmail, OutboxEmail.id == Invitation.last_email_id)
        .where(Membership.account_id == account_id)
    )


def get_member(session: Session, actor: Actor, account_id: int, member_id: int) -> MemberView:
    require_admin(session, actor, account_id)
    row = session.execute(_members_query(account_id).where(Membership.id == member_id)).first()
    if row is None:
        raise NotFound("No such member in this account.")
    return member_view(row[0], row[1], row[2], utcnow())


def list_members(
    session: Session, actor: Actor, account_id: int, filters: dict[str, str | None],
    cursor: str | None, limit: int | None,
) -> Page:
    """Members in creation order, filtered, a page at a time (cursor = last id seen)."""
    require_admin(session, actor, account_id)
    size = page_size(limit)
    query = _members_query(account_id)
    status = filters.get("status")
    if status:
        if status not in {s.value for s in MemberStatus}:
            raise InvalidInput([FieldError("status", "Filter by invited, active or inactive.")])
        query = query.where(Membership.status == status)
    if filters.get("user_type"):
        query = query.where(Membership.user_type == filters["user_type"])
    if filters.get("role"):
        query = query.join(Role, Role.id == Membership.role_id).where(Role.name == filters["role"])
    if filters.get("group"):
        query = query.join(Group, Group.id == Membership.group_id).where(
            Group.name == filters["group"]
        )
    if filters.get("two_factor") is not None:
        query = query.where(Identity.totp_enabled.is_(filters["two_factor"] in ("true", "1")))
    if filters.get("q"):
        needle = f"%{(filters['q'] or '').strip().lower()}%"
        query = query.where(or_(func.lower(Identity.email).like(needle),
                                func.lower(Identity.name).like(needle)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(Membership.id > after)
    rows = session.execute(query.order_by(Membership.id).limit(size + 1)).all()
    now = utcnow()
    items = [member_view(row[0], row[1], row[2], now) for row in rows[:size]]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > size else None
    return Page(items=items, next_cursor=next_cursor, total=total)
