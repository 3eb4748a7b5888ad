"""Members of a test account who can act on their own: invited, made active, logged in."""

from __future__ import annotations

import uuid
from typing import Any

from provisioning.core.db import session_scope
from provisioning.members.models import Membership, MemberStatus

PASSWORD = "member password"


def fresh_email(prefix: str = "user") -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}@example.com"


def set_status(member_id: int, status: MemberStatus) -> None:
    """What accepting an invitation, or a disable, would leave behind."""
    with session_scope() as session:
        session.get_one(Membership, member_id).status = status.value


def active_member(stack: Any, admin: Any, *, role: str = "member", **invite: Any
                  ) -> tuple[int, str, dict[str, str]]:
    """A member holding ``role``, active: its id, email and the headers of its session."""
    email = invite.pop("email", None) or fresh_email("member")
    invited = stack.invite(admin, email=email, role=role, initial_password=PASSWORD, **invite)
    assert invited.status_code == 201, invited.json
    set_status(invited.json["id"], MemberStatus.ACTIVE)
    login = stack.api.simulate_post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.json
    return invited.json["id"], email, {"Authorization": f"Bearer {login.json['token']}"}
