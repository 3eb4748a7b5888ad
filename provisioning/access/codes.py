"""Two-factor codes (R13): the TOTP secret sealed at rest, a code accepted once, and
recovery codes kept as keyed hashes, each usable once.

The secret is encrypted (Fernet) with a key derived from ``PROVISIONING_SECRET_KEY``, so
a copy of the database alone cannot make codes. Time is read from the limits' clock
(``limits.use_clock``), so a test moves codes and rate limits together.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pyotp
from sqlalchemy import delete, insert, or_, update
from sqlalchemy.orm import Session

from provisioning.access import limits
from provisioning.access.models import RecoveryCode
from provisioning.core import security
from provisioning.core.config import settings
from provisioning.core.models import utcnow
from provisioning.members.models import Identity

RECOVERY_CODES = 10
DRIFT_STEPS = 1  # R13: a code of the step before or after is accepted too
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread


SEALED_FOR = "totp-secret-at-rest"  # what the key that seals TOTP secrets is derived for


def seal_secret(secret: str, secret_key: str | None = None) -> str:
    """The TOTP secret as the database keeps it: encrypted with the server's key."""
    return security.seal(secret_key or settings().secret_key, SEALED_FOR, secret)


def open_secret(sealed: str | None) -> str | None:
    """The TOTP secret of a sealed value; None when absent or sealed with another key."""
    return security.unseal(settings().secret_keys, SEALED_FOR, sealed)


def new_secret() -> str:
    return pyotp.random_base32()


def current_step() -> int:
    return int(limits.now() // pyotp.TOTP(new_secret()).interval)


def claim_totp_code(session: Session, identity: Identity, secret: str | None, code: str) -> bool:
    """Whether ``code`` is the secret's code of this step (±1), claimed so it works once:
    of two requests racing with one code, one moves the identity's last step past it."""
    if not secret:
        return False
    totp = pyotp.TOTP(secret)
    code = code.strip().replace(" ", "")
    now = current_step()
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if not hmac.compare_digest(totp.generate_otp(step), code):
            continue
        claimed = session.execute(
            update(Identity)
            .where(Identity.id == identity.id,
                   or_(Identity.totp_last_step.is_(None), Identity.totp_last_step < step))
            .values(totp_last_step=step)
        )
        return bool(claimed.rowcount)  # type: ignore[attr-defined]
    return False


def _recovery_hash(code: str, secret_key: str | None = None) -> str:
    """A keyed hash: a database copy alone cannot be searched for the codes."""
    normalised = "".join(code.lower().split()).replace("-", "")
    key = (secret_key or settings().secret_key).encode()
    return hmac.new(key, f"recovery-code:{normalised}".encode(), hashlib.sha256).hexdigest()


def new_recovery_codes(session: Session, identity_id: int) -> list[str]:
    """Ten fresh recovery codes (``xxxxx-xxxxx``); the identity's earlier ones stop working."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    forget_recovery_codes(session, identity_id)
    session.execute(insert(RecoveryCode), [
        {"identity_id": identity_id, "code_hash": _recovery_hash(code)} for code in codes])
    return codes


def forget_recovery_codes(session: Session, identity_id: int) -> None:
    session.execute(delete(RecoveryCode).where(RecoveryCode.identity_id == identity_id))


def use_recovery_code(session: Session, identity_id: int, code: str) -> bool:
    """Whether ``code`` is an unused recovery code of the identity, now used."""
    used = session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.identity_id == identity_id,
               # made under the current key or one it replaced
               RecoveryCode.code_hash.in_([_recovery_hash(code, key)
                                           for key in settings().secret_keys]),
               RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow())
    )
    return bool(used.rowcount)  # type: ignore[attr-defined]


def accept_code(session: Session, identity: Identity, code: str) -> bool:
    """A second factor of an identity with 2FA on: a TOTP code or an unused recovery code."""
    if code.strip().isdigit() and len(code.strip()) <= 8:  # recovery codes are 10 long
        return claim_totp_code(session, identity, open_secret(identity.totp_secret), code)
    return use_recovery_code(session, identity.id, code)
