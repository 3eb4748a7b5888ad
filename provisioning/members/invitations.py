"""The invitee's side and the invitation's life: preview, accept, resend, renew, revoke.

R4 (tokens) and R5 (statuses).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor, check_totp_code
from provisioning.access.policy import Permission, refuse_changing_admin, require, standing_of
from provisioning.accounts.models import Account
from provisioning.billing.seats import free_seat
from provisioning.core import audit
from provisioning.core.config import settings
from provisioning.core.errors import (
    FieldError,
    Gone,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    RateLimited,
)
from provisioning.core.models import utcnow
from provisioning.core.security import (
    hash_password,
    hash_secret,
    new_secret,
    verify_password,
)
from provisioning.core.validation import Form, check_password
from provisioning.mail.models import EmailStatus
from provisioning.members.directory import MemberView, invitation_state, member_view
from provisioning.members.invitation_builder import send_invitation
from provisioning.members.models import Identity, Invitation, Membership, MemberStatus
from provisioning.members.seasons import status_on_joining
from provisioning.notifications.publish import notify


@dataclass(frozen=True)
class InvitationPreview:
    state: str  # valid | expired | accepted | revoked
    account_name: str
    inviter_name: str | None
    email: str
    existing_identity: bool
    expires_at: datetime


def _by_token(session: Session, token: str, *, lock: bool = False) -> Invitation:
    query = select(Invitation).where(Invitation.token_hash == hash_secret(token))
    invitation = session.scalars(query.with_for_update() if lock else query).first()
    if invitation is None:
        raise NotFound(
            "This invitation link is not valid. It may have been replaced by a newer invitation.",
            code="invitation_invalid",
        )
    return invitation


def _state(invitation: Invitation, now: datetime) -> str:
    """The invitee's view: valid, or why not (accepted, revoked, expired)."""
    state = invitation_state(invitation, None, now)
    return state if state in ("accepted", "revoked", "expired") else "valid"


def preview_invitation(session: Session, token: str) -> InvitationPreview:
    """What the invitee's landing page shows, whatever state the link is in."""
    invitation = _by_token(session, token)
    account = session.get_one(Account, invitation.account_id)
    inviter = session.get(Identity, invitation.invited_by_id) if invitation.invited_by_id else None
    return InvitationPreview(
        state=_state(invitation, utcnow()),
        account_name=account.name,
        inviter_name=(inviter.name or inviter.email) if inviter else None,
        email=invitation.email,
        existing_identity=invitation.existing_identity,
        expires_at=invitation.expires_at,
    )


def _refuse_unusable(invitation: Invitation, now: datetime) -> None:
    state = _state(invitation, now)
    if state == "accepted":
        raise Gone("This invitation was already accepted. Sign in instead.", code="invitation_used")
    if state == "revoked":
        raise Gone("This invitation was withdrawn by the account's administrator.",
                   code="invitation_revoked")
    if state == "expired":
        raise Gone("This invitation has expired. Ask for a fresh one with "
                   "POST /v1/invitations/{token}/renew.", code="invitation_expired")


def accept_invitation(session: Session, token: str, body: Any, actor: Actor | None) -> MemberView:
    """Accept: whoever has no login yet sets a password (or takes the one this invitation's
    admin chose); whoever has one proves it is theirs: signed in, or their current password
    and, with two-factor on, a code. Which of the two is decided now, not at invite time.

    The invitation and the identity are locked first: of two accepts racing with one link
    one succeeds, the other finds it used.
    """
    form = Form(body if body is not None else {})
    password = form.secret("password")
    name = form.text("name")
    totp_code = form.text("totp_code", max_length=12)
    form.finish()
    now = utcnow()
    invitation = _by_token(session, token, lock=True)
    _refuse_unusable(invitation, now)
    membership = session.get_one(Membership, invitation.membership_id)
    identity = membership.identity
    session.refresh(identity, with_for_update=True)
    if membership.status == MemberStatus.INACTIVE.value:
        raise Gone("This user is disabled in the account.", code="member_inactive")
    if identity.password_hash is not None:
        is_that_login = actor is not None and actor.identity_id == identity.id
        if not is_that_login:
            if not (password and verify_password(identity.password_hash, password)):
                raise NotAuthenticated(
                    "You already have a login: sign in, or send your current password.",
                    code="login_required",
                )
            if identity.totp_enabled:
                check_totp_code(session, identity, totp_code)
    elif password is not None or invitation.initial_password_hash is None:
        problems = check_password(password)
        if problems:
            raise InvalidInput(problems)
        assert password is not None
        identity.password_hash = hash_password(password)
    else:
        identity.password_hash = invitation.initial_password_hash
    invitation.initial_password_hash = None
    if not name and not identity.name and invitation.name:
        name = invitation.name
    if name:
        identity.name = name
    invitation.accepted_at = now
    # a seasonal member joining outside the window waits for it, inactive (R10)
    membership.status, membership.inactive_reason = status_on_joining(
        membership.user_type, membership.seasonal_start, membership.seasonal_end)
    membership.activated_at = now
    audit.record(
        session,
        account_id=membership.account_id,
        actor_id=identity.id,
        actor_label=identity.email,
        action="member.accept",
        target_type="member",
        target_id=membership.id,
        before={"status": MemberStatus.INVITED.value},
        after={"status": membership.status},
    )
    notify(session, invitation.invited_by_id, "invitation_accepted",
           {"member_name": identity.name or identity.email}, account_id=membership.account_id)
    session.flush()
    return member_view(membership, invitation, EmailStatus.SENT.value, now)


