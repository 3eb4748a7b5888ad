"""The member rules every path applies: one email per paid membership (R2), the invite
request's fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import (
    select,
)
from sqlalchemy.orm import Session

from provisioning.core.errors import Conflict, FieldError
from provisioning.core.models import utcnow
from provisioning.core.validation import USER_TYPES, Form, check_password
from provisioning.mail.models import OutboxEmail
from provisioning.members.directory import invitation_state
from provisioning.members.models import Identity, Invitation, Membership, MemberStatus, UserType

FREE_USERS_GROUP = "Free users"


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


def refuse_second_membership(
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
