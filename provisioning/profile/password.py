"""Changing one's own password (R12): the current password always, a new one that passes
the policy, and every other session of the login ends."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from provisioning.access import limits
from provisioning.access.auth import Actor
from provisioning.access.models import ApiToken
from provisioning.core.errors import FieldError, Forbidden, InvalidInput
from provisioning.core.models import utcnow
from provisioning.core.security import MAX_PASSWORD_LENGTH, hash_password, verify_password
from provisioning.core.validation import check_new_password
from provisioning.members.models import Identity


def wrong_password(field: str) -> Forbidden:
    return Forbidden("The current password is not right.", code="wrong_password",
                     errors=[FieldError(field, "The current password is not right.",
                                        "wrong_password")])


def confirm_password(session: Session, identity: Identity, password: str,
                     counted: limits.Counted, field: str) -> None:
    """The identity's current password, or Forbidden (counted against the login limits)."""
    if len(password) > MAX_PASSWORD_LENGTH or not verify_password(identity.password_hash,
                                                                  password):
        limits.count_failure(session, counted)
        raise wrong_password(field)


def change_password(session: Session, actor: Actor, current_password: str | None,
                    new_password: str | None, client: str | None = None) -> None:
    """Set a new password; every session of the login but the caller's is revoked."""
    if current_password is None:
        raise InvalidInput([FieldError("current_password", "Give your current password.",
                                       "required")])
    counted = limits.login_failures(actor.email, client)
    limits.refuse_while_limited(counted, session)
    identity = session.get_one(Identity, actor.identity_id)
    problems = check_new_password(new_password, identity.email)
    if problems:
        raise InvalidInput(problems)
    assert new_password is not None
    confirm_password(session, identity, current_password, counted, "current_password")
    identity = session.get_one(Identity, actor.identity_id)
    identity.password_hash = hash_password(new_password)
    session.execute(
        update(ApiToken)
        .where(ApiToken.identity_id == identity.id, ApiToken.kind == "session",
               ApiToken.id != actor.token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    limits.forget_failures(session, counted)
