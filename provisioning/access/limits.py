"""Rate limits: how many times something may fail (or happen) per key within a window.

One interface, two stores: Redis where the broker is Redis (every web process and
worker sees the same counts at once), and the database on the embedded default. Each
keeps a sliding log of hits: a key is over its limit while ``limit`` hits lie within
the last ``window`` seconds, and free again once the oldest of them has aged out.

Keys are keyed hashes (``limit_key``), so neither store holds an email address or an
IP address in clear. The clock is replaceable (``use_clock``) so tests can move time.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from provisioning.access.models import LimitHit
from provisioning.core.config import settings
from provisioning.core.db import after_commit, engine_for
from provisioning.core.errors import RateLimited

Clock = Callable[[], float]
_clock: Clock = time.time


def use_clock(clock: Clock) -> Clock:
    """Replace the clock limits read (seconds since the epoch); returns the previous one."""
    global _clock
    previous, _clock = _clock, clock
    return previous


def now() -> float:
    return _clock()


@dataclass(frozen=True)
class Limit:
    """At most ``count`` hits within ``window`` seconds."""

    count: int
    window: float


class Store(Protocol):
    def hits(self, key: str, since: float) -> list[float]:
        """The times of ``key``'s hits after ``since``, oldest first (older ones may go)."""

    def add(self, key: str, at: float, window: float) -> None:
        """Record a hit of ``key`` at ``at``, kept for at least ``window`` seconds."""

    def clear(self, key: str) -> None:
        """Forget every hit of ``key``."""


def limit_key(kind: str, value: str) -> str:
    """The stored key for ``value`` (an email, an address): a keyed hash, never the value."""
    secret = settings().secret_key.encode()
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:40]


def retry_after(store: Store, key: str, limit: Limit) -> int | None:
    """Seconds until ``key`` may be tried again, or None while it is under its limit."""
    at = now()
    hits = store.hits(key, at - limit.window)
    if len(hits) < limit.count:
        return None
    # Free once enough of the oldest hits have aged out to leave room for one more.
    frees_at = hits[len(hits) - limit.count] + limit.window
    return max(1, math.ceil(frees_at - at))


def hit(store: Store, key: str, limit: Limit) -> None:
    store.add(key, now(), limit.window)


class DatabaseStore:
    """Hits as rows of ``limit_hits``, written on a connection of their own: a failure is
    recorded even though the request that failed rolls back."""

    def __init__(self, database_url: str) -> None:
        self.engine = engine_for(database_url)

    def hits(self, key: str, since: float) -> list[float]:
        with self.engine.begin() as connection:
            connection.execute(delete(LimitHit).where(LimitHit.key == key, LimitHit.at <= since))
            return list(connection.scalars(select(LimitHit.at).where(LimitHit.key == key)
                                           .order_by(LimitHit.at)))

    def add(self, key: str, at: float, window: float) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(LimitHit).values(key=key, at=at))
            # Keys that are never checked again (one-off guesses) still go, a few at a time.
            stale = select(LimitHit.id).where(LimitHit.at <= at - window).limit(100)
            connection.execute(delete(LimitHit).where(LimitHit.id.in_(stale.scalar_subquery())))

    def clear(self, key: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(LimitHit).where(LimitHit.key == key))

    def count(self) -> int:
        with self.engine.begin() as connection:
            return connection.scalar(select(func.count()).select_from(LimitHit)) or 0


class RedisStore:
    """Hits as members of one sorted set per key, scored by time, expiring with the window."""

    PREFIX = "provisioner:limit:"

    def __init__(self, url: str) -> None:
        import redis

        self.client: Any = redis.Redis.from_url(url)

    def hits(self, key: str, since: float) -> list[float]:
        name = self.PREFIX + key
        pipe = self.client.pipeline(transaction=True)
        pipe.zremrangebyscore(name, "-inf", since)
        pipe.zrange(name, 0, -1, withscores=True)
        return [score for _, score in pipe.execute()[1]]

    def add(self, key: str, at: float, window: float) -> None:
        name = self.PREFIX + key
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(name, {f"{at!r}:{secrets.token_hex(4)}": at})
        pipe.expire(name, max(1, math.ceil(window)))
        pipe.execute()

    def clear(self, key: str) -> None:
        self.client.delete(self.PREFIX + key)


@lru_cache(maxsize=4)
def _store_for(database_url: str, broker_url: str) -> Store:
    if broker_url.startswith(("redis://", "rediss://")):
        return RedisStore(broker_url)
    return DatabaseStore(database_url)


def store() -> Store:
    """Redis when the broker is Redis, else the database."""
    config = settings()
    return _store_for(config.database_url, config.broker_url)


# --- the login's limits, for every action that checks a login's secrets ------------------

Counted = list[tuple[str, Limit]]


def login_failures(email: str, client: str | None) -> Counted:
    """What a failed check of a login's secrets (its password, a two-factor code) counts
    against: the login limits of its email and of the client's address. Login, 2FA set-up,
    enable and disable, the password change and the email confirmation share them, so no
    route gives a guesser a fresh budget."""
    config = settings()
    window = config.login_failure_window_seconds
    counted = [(limit_key("login-email", email.strip().lower()),
                Limit(config.login_failures_per_email, window))]
    if client:
        counted.append((limit_key("login-address", client),
                        Limit(config.login_failures_per_address, window)))
    return counted


def refuse_while_limited(counted: Counted, session: Session | None = None,
                         what: str = "Too many failed attempts") -> None:
    """RateLimited (429 with Retry-After) while any of ``counted`` is over its limit.

    A request that already read in ``session`` ends that read-only transaction first: on
    SQLite it holds the write lock the database store needs."""
    if session is not None:
        session.rollback()
    active = store()
    waits = [wait for key, limit in counted
             if (wait := retry_after(active, key, limit)) is not None]
    if waits:
        raise RateLimited(f"{what}. Try again in {max(waits)} seconds.",
                          retry_after=max(waits))


def count_failure(session: Session, counted: Counted) -> None:
    """Count a failed attempt; nothing else of the failed request is kept."""
    session.rollback()
    active = store()
    for key, limit in counted:
        hit(active, key, limit)


def forget_failures(session: Session, counted: Counted) -> None:
    """A success forgets the email's failures, once the session has committed (on SQLite
    the request holds the write lock until then)."""
    active = store()
    after_commit(session, lambda: active.clear(counted[0][0]))
