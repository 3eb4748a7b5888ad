"""Turning two-factor sign-in on and off (R13): set-up, enrolment confirmed by a code,
recovery codes, and switching it off with a code. Every check of a code is guarded by
the login limits (``limits.login_failures``)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pyotp
import segno
from sqlalchemy.orm import Session

from provisioning.access import codes, limits
from provisioning.access.auth import Actor
from provisioning.core.config import settings
from provisioning.core.errors import Conflict, FieldError, Forbidden
from provisioning.members.models import Identity


@dataclass(frozen=True)
class TwoFactorSetup:
    """What an authenticator app needs: the secret, as text, URI and QR code (SVG)."""

    secret: str
    otpauth_uri: str
    qr_svg: str


def two_factor_on() -> Conflict:
    return Conflict("Two-factor sign-in is on: turn it off first.", code="two_factor_on")


def wrong_code() -> Forbidden:
    return Forbidden("That code is not valid.", code="totp_invalid",
                     errors=[FieldError("code", "That code is not valid.", "totp_invalid")])


def set_up_two_factor(session: Session, actor: Actor, client: str | None = None
                      ) -> TwoFactorSetup:
    """A fresh secret for the caller's authenticator; it takes effect once a code from it
    is confirmed (``enable_two_factor``)."""
    limits.refuse_while_limited(limits.login_failures(actor.email, client), session)
    identity = session.get_one(Identity, actor.identity_id)
    if identity.totp_enabled:
        raise two_factor_on()
    secret = codes.new_secret()
    identity.totp_secret = codes.seal_secret(secret)
    identity.totp_last_step = None
    uri = pyotp.TOTP(secret).provisioning_uri(name=identity.email,
                                              issuer_name=settings().product_name)
    svg = io.BytesIO()  # a standalone SVG (with its namespace): it works in an <img> too
    segno.make(uri, error="m").save(svg, kind="svg", xmldecl=False, nl=False, scale=4)
    return TwoFactorSetup(secret=secret, otpauth_uri=uri, qr_svg=svg.getvalue().decode())


def enable_two_factor(session: Session, actor: Actor, code: str,
                      client: str | None = None) -> list[str]:
    """Turn 2FA on with a code from the secret set up; returns ten recovery codes, shown
    this once (the database keeps keyed hashes)."""
    counted = limits.login_failures(actor.email, client)
    limits.refuse_while_limited(counted, session)
    identity = session.get_one(Identity, actor.identity_id)
    if identity.totp_enabled:
        raise two_factor_on()
    secret = codes.open_secret(identity.totp_secret)
    if secret is None:
        raise Conflict("Set up two-factor sign-in first (POST /v1/me/2fa/setup).",
                       code="two_factor_not_set_up")
    if not codes.claim_totp_code(session, identity, secret, code):
        limits.count_failure(session, counted)
        raise wrong_code()
    identity.totp_enabled = True
    limits.forget_failures(session, counted)
    return codes.new_recovery_codes(session, identity.id)


def disable_two_factor(session: Session, actor: Actor, code: str,
                       client: str | None = None) -> None:
    """Turn 2FA off with a code from the authenticator or an unused recovery code."""
    counted = limits.login_failures(actor.email, client)
    limits.refuse_while_limited(counted, session)
    identity = session.get_one(Identity, actor.identity_id)
    if not identity.totp_enabled:
        raise Conflict("Two-factor sign-in is already off.", code="two_factor_off")
    if not codes.accept_code(session, identity, code):
        limits.count_failure(session, counted)
        raise wrong_code()
    identity.totp_enabled = False
    identity.totp_secret = None
    codes.forget_recovery_codes(session, identity.id)
    limits.forget_failures(session, counted)