def _open_invitation(session: Session, account_id: int, member_id: int) -> Invitation:
    """The member's invitation, locked: resends racing each other count one at a time."""
    invitation = session.scalars(
        select(Invitation).where(
            Invitation.account_id == account_id, Invitation.membership_id == member_id
        ).with_for_update()
    ).first()
    if invitation is not None:
        return invitation
    membership = session.get(Membership, member_id)
    if membership is None or membership.account_id != account_id:
        raise NotFound("No such member in this account.")
    if membership.status != MemberStatus.INVITED.value:
        raise InvalidInput([FieldError("member", "This member already accepted.",
                                       "already_accepted")])
    # Imported without invitations: the row is made for the admin's action (a send or a
    # revoke), with no working link until a send gives it one (its hash is of a throwaway).
    invitation = Invitation(
        account_id=account_id, membership_id=member_id, email=membership.identity.email,
        token_nonce=new_secret(), token_hash=hash_secret(new_secret()),
        invited_by_id=membership.invited_by_id,
        existing_identity=membership.identity.password_hash is not None,
        expires_at=utcnow(), sends=0,
    )
    session.add(invitation)
    return invitation


def _check_resend_allowed(invitation: Invitation, now: datetime) -> None:
    """R4: resends are rate-limited, per invitation, by interval and per day."""
    config = settings()
    if invitation.last_sent_at is not None:
        wait = invitation.last_sent_at + timedelta(
            seconds=config.invitation_resend_interval_seconds) - now
        if wait.total_seconds() > 0:
            seconds = int(wait.total_seconds()) + 1
            raise RateLimited(f"The invitation was just sent; try again in {seconds} s.",
                              retry_after=seconds)
    window_start = invitation.resend_window_start
    if window_start is None or now - window_start >= timedelta(days=1):
        invitation.resend_window_start = now
        invitation.resends_in_window = 0
    if invitation.resends_in_window >= config.invitation_resends_per_day:
        assert invitation.resend_window_start is not None
        retry = invitation.resend_window_start + timedelta(days=1) - now
        raise RateLimited("This invitation was resent too often today.",
                          retry_after=int(retry.total_seconds()) + 1)
    invitation.resends_in_window += 1


def _resend(session: Session, invitation: Invitation, inviter_name: str) -> Membership:
    membership = session.get_one(Membership, invitation.membership_id)
    account = session.get_one(Account, invitation.account_id)
    send_invitation(session, account, invitation, membership, membership.identity, inviter_name)
    return membership


def resend_invitation(session: Session, actor: Actor, account_id: int, member_id: int
                      ) -> MemberView:
    """A new token and a new email; the old link dies at once."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    invitation = _open_invitation(session, account_id, member_id)
    membership = session.get_one(Membership, member_id)
    # Resending an admin's invitation acts on an admin-to-be: only an admin does that (before
    # the rate limit counts the send).
    refuse_changing_admin(standing_of(session, actor, account_id), membership.role.permissions)
    now = utcnow()
    if invitation.accepted_at is not None:
        raise InvalidInput([FieldError("member", "This member already accepted.",
                                       "already_accepted")])
    if invitation.revoked_at is not None:
        raise InvalidInput([FieldError("member", "This invitation was revoked.", "revoked")])
    _check_resend_allowed(invitation, now)
    _resend(session, invitation, actor.name or actor.email)
    audit.record(session, account_id=account_id, actor_id=actor.identity_id,
                 actor_label=actor.label, action="member.invitation_resend",
                 target_type="member", target_id=member_id)
    return member_view(membership, invitation, EmailStatus.QUEUED.value, now)


def renew_expired_invitation(session: Session, token: str) -> None:
    """The invitee asks for a fresh link; it goes to the invited address only, rate-limited."""
    invitation = _by_token(session, token, lock=True)
    now = utcnow()
    if _state(invitation, now) != "expired":
        _refuse_unusable(invitation, now)
        raise InvalidInput([FieldError("token", "This invitation is still valid; use it.",
                                       "still_valid")])
    _check_resend_allowed(invitation, now)
    inviter = session.get(Identity, invitation.invited_by_id) if invitation.invited_by_id else None
    _resend(session, invitation, (inviter.name or inviter.email) if inviter else "")
    audit.record(session, account_id=invitation.account_id, actor_id=None,
                 actor_label=invitation.email, action="member.invitation_renew",
                 target_type="member", target_id=invitation.membership_id)


def revoke_invitation(session: Session, actor: Actor, account_id: int, member_id: int
                      ) -> MemberView:
    """Withdraw a pending invitation: the link dies and the invited member goes (seat freed)."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    invitation = _open_invitation(session, account_id, member_id)
    if invitation.accepted_at is not None:
        raise InvalidInput([FieldError("member", "Already accepted: disable or remove the "
                                                 "member instead.", "already_accepted")])
    now = utcnow()
    membership = session.get_one(Membership, member_id)
    # Withdrawing an admin's invitation removes an admin-to-be: only an admin does that.
    refuse_changing_admin(standing_of(session, actor, account_id), membership.role.permissions)
    invitation.revoked_at = now
    view = member_view(membership, invitation, None, now)
    invitation.membership_id = None
    session.flush()
    session.execute(delete(Membership).where(Membership.id == member_id))
    free_seat(session, account_id, user_type=membership.user_type, status=membership.status)
    audit.record(session, account_id=account_id, actor_id=actor.identity_id,
                 actor_label=actor.label, action="member.invitation_revoke",
                 target_type="member", target_id=member_id,
                 before={"email": view.email, "status": view.status})
    return view

