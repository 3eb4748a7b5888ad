"""Passwords (argon2), bearer secrets (random, stored as SHA-256), and secrets sealed at rest
with a key derived from the server's secret key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@lru_cache(maxsize=1)
def dummy_password_hash() -> str:
    """A hash no password matches, verified against when there is no real one, so a login
    for an unknown email costs what one for a known email does."""
    return _hasher.hash(secrets.token_urlsafe(32))


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_secret() -> str:
    """A 256-bit random secret, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The stored form of a bearer secret: a fast hash is right for 256 random bits."""
    return hashlib.sha256(secret.encode()).hexdigest()


INVITATION_PURPOSE = "invitation"  # what an invitation token's HMAC is keyed for


def derived_token(secret_key: str, purpose: str, nonce: str) -> str:
    """The token of a link derived from ``nonce`` for ``purpose``, with the server's secret key.

    The database keeps only the nonce and the token's hash; the worker derives the
    token to put it in the email, so a copy of the database alone never reveals a
    working link. The purpose keeps tokens of one kind of link useless as another.
    """
    digest = hmac.new(secret_key.encode(), f"{purpose}:{nonce}".encode(), hashlib.sha256)
    return digest.hexdigest()


def invitation_token(secret_key: str, nonce: str) -> str:
    """The invitation token for ``nonce`` (the link in the invitation email ends with it)."""
    return derived_token(secret_key, INVITATION_PURPOSE, nonce)


def _sealer(secret_key: str, purpose: str) -> Fernet:
    key = hmac.new(secret_key.encode(), purpose.encode(), hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret_key: str, purpose: str, secret: str) -> str:
    """``secret`` as the database keeps it: encrypted (Fernet) with a key derived from the
    server's secret key for ``purpose``, so a copy of the database alone does not reveal it."""
    return _sealer(secret_key, purpose).encrypt(secret.encode()).decode()


def unseal(secret_keys: Sequence[str], purpose: str, sealed: str | None) -> str | None:
    """What ``seal`` sealed with any of ``secret_keys`` (the current one first, then those it
    replaced); None when absent or sealed with none of them."""
    opened = open_sealed(secret_keys, purpose, sealed)
    return None if opened is None else opened[0]


def open_sealed(secret_keys: Sequence[str], purpose: str, sealed: str | None
                ) -> tuple[str, int] | None:
    """What ``seal`` sealed, and the position in ``secret_keys`` of the key that opened it."""
    if not sealed:
        return None
    for position, secret_key in enumerate(secret_keys):
        try:
            return _sealer(secret_key, purpose).decrypt(sealed.encode()).decode(), position
        except InvalidToken:
            continue
    return None


@lru_cache(maxsize=8)
def key_id(secret_key: str) -> str:
    """A short name of a secret key, kept beside what it derived so the right key can be
    found after a rotation; a hash, so it tells nothing of the key."""
    return hashlib.sha256(f"key-id:{secret_key}".encode()).hexdigest()[:12]
