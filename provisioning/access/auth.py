"""Logging in, bearer tokens and API keys; the token lookup also reads the standing R1 checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from provisioning.access import codes, limits
from provisioning.access.models import ApiToken
from provisioning.access.policy import STANDING_COLUMNS, Permission, Standing, require
from provisioning.accounts.models import Account, Role
from provisioning.core import audit
from provisioning.core.config import settings
from provisioning.core.errors import (
    FieldError,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
)
from provisioning.core.models import utcnow
from provisioning.core.security import (
    MAX_PASSWORD_LENGTH,
    dummy_password_hash,
    hash_secret,
    new_secret,
    verify_password,
)
from provisioning.core.validation import Form, normalise_email
from provisioning.members.models import Identity, InactiveReason, Membership, MemberStatus
from provisioning.members.seasons import outside_season, season_today


@dataclass(frozen=True)
class Actor:
    """Who is making a request: an identity, maybe restricted to one account (API keys)."""

    identity_id: int
    email: str
    name: str
    token_id: int
    account_id: int | None = None
    # Its standing in the account the request names, read with the token (one query).
    standing: Standing | None = field(default=None, compare=False, repr=False)
    # When its login session began (None for an API key): a disable ends older sessions.
    session_issued_at: datetime | None = None

    @property
    def label(self) -> str:
        return self.email


@dataclass(frozen=True)
class IssuedToken:
    id: int
    token: str
    expires_at: datetime | None


@dataclass(frozen=True)
class IssuedApiKey:
    name: str
    id: int
    token: str
    expires_at: datetime | None


# Refusals that count against the login limits: a wrong password (or unknown email) and
# a wrong code. Pending invitations, disabled users and a code not yet asked for do not.
COUNTED_FAILURES = frozenset(("invalid_credentials", "totp_invalid"))
SESSION, API_KEY = "session", "api_key"  # the kinds of bearer token


def login(session: Session, email: str, password: str, totp_code: str | None,
          client: str | None = None) -> IssuedToken:
    """Check the credentials (and the TOTP code when 2FA is on) and open a session.

    Failed attempts are limited per email and per client address (``client``): past
    either limit every attempt is refused with 429, the right password too, until the
    oldest failure leaves the window.
    """
    counted = limits.login_failures(email, client)
    limits.refuse_while_limited(counted, what="Too many failed logins")
    try:
        issued = _check_credentials(session, email, password, totp_code)
    except NotAuthenticated as refused:
        if refused.code in COUNTED_FAILURES:
            limits.count_failure(session, counted)  # nothing of a failed login is kept
        raise
    limits.forget_failures(session, counted)
    return issued


def _check_credentials(session: Session, email: str, password: str, totp_code: str | None
                       ) -> IssuedToken:
    refused = NotAuthenticated("Wrong email or password.", code="invalid_credentials")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise refused
    try:
        normalised = normalise_email(email)
    except InvalidInput:
        normalised = None
    identity = (session.scalars(select(Identity).where(Identity.email == normalised)).first()
                if normalised else None)
    if identity is None or identity.password_hash is None:
        verify_password(dummy_password_hash(), password)  # unknown emails take as long
        raise refused
    if not verify_password(identity.password_hash, password):
        raise refused
    places = session.execute(
        select(Membership.status, Membership.user_type, Membership.seasonal_start,
               Membership.seasonal_end, Membership.inactive_reason)
        .where(Membership.identity_id == identity.id)
    ).all()
    today = season_today()
    if not any(status == MemberStatus.ACTIVE.value
               and not outside_season(user_type, start, end, today)
               for status, user_type, start, end, _ in places):
        memberships = [status for status, *_ in places]
        for status, user_type, start, end, reason in places:
            if (outside_season(user_type, start, end, today)
                    and (status == MemberStatus.ACTIVE.value
                         or reason == InactiveReason.SEASON.value)):
                raise OutsideSeason(start, end)
        if MemberStatus.INVITED.value in memberships:
            raise NotAuthenticated("Accept your invitation first: follow the link in its email.",
                                   code="invitation_pending")
        if memberships:
            raise NotAuthenticated("This user is disabled.", code="user_inactive")
        raise NotAuthenticated("This login belongs to no workspace any more.",
                               code="no_membership")
    if identity.totp_enabled:
        check_totp_code(session, identity, totp_code)
    ttl = timedelta(seconds=settings().session_ttl_seconds)
    return _issue(session, identity, kind="session", expires_at=utcnow() + ttl)


class OutsideSeason(Forbidden):
    """R10: a seasonal member works only inside the window, in UTC dates."""

    code = "outside_season"

    def __init__(self, start: date | None, end: date | None) -> None:
        super().__init__(f"Your season in this workspace runs from {start} to {end} (UTC "
                         "dates); you can sign in during it.")


def check_totp_code(session: Session, identity: Identity, code: str | None) -> None:
    """R13: the code from the identity's authenticator, or an unused recovery code; each
    accepted once."""
    if not code:
        raise NotAuthenticated("Enter the code from your authenticator app.", code="totp_required")
    if not codes.accept_code(session, identity, code):
        raise NotAuthenticated("That code is not valid.", code="totp_invalid")


def _issue(
    session: Session,
    identity: Identity,
    *,
    kind: str,
    expires_at: datetime | None,
    account_id: int | None = None,
    name: str = "",
) -> IssuedToken:
    secret = new_secret()
    row = ApiToken(
        identity_id=identity.id,
        account_id=account_id,
        kind=kind,
        name=name,
        token_hash=hash_secret(secret),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return IssuedToken(id=row.id, token=secret, expires_at=expires_at)


# Built once: building a statement per request costs more than running it.
_TOKEN_AND_STANDING = (
    select(ApiToken.id, ApiToken.account_id, ApiToken.revoked_at, ApiToken.expires_at,
           Identity.id, Identity.email, Identity.name, *STANDING_COLUMNS,
           Membership.sessions_valid_after, ApiToken.kind, ApiToken.created_at,
           Membership.user_type, Membership.seasonal_start, Membership.seasonal_end)
    .join(Identity, Identity.id == ApiToken.identity_id)
    .outerjoin(Membership, and_(Membership.identity_id == Identity.id,
                                Membership.account_id == bindparam("account_id")))
    .outerjoin(Account, Account.id == Membership.account_id)
    .outerjoin(Role, Role.id == Membership.role_id)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)


def authenticate(session: Session, bearer: str | None, account_id: int | None = None) -> Actor:
    """The actor behind a bearer token, or NotAuthenticated.

    With ``account_id`` (the account a request names) the same query reads the
    actor's standing there, so the policy's ``require`` costs no round trip of its own.
    """
    if not bearer:
        raise NotAuthenticated("Send a bearer token in the Authorization header.")
    row = session.connection().execute(_TOKEN_AND_STANDING, {
        "token_hash": hash_secret(bearer), "account_id": account_id}).first()
    if row is None:
        raise NotAuthenticated("The token is not valid.", code="invalid_token")
    token_id, key_account_id, revoked_at, expires_at, identity_id, email, name = row[:7]
    if revoked_at is not None or (expires_at is not None and expires_at <= utcnow()):
        raise NotAuthenticated("The token has expired or was revoked.", code="invalid_token")
    *standing_row, sessions_valid_after, kind, issued_at, user_type, start, end = row[7:]
    if account_id is not None and user_type is not None and outside_season(
            user_type, start, end, season_today()):
        raise OutsideSeason(start, end)  # at once, whenever the schedule runs
    standing = (None if account_id is None
                else Standing.of(account_id, standing_row, sessions_valid_after))
    return Actor(identity_id=identity_id, email=email, name=name, token_id=token_id,
                 account_id=key_account_id, standing=standing,
                 session_issued_at=issued_at if kind == SESSION else None)


def end_sessions(session: Session, identity_id: int, account_id: int) -> None:
    """A member disabled or removed (R5): their sessions stop acting in the account at the
    next request and stay dead after an activation; their API keys there are revoked; and
    sessions of an identity left with no other active membership are revoked outright."""
    now = utcnow()
    session.execute(update(Membership)
                    .where(Membership.account_id == account_id,
                           Membership.identity_id == identity_id)
                    .values(sessions_valid_after=now))
    session.execute(update(ApiToken)
                    .where(ApiToken.identity_id == identity_id,
                           ApiToken.account_id == account_id, ApiToken.kind == API_KEY,
                           ApiToken.revoked_at.is_(None))
                    .values(revoked_at=now))
    active_elsewhere = (select(Membership.id)
                        .where(Membership.identity_id == identity_id,
                               Membership.account_id != account_id,
                               Membership.status == MemberStatus.ACTIVE.value).exists())
    session.execute(update(ApiToken)
                    .where(ApiToken.identity_id == identity_id, ApiToken.kind == SESSION,
                           ApiToken.revoked_at.is_(None), ~active_elsewhere)
                    .values(revoked_at=now))


def logout(session: Session, actor: Actor) -> None:
    session.execute(
        update(ApiToken).where(ApiToken.id == actor.token_id).values(revoked_at=utcnow())
    )


def create_api_key(session: Session, actor: Actor, account_id: int, body: Any
                   ) -> IssuedApiKey:
    """``POST …/api-keys {"name", "expires_at"?}``: an API key for automation that acts as
    ``actor`` within this one account, until revoked or, when given one, until
    ``expires_at``. The policy decides before the body is read: a stranger learns nothing."""
    account = require(session, actor, account_id, Permission.USERS_MANAGE)
    form = Form(body or {})
    name = form.text("name", required=True, max_length=100) or ""
    expires_at = form.moment("expires_at")
    form.finish()
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput([FieldError("expires_at", "Choose a time in the future.", "past")])
    identity = session.get_one(Identity, actor.identity_id)
    issued = _issue(
        session, identity, kind="api_key", expires_at=expires_at, account_id=account.id,
        name=name,
    )
    audit.record(
        session,
        account_id=account.id,
        actor_id=actor.identity_id,
        actor_label=actor.label,
        action="api_key.create",
        target_type="api_key",
        target_id=None,
        after={"name": name, "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return IssuedApiKey(name, issued.id, issued.token, issued.expires_at)


def issue_api_key(session: Session, identity: Identity, account_id: int, name: str) -> str:
    """An API key issued by the system itself (account creation, demo)."""
    return _issue(
        session, identity, kind="api_key", expires_at=None, account_id=account_id, name=name
    ).token


def list_api_keys(session: Session, actor: Actor, account_id: int) -> list[dict[str, object]]:
    """The account's live API keys (never their secrets)."""
    require(session, actor, account_id, Permission.USERS_MANAGE)
    keys = session.execute(
        select(ApiToken.id, ApiToken.name, ApiToken.created_at, ApiToken.expires_at,
               Identity.email)
        .join(Identity, Identity.id == ApiToken.identity_id)
        .where(ApiToken.account_id == account_id, ApiToken.kind == "api_key",
               ApiToken.revoked_at.is_(None),
               or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > utcnow()))
        .order_by(ApiToken.id)
    ).all()
    return [{"id": key_id, "name": name, "created_at": created_at, "expires_at": expires_at,
             "created_by": email}
            for key_id, name, created_at, expires_at, email in keys]


def revoke_api_key(session: Session, actor: Actor, account_id: int, key_id: int) -> None:
    require(session, actor, account_id, Permission.USERS_MANAGE)
    revoked = session.execute(
        update(ApiToken)
        .where(ApiToken.id == key_id, ApiToken.account_id == account_id,
               ApiToken.kind == "api_key", ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if not revoked.rowcount:  # type: ignore[attr-defined]
        raise NotFound("No such API key.")
    audit.record(session, account_id=account_id, actor_id=actor.identity_id,
                 actor_label=actor.label, action="api_key.revoke", target_type="api_key",
                 target_id=key_id)
