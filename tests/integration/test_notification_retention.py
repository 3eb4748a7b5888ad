"""Old notifications are forgotten: inbox entries past retention with their push messages,
finished push messages, and digest marks after a week; an entry still waiting for its digest,
and anything recent, stay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from provisioning.core.db import session_scope
from provisioning.core.models import utcnow
from provisioning.notifications.models import Notification, NotificationDigest, PushMessage
from provisioning.notifications.publish import notify
from provisioning.notifications.retention import purge
from tests.conftest import Stack


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(worker=False, notification_retention_days="30")


def person(stack: Stack, **settings: Any) -> int:
    admin = stack.create_account()
    assert stack.api.simulate_put("/v1/me/notifications", json=settings,
                                  headers=admin.headers).status_code == 200
    return int(stack.api.simulate_get("/v1/me", headers=admin.headers).json["id"])


def call(identity_id: int, days_ago: float) -> int:
    with session_scope() as session:
        entry = notify(session, identity_id, "call", {"caller": f"{days_ago} days ago"},
                       now=utcnow() - timedelta(days=days_ago))
    assert entry is not None
    return entry


def entries(*ids: int) -> set[int]:
    with session_scope() as session:
        return set(session.scalars(select(Notification.id).where(Notification.id.in_(ids))))


def pushes(*entry_ids: int) -> set[int]:
    with session_scope() as session:
        return set(session.scalars(select(PushMessage.notification_id).where(
            PushMessage.notification_id.in_(entry_ids))))


def test_the_purge_forgets_what_is_past_retention_and_keeps_the_rest(stack: Stack):
    now = utcnow()
    instant = person(stack, channels={"telegram": True})
    digest = person(stack, email_mode="digest")
    old, fresh = call(instant, 45), call(instant, 5)
    waiting = call(digest, 45)  # its digest has not gone yet
    assert pushes(old, fresh) == {old, fresh}
    with session_scope() as session:
        # a finished push of a recent entry, last tried long ago, and one still queued
        session.execute(update(PushMessage).where(PushMessage.notification_id == fresh)
                        .values(status="sent", next_attempt_at=now - timedelta(days=40)))
        session.execute(insert(NotificationDigest), [
            {"identity_id": digest, "local_date": (now - timedelta(days=days)).date(),
             "created_at": now - timedelta(days=days)} for days in (10, 2)])

    purged = purge(now=now, chunk=2)

    assert purged["notifications"] >= 1 and purged["push_messages"] >= 1
    assert purged["digest_marks"] >= 1
    assert entries(old, fresh, waiting) == {fresh, waiting}
    assert pushes(old, fresh) == set()  # the old entry's went with it; the sent one by age
    with session_scope() as session:
        marks = set(session.scalars(select(NotificationDigest.local_date).where(
            NotificationDigest.identity_id == digest)))
    assert marks == {(now - timedelta(days=2)).date()}
    again = purge(now=now)
    assert again == {"notifications": 0, "push_messages": 0, "digest_marks": 0}


def test_a_queued_push_of_a_recent_entry_is_kept(stack: Stack):
    identity = person(stack, channels={"telegram": True})
    entry = call(identity, 1)
    with session_scope() as session:
        session.execute(update(PushMessage).where(PushMessage.notification_id == entry)
                        .values(next_attempt_at=utcnow() - timedelta(days=60)))
    purge()
    assert pushes(entry) == {entry} and entries(entry) == {entry}
