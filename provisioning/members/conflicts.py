"""R2 and its kin: one email holds one paid membership, and nobody is invited twice."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.core.errors import Conflict
from provisioning.core.models import utcnow
from provisioning.mail.models import OutboxEmail
from provisioning.members.directory import invitation_state
from provisioning.members.models import Identity, Invitation, Membership, MemberStatus, UserType


class EmailTaken(Conflict):
    """R2: the address already holds a non-free membership elsewhere; never say where."""

    code = "email_taken"

    def __init__(self) -> None:
        super().__init__("This email address already belongs to a user of another account.")


def holds_paid_membership(
    session: Session, identity_id: int, *, other_than_account: int | None = None
) -> bool:
    query = select(Membership.id).where(
        Membership.identity_id == identity_id, Membership.user_type != UserType.FREE.value
    )
    if other_than_account is not None:
        query = query.where(Membership.account_id != other_than_account)
    return session.scalars(query.limit(1)).first() is not None


def refuse_second_membership(
    session: Session, account_id: int, identity: Identity, user_type: str
) -> None:
    """Refuse an invite of someone already in this account, or holding a paid seat in
    another (R2) unless invited as a free user."""
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
    if user_type != UserType.FREE.value and holds_paid_membership(
        session, identity.id, other_than_account=account_id
    ):
        raise EmailTaken()
