"""Seasonal members (R10): the schedule that flips them at their window's edges.

A season's dates are UTC dates, read from the clock rate limits and codes read
(``limits.now``), so tests move time instead of waiting. Inside the window a member who
joined is ``active``; outside it ``inactive`` with ``inactive_reason = season``, holding no
seat (R7) and unable to log in. The schedule undoes only its own: a member an admin
disabled (``inactive_reason = disabled``) stays inactive, and one who never accepted the
invitation stays ``invited``.

Each run is two UPDATEs over every account, each returning the members it changed, and one
insert of their audit entries. It is idempotent: a member already flipped no longer matches
its UPDATE, and a run racing another (PostgreSQL re-checks the WHERE of a row the other
changed) returns, and so audits, only the rows it changed itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Row, and_, or_, update
from sqlalchemy.orm import Session

from provisioning.access import limits
from provisioning.billing import due
from provisioning.core import audit
from provisioning.core.models import utcnow
from provisioning.members.models import InactiveReason, Membership, MemberStatus, UserType

SEASON_TASK = "provisioning.apply_seasons"
ACTOR_LABEL = "system: seasonal schedule"


def season_today() -> date:
    """Today as seasons read it: the UTC date of the clock rate limits read."""
    return datetime.fromtimestamp(limits.now(), UTC).date()


@dataclass(frozen=True)
class SeasonRun:
    activated: int
    deactivated: int


def apply_seasons(session: Session, today: date | None = None) -> SeasonRun:
    """Activate the seasonal members whose window covers ``today`` and deactivate those
    whose window does not, in every account, with an audit entry for each (R14)."""
    today = today or season_today()
    now = utcnow()
    connection = session.connection()
    seasonal = Membership.user_type == UserType.SEASONAL.value
    inside = and_(Membership.seasonal_start <= today, Membership.seasonal_end >= today)
    activated = connection.execute(
        update(Membership)
        .where(seasonal, Membership.status == MemberStatus.INACTIVE.value,
               Membership.inactive_reason == InactiveReason.SEASON.value, inside)
        .values(status=MemberStatus.ACTIVE.value, inactive_reason=None, activated_at=now)
        .returning(Membership.id, Membership.account_id)).all()
    deactivated = connection.execute(
        update(Membership)
        .where(seasonal, Membership.status == MemberStatus.ACTIVE.value,
               or_(Membership.seasonal_start > today, Membership.seasonal_end < today))
        # sessions end with the season, as with a disable (R5)
        .values(status=MemberStatus.INACTIVE.value,
                inactive_reason=InactiveReason.SEASON.value, sessions_valid_after=now)
        .returning(Membership.id, Membership.account_id)).all()
    entries = (_entries(activated, "member.season_start", MemberStatus.INACTIVE,
                        MemberStatus.ACTIVE, today)
               + _entries(deactivated, "member.season_end", MemberStatus.ACTIVE,
                          MemberStatus.INACTIVE, today))
    if entries:
        connection.execute(audit.INSERT, entries)
    # who takes a seat changed: the accounts' bills are recalculated (R7)
    due.mark_changed(session, sorted({row[1] for row in [*activated, *deactivated]}))
    return SeasonRun(len(activated), len(deactivated))


def _entries(rows: Sequence[Row[int, int]], action: str, before: MemberStatus,
             after: MemberStatus, today: date) -> list[dict[str, object]]:
    return [audit.entry(account_id=account_id, actor_id=None, actor_label=ACTOR_LABEL,
                        action=action, target_type="member", target_id=member_id,
                        before={"status": before.value},
                        after={"status": after.value, "date": today.isoformat()})
            for member_id, account_id in rows]


def outside_season(user_type: str, start: date | None, end: date | None,
                   today: date) -> bool:
    """Whether a member is a seasonal one outside its window today (R10)."""
    return (user_type == UserType.SEASONAL.value
            and not (start is not None and end is not None and start <= today <= end))


def status_on_joining(user_type: str, start: date | None, end: date | None
                      ) -> tuple[str, str | None]:
    """The status and inactive reason of a member who joins or is activated now: a
    seasonal one outside its window waits for it."""
    if outside_season(user_type, start, end, season_today()):
        return MemberStatus.INACTIVE.value, InactiveReason.SEASON.value
    return MemberStatus.ACTIVE.value, None
