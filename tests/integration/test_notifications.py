"""Notifications (SPEC §8) over the real API, PostgreSQL, a Celery worker and the sink: each
person's settings, the inbox an accepted invitation writes to, instant emails, and the daily
digest at the person's local time (a clock the tests hold)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from provisioning.core.db import session_scope
from provisioning.mail.models import OutboxEmail
from provisioning.members.models import Identity
from provisioning.notifications.digest import send_digests
from provisioning.notifications.models import Notification, NotificationDigest
from provisioning.notifications.publish import notify
from tests.conftest import AdminAccount, Stack
from tests.integration.test_api_rules import assert_problem
from tests.support.members import accept, active_member, fresh_email
from tests.support.openapi import conforms as _conforms
from tests.support.processes import wait_until

SETTINGS = "/v1/me/notifications"
INBOX = "/v1/me/inbox"
# 09:00 in Asia/Jakarta (UTC+7, no daylight saving) on 4 March 2030 is 02:00 UTC.
JAKARTA_NINE = datetime(2030, 3, 4, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    # The tests hold the digest's clock: beat's own digest and push runs stay out of the way.
    return make_stack(notification_digest_seconds="86400", push_sweep_seconds="86400")


def identity_of(stack: Stack, headers: dict[str, str]) -> int:
    return int(stack.api.simulate_get("/v1/me", headers=headers).json["id"])


def put_settings(stack: Stack, headers: dict[str, str], **changes: Any) -> Any:
    return stack.api.simulate_put(SETTINGS, json=changes, headers=headers)


def notify_at(identity_id: int, event: str, details: dict[str, Any], at: datetime,
              account_id: int | None = None) -> int | None:
    with session_scope() as session:
        return notify(session, identity_id, event, details, account_id=account_id, now=at)


def digest_person(stack: Stack, language: str = "en") -> tuple[AdminAccount, int, str]:
    """A person with a 09:00 digest in Asia/Jakarta, writing in ``language``."""
    admin = stack.create_account()
    identity_id = identity_of(stack, admin.headers)
    with session_scope() as session:
        session.execute(update(Identity).where(Identity.id == identity_id)
                        .values(language=language, name="Dewi Lestari"))
    changed = put_settings(stack, admin.headers, email_mode="digest", digest_time="09:00",
                           time_zone="Asia/Jakarta")
    assert changed.status_code == 200, changed.json
    return admin, identity_id, admin.email


def three_events(identity_id: int, account_id: int) -> None:
    notify_at(identity_id, "call", {"caller": "Budi Santoso"}, JAKARTA_NINE - timedelta(hours=4))
    notify_at(identity_id, "incoming_email", {"sender": "Siti", "email_subject": "Quote #42"},
              JAKARTA_NINE - timedelta(hours=2))
    notify_at(identity_id, "task_assigned", {"task_title": "Call back Budi"},
              JAKARTA_NINE - timedelta(minutes=30), account_id=account_id)


def digests_queued(email: str) -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxEmail).where(
            OutboxEmail.recipient == email, OutboxEmail.template == "digest")) or 0)


def test_a_new_member_s_settings_are_the_defaults_and_a_put_changes_only_what_it_names(
        stack: Stack):
    admin = stack.create_account()
    defaults = stack.api.simulate_get(SETTINGS, headers=admin.headers)
    assert defaults.status_code == 200
    assert defaults.json == {
        "enabled": True,
        "channels": {"in_app": True, "email": True, "mobile": False, "browser": False,
                     "telegram": False},
        "events": {event: True for event in (
            "invitation_accepted", "participant_added", "records_reassigned", "task_assigned",
            "seats_changed", "incoming_email", "call")},
        "email_mode": "instant", "digest_time": "09:00", "time_zone": "UTC",
        "telegram_chat_id": None,
    }

    changed = put_settings(stack, admin.headers, email_mode="digest", digest_time="21:30",
                           time_zone="Asia/Jakarta", events={"call": False},
                           channels={"telegram": True}, telegram_chat_id=4242)
    assert changed.status_code == 200, changed.json
    expected = {**defaults.json, "email_mode": "digest", "digest_time": "21:30",
                "time_zone": "Asia/Jakarta", "telegram_chat_id": "4242",
                "events": {**defaults.json["events"], "call": False},
                "channels": {**defaults.json["channels"], "telegram": True}}
    assert changed.json == expected
    assert stack.api.simulate_get(SETTINGS, headers=admin.headers).json == expected
    # settings are the person's own: another person still has the defaults
    assert stack.api.simulate_get(SETTINGS, headers=stack.create_account().headers
                                  ).json == defaults.json


@pytest.mark.parametrize(("change", "field"), [
    ({"email_mode": "weekly"}, "email_mode"),
    ({"digest_time": "9:00"}, "digest_time"),
    ({"digest_time": "24:00"}, "digest_time"),
    ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
    ({"time_zone": "../../etc/passwd"}, "time_zone"),
    ({"channels": {"fax": True}}, "channels.fax"),
    ({"channels": "all"}, "channels"),
    ({"events": {"call": "yes"}}, "events.call"),
    ({"events": {"lunch": True}}, "events.lunch"),
    ({"enabled": "no"}, "enabled"),
    ({"colour": "blue"}, "colour"),
])
def test_a_setting_that_cannot_be_taken_is_refused_naming_its_field(
        stack: Stack, change: dict[str, Any], field: str):
    admin = stack.create_account()
    before = stack.api.simulate_get(SETTINGS, headers=admin.headers).json
    assert_problem(stack.api.simulate_put(SETTINGS, json=change, headers=admin.headers), 422,
                   field)
    assert stack.api.simulate_get(SETTINGS, headers=admin.headers).json == before


def test_settings_and_inbox_need_a_login_and_a_json_object(stack: Stack):
    assert_problem(stack.api.simulate_get(SETTINGS), 401)
    assert_problem(stack.api.simulate_get(INBOX), 401)
    admin = stack.create_account()
    assert_problem(stack.api.simulate_put(SETTINGS, json=["digest"], headers=admin.headers),
                   422, "body")


def test_an_accepted_invitation_puts_an_entry_in_the_inviter_s_inbox_and_emails_them(
        stack: Stack):
    admin = stack.create_account()
    email = fresh_email("bruno")
    invited = stack.invite(admin, email=email, name="Bruno Lima", language="es")
    assert invited.status_code == 201, invited.json
    assert accept(stack, invited.json["id"], password="bruno's password").status_code == 200

    inbox = stack.api.simulate_get(INBOX, headers=admin.headers)
    assert inbox.status_code == 200, inbox.json
    [entry] = inbox.json["items"]
    assert entry["event"] == "invitation_accepted" and entry["read"] is False
    assert entry["text"].startswith("Bruno Lima accepted your invitation to Workspace")
    assert inbox.json["unread"] == 1 and inbox.json["next_cursor"] is None

    [message] = wait_until(lambda: stack.sink.messages(to=admin.email, q="accepted"),
                           timeout=60, message="the inviter's notification email")
    assert message["subject"] == entry["text"]
    assert "Hi Ada Admin," in message["text"] and 'lang="en"' in message["html"]

    # the invitee wrote in Spanish; the inviter reads in their own language
    read = stack.api.simulate_post(f"{INBOX}/{entry['id']}/read", headers=admin.headers)
    assert read.status_code == 200 and read.json == {**entry, "read": True}
    unread = stack.api.simulate_get(INBOX, params={"unread": "true"}, headers=admin.headers)
    assert unread.json["items"] == [] and unread.json["unread"] == 0
    # nobody else can see or mark it
    _, _, member = active_member(stack, admin)
    assert_problem(stack.api.simulate_post(f"{INBOX}/{entry['id']}/read", headers=member), 404)
    assert stack.api.simulate_get(INBOX, headers=member).json["items"] == []


def test_the_inbox_pages_newest_first_and_marks_many_read(stack: Stack):
    admin = stack.create_account()
    identity_id = identity_of(stack, admin.headers)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    ids = [notify_at(identity_id, "call", {"caller": f"Caller {n}"}, start + timedelta(minutes=n))
           for n in range(5)]

    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = stack.api.simulate_get(INBOX, params={"limit": 2, **(
            {"cursor": cursor} if cursor else {})}, headers=admin.headers).json
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [item["id"] for item in seen] == list(reversed(ids))
    assert [item["text"] for item in seen][0] == "Incoming call from Caller 4"

    marked = stack.api.simulate_post(f"{INBOX}/read", json={"ids": ids[:3] + [10**12]},
                                     headers=admin.headers)
    assert marked.status_code == 200 and marked.json == {"marked": 3}
    assert stack.api.simulate_get(INBOX, headers=admin.headers).json["unread"] == 2
    for wrong in ({"ids": []}, {"ids": ["1"]}, {"ids": [True]}, {}):
        assert_problem(stack.api.simulate_post(f"{INBOX}/read", json=wrong,
                                               headers=admin.headers), 422, "ids")


def test_an_event_the_person_turned_off_leaves_no_trace(stack: Stack):
    admin = stack.create_account()
    identity_id = identity_of(stack, admin.headers)
    assert put_settings(stack, admin.headers, events={"call": False}).status_code == 200
    assert notify_at(identity_id, "call", {"caller": "Spam"}, JAKARTA_NINE) is None
    assert put_settings(stack, admin.headers, enabled=False, events={"call": True}
                        ).status_code == 200
    assert notify_at(identity_id, "call", {"caller": "Spam"}, JAKARTA_NINE) is None
    assert stack.api.simulate_get(INBOX, headers=admin.headers).json["items"] == []


def test_three_events_make_one_digest_at_nine_in_jakarta_in_the_person_s_language(
        stack: Stack):
    admin, identity_id, email = digest_person(stack, language="ru")
    three_events(identity_id, admin.id)
    assert digests_queued(email) == 0, "digest mode sends nothing instantly"

    send_digests(now=JAKARTA_NINE - timedelta(minutes=1))  # 08:59 in Jakarta
    assert digests_queued(email) == 0
    send_digests(now=JAKARTA_NINE)
    send_digests(now=JAKARTA_NINE + timedelta(minutes=5))
    send_digests(now=JAKARTA_NINE + timedelta(hours=14))  # 23:00 the same local day
    assert digests_queued(email) == 1

    [message] = wait_until(lambda: stack.sink.messages(to=email), timeout=60,
                           message="the digest email")
    assert message["subject"] == "Ваши уведомления за 4 марта 2030 г. (3)"
    assert 'lang="ru"' in message["html"]
    for line in ("05:00  Входящий звонок от Budi Santoso",
                 "07:00  Новое письмо от Siti: Quote #42",
                 "08:30  Вам назначена задача Call back Budi"):
        assert line in message["text"]
    assert "09:00 (Asia/Jakarta)" in message["text"]
    # the entries stay in the inbox, and the next day's digest has only what came after
    assert len(stack.api.simulate_get(INBOX, headers=admin.headers).json["items"]) == 3
    notify_at(identity_id, "call", {"caller": "Ani"}, JAKARTA_NINE + timedelta(hours=1))
    send_digests(now=JAKARTA_NINE + timedelta(days=1))
    second = wait_until(lambda: [m for m in stack.sink.messages(to=email)
                                 if m["id"] != message["id"]], timeout=60,
                        message="the next day's digest")
    assert "5 марта" in second[0]["subject"] and "(1)" in second[0]["subject"]


def test_no_digest_when_notifications_are_off(stack: Stack):
    admin, identity_id, email = digest_person(stack)
    three_events(identity_id, admin.id)
    assert put_settings(stack, admin.headers, enabled=False).status_code == 200
    send_digests(now=JAKARTA_NINE)
    # turning them on again does not send what waited while they were off
    assert put_settings(stack, admin.headers, enabled=True).status_code == 200
    send_digests(now=JAKARTA_NINE + timedelta(minutes=5))
    assert digests_queued(email) == 0
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(NotificationDigest).where(
            NotificationDigest.identity_id == identity_id)) == 0


def test_digest_runs_racing_on_postgresql_still_send_one(stack: Stack):
    people = [digest_person(stack, language=language) for language in ("id", "tr", "pt-BR")]
    for admin, identity_id, _ in people:
        three_events(identity_id, admin.id)
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            send_digests(now=JAKARTA_NINE + timedelta(minutes=1))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    for _, identity_id, email in people:
        assert digests_queued(email) == 1, email
        with session_scope() as session:
            assert session.scalar(select(func.count()).select_from(Notification).where(
                Notification.identity_id == identity_id, Notification.digest_pending)) == 0
    subjects = {email: wait_until(lambda e=email: stack.sink.messages(to=e), timeout=60,
                                  message=f"digest to {email}")[0]["subject"]
                for _, _, email in people}
    assert subjects[people[0][2]].startswith("Notifikasi Anda pada 4 Maret 2030")
    assert subjects[people[1][2]].startswith("4 Mart 2030 tarihli bildirimleriniz")
    assert subjects[people[2][2]].startswith("Suas notificações de 4 de março de 2030")


def test_answers_carry_the_fields_the_document_names(stack: Stack):
    described = stack.api.simulate_get("/openapi.json").json
    admin = stack.create_account()
    identity_id = identity_of(stack, admin.headers)
    entry = notify_at(identity_id, "seats_changed", {"seats": 12}, JAKARTA_NINE,
                      account_id=admin.id)
    answers = [
        ("get", SETTINGS, stack.api.simulate_get(SETTINGS, headers=admin.headers)),
        ("put", SETTINGS, put_settings(stack, admin.headers, email_mode="digest")),
        ("get", INBOX, stack.api.simulate_get(INBOX, headers=admin.headers)),
        ("post", INBOX + "/{notification_id}/read",
         stack.api.simulate_post(f"{INBOX}/{entry}/read", headers=admin.headers)),
        ("post", INBOX + "/read",
         stack.api.simulate_post(f"{INBOX}/read", json={"ids": [entry]}, headers=admin.headers)),
    ]
    strays: list[str] = []
    for method, path, result in answers:
        assert result.status_code == 200, (method, path, result.text)
        schema = described["paths"][path][method]["responses"]["200"]["content"][
            "application/json"]["schema"]
        strays += _conforms(described, schema, result.json, f"{method} {path}")
    assert strays == []
