"""The one place an invitation's token and email are made (R3, R4, R11).

The invite, the resend, the renewal and the import all take their invitations from
``new_invitations``: the token's nonce and hash, the expiry, and the email for the
outbox (template, language, context, and through ``outbox`` its Message-ID). The
email carries the nonce as a derived link: the sender makes the link from the secret
key, so the database never holds a working token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy.orm import Session

from provisioning.accounts.models import Account
from provisioning.core.config import settings
from provisioning.core.models import utcnow
from provisioning.core.security import (
    INVITATION_PURPOSE,
    hash_secret,
    invitation_token,
    new_secret,
)
from provisioning.mail import outbox
from provisioning.mail.links import DERIVED_LINKS, derived_link
from provisioning.members.models import Identity, Invitation, Membership

# SPEC §10: the email links to {PUBLIC_URL}/invitations/{token}.
INVITATION_PATH = "/invitations/{token}"


@dataclass(frozen=True)
class Inviter:
    """Who invites, from which workspace: the same in every email of one send."""

    account_id: int
    account_name: str
    name: str  # as the email shows it: the admin's name, else their address


class Addressee(NamedTuple):
    """Who one invitation goes to, as its email needs them."""

    email: str
    name: str | None
    language: str
    existing_identity: bool  # already has a login: the email says it stays unchanged (R3)


class NewInvitation(NamedTuple):
    """A fresh invitation: the nonce its link derives from, the hash of its token (the only
    form the database keeps), when it stops working, and its email for the outbox."""

    token_nonce: str
    token_hash: str
    expires_at: datetime
    email: outbox.Email


def new_invitations(inviter: Inviter, addressees: Iterable[Addressee], now: datetime
                    ) -> list[NewInvitation]:
    """One fresh invitation per addressee, in their order (a batch shares ``now``).

    The hash is of ``invitation_token``: the token the sender derives for the email's link,
    whose purpose the link names. Literals, not constructors, inside the loop: an import
    makes 100,000 of these in a row.
    """
    config = settings()
    secret_key = config.secret_key
    expires_at = now + timedelta(days=config.invitation_ttl_days)
    expires = expires_at.isoformat()
    made = []
    for addressee in addressees:
        nonce = new_secret()
        name = addressee.name or None
        email: outbox.Email = {
            "account_id": inviter.account_id,
            "recipient": addressee.email,
            "recipient_name": name,
            "template": "invite_existing" if addressee.existing_identity else "invite_new",
            "language": addressee.language,
            "context": {
                "account_name": inviter.account_name,
                "inviter_name": inviter.name,
                "invitee_name": name,
                "email": addressee.email,
                "expires_at": expires,
                DERIVED_LINKS: {"link": derived_link(INVITATION_PATH, INVITATION_PURPOSE,
                                                     nonce)},
            },
        }
        token_hash = hash_secret(invitation_token(secret_key, nonce))
        made.append(NewInvitation(nonce, token_hash, expires_at, email))
    return made


def new_invitation(inviter: Inviter, addressee: Addressee, now: datetime) -> NewInvitation:
    """``new_invitations`` for one person."""
    return new_invitations(inviter, (addressee,), now)[0]


def send_invitation(session: Session, account: Account, invitation: Invitation,
                    membership: Membership, identity: Identity, inviter_name: str) -> None:
    """Give the invitation a fresh token and expiry and queue its email (the old link dies)."""
    now = utcnow()
    fresh = new_invitation(
        Inviter(account.id, account.name, inviter_name),
        Addressee(identity.email, identity.name, membership.language,
                  invitation.existing_identity), now)
    invitation.token_nonce = fresh.token_nonce
    invitation.token_hash = fresh.token_hash
    invitation.expires_at = fresh.expires_at
    invitation.sends = (invitation.sends or 0) + 1
    invitation.last_sent_at = now
    invitation.last_email_id = outbox.queue_email(session, **fresh.email)
