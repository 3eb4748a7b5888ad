"""Members of a test account who can act on their own: invited, made active, logged in."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.core.security import invitation_token
from provisioning.members.models import Invitation, Membership, MemberStatus

PASSWORD = "member password"


def fresh_email(prefix: str = "user") -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}@example.com"


def set_status(member_id: int, status: MemberStatus) -> None:
    """What accepting an invitation, or a disable, would leave behind."""
    with session_scope() as session:
        session.get_one(Membership, member_id).status = status.value


def token_of(member_id: int) -> str:
    """The member's live invitation token, as its email's link carries it."""
    with session_scope() as session:
        nonce = session.scalars(select(Invitation.token_nonce)
                                .where(Invitation.membership_id == member_id)).one()
    return invitation_token(settings().secret_key, nonce)


def accept(stack: Any, member_id: int, **body: Any) -> Any:
    """The invitee follows their link and accepts."""
    return stack.api.simulate_post(f"/v1/invitations/{token_of(member_id)}/accept", json=body)


def active_member(stack: Any, admin: Any, *, role: str = "member", **invite: Any
                  ) -> tuple[int, str, dict[str, str]]:
    """A member holding ``role`` who accepted with the password the admin chose: its id,
    email and the headers of its session."""
    email = invite.pop("email", None) or fresh_email("member")
    invited = stack.invite(admin, email=email, role=role, initial_password=PASSWORD, **invite)
    assert invited.status_code == 201, invited.json
    accepted = accept(stack, invited.json["id"])
    assert accepted.status_code == 200, accepted.json
    login = stack.api.simulate_post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.json
    return invited.json["id"], email, {"Authorization": f"Bearer {login.json['token']}"}
