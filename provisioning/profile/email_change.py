"""Changing one's login email (R12): refused while two-factor sign-in is on, otherwise the
current password; a link to the new address confirms it and the old address is told.

The link's token is derived like an invitation's (``mail.links``): the database keeps the
nonce and the token's hash, so a copy of it alone holds no working link.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from provisioning.access import limits
from provisioning.access.auth import Actor
from provisioning.core.config import settings
from provisioning.core.errors import Conflict, FieldError, Gone, InvalidInput, NotFound
from provisioning.core.models import utcnow
from provisioning.core.security import derived_token, hash_secret, new_secret
from provisioning.mail import outbox
from provisioning.mail.links import DERIVED_LINKS, derived_link
from provisioning.members.models import Identity
from provisioning.profile.models import EmailChange
from provisioning.profile.password import confirm_password
from provisioning.profile.two_factor import two_factor_on

EMAIL_CHANGE_PURPOSE = "email-change"  # what the confirmation token's HMAC is keyed for
EMAIL_CHANGE_PATH = "/email-change/{token}"  # the console's page that confirms it


def request_email_change(session: Session, actor: Actor, new_email: str, password: str,
                         client: str | None = None) -> None:
    """Queue a confirmation link to ``new_email`` and a notice to the current address; a
    newer request replaces an older one. Nothing changes until the link is followed."""
    identity = session.get_one(Identity, actor.identity_id)
    if identity.totp_enabled:
        raise two_factor_on()
    if new_email == identity.email:
        raise InvalidInput([FieldError("email", "This is already your email address.",
                                       "unchanged")])
    counted = limits.login_failures(actor.email, client)
    limits.refuse_while_limited(counted, session)
    identity = session.get_one(Identity, actor.identity_id)
    confirm_password(session, identity, password, counted, "password")
    config = settings()
    nonce = new_secret()
    expires_at = utcnow() + timedelta(hours=config.email_change_ttl_hours)
    session.execute(delete(EmailChange).where(EmailChange.identity_id == identity.id))
    session.add(EmailChange(
        identity_id=identity.id, new_email=new_email, token_nonce=nonce, expires_at=expires_at,
        token_hash=hash_secret(derived_token(config.secret_key, EMAIL_CHANGE_PURPOSE, nonce))))
    language = identity.language or config.default_language
    common = {"name": identity.name or None, "old_email": identity.email,
              "new_email": new_email}
    outbox.queue_email(
        session, account_id=None, recipient=new_email, recipient_name=identity.name or None,
        template="email_change_confirm", language=language,
        context={**common, "expires_at": expires_at.isoformat(), DERIVED_LINKS: {
            "link": derived_link(EMAIL_CHANGE_PATH, EMAIL_CHANGE_PURPOSE, nonce)}})
    outbox.queue_email(
        session, account_id=None, recipient=identity.email,
        recipient_name=identity.name or None, template="email_changed_notice",
        language=language, context=common)
    limits.forget_failures(session, counted)


def confirm_email_change(session: Session, actor: Actor, token: str,
                         client: str | None = None) -> str:
    """Apply the change the token confirms; returns the new address. An address another
    login took meanwhile is refused (R2: one identity per email)."""
    counted = limits.login_failures(actor.email, client)
    limits.refuse_while_limited(counted, session)
    change = session.scalars(select(EmailChange).where(
        EmailChange.token_hash == hash_secret(token),
        EmailChange.identity_id == actor.identity_id)).first()
    if change is None:
        limits.count_failure(session, counted)
        raise NotFound("This confirmation link is not valid (a newer request replaces it).",
                       code="invalid_token")
    if change.expires_at <= utcnow():
        raise Gone("This confirmation link has expired: ask for the change again.",
                   code="expired")
    taken = session.scalar(select(Identity.id).where(Identity.email == change.new_email,
                                                     Identity.id != actor.identity_id))
    if taken is not None:
        raise Conflict("This email address already belongs to another login.",
                       code="email_taken")
    identity = session.get_one(Identity, actor.identity_id)
    if identity.totp_enabled:  # turned on since the request (R12)
        raise two_factor_on()
    identity.email = change.new_email
    session.delete(change)
    session.flush()
    limits.forget_failures(session, counted)
    return identity.email


def preview_email_change(session: Session, token: str) -> dict[str, object] | None:
    """What the confirmation page shows of a link: the new address and whether the link
    still works; None for a link that never worked or was replaced."""
    change = session.scalars(select(EmailChange).where(
        EmailChange.token_hash == hash_secret(token))).first()
    if change is None:
        return None
    return {"new_email": change.new_email, "expired": change.expires_at <= utcnow()}
