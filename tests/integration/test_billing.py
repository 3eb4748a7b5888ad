"""Billing over PostgreSQL and a real worker: R7's seat count through every path, R8's
refusals and changes, and the recalculation (idempotent, debounced, on demand)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from provisioning.accounts.models import Account
from provisioning.billing import changes, due, recalculation
from provisioning.billing.models import BillingEvent, SeatSnapshot, Subscription
from provisioning.billing.seats import seats_in_use
from provisioning.core.db import engine, session_scope
from provisioning.core.migrate import upgrade
from provisioning.core.models import utcnow
from provisioning.members.models import Membership, MemberStatus
from tests.conftest import AdminAccount, Stack, activate, deactivate
from tests.support.imports import finished_job, run_import
from tests.support.members import accept, active_member, fresh_email, set_status
from tests.support.processes import wait_until

DELAY = 20  # seconds a membership change waits before its account is recalculated
TODAY = date.today()
IN_WINDOW = {"user_type": "seasonal", "seasonal_start": str(TODAY - timedelta(days=2)),
             "seasonal_end": str(TODAY + timedelta(days=20))}
OUT_OF_WINDOW = {"user_type": "seasonal", "seasonal_start": str(TODAY + timedelta(days=10)),
                 "seasonal_end": str(TODAY + timedelta(days=40))}
KINDS_OF_MEMBER = {"full": {}, "free": {"user_type": "free"}, "seasonal_in": IN_WINDOW,
                   "seasonal_out": OUT_OF_WINDOW}


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(billing_recalc_delay_seconds=str(DELAY))


def seasonal_account(stack: Stack, **options: Any) -> AdminAccount:
    admin = stack.create_account(**options)
    with session_scope() as session:
        session.execute(update(Account).where(Account.id == admin.id).values(seasonal_seats=50))
    return admin


def r7(user_type: str, status: str, start: date | None, end: date | None) -> bool:
    """R7 as the SPEC words it, written apart from the product's own function."""
    if status not in ("invited", "active"):
        return False
    if user_type == "full":
        return True
    return user_type == "seasonal" and start is not None and end is not None \
        and start <= TODAY <= end


def assert_every_count_agrees(stack: Stack, admin: AdminAccount) -> int:
    """The product's count, its billing page, its member list and the recalculation's
    snapshot all say what R7 says, member by member."""
    with session_scope() as session:
        members = session.execute(
            select(Membership.id, Membership.user_type, Membership.status,
                   Membership.seasonal_start, Membership.seasonal_end)
            .where(Membership.account_id == admin.id)).all()
        counted = seats_in_use(session, admin.id, TODAY)
    expected = {member_id: r7(kind, status, start, end)
                for member_id, kind, status, start, end in members}
    used = sum(expected.values())
    assert counted == used
    billing = stack.api.simulate_get(f"/v1/accounts/{admin.id}/billing", headers=admin.headers)
    assert billing.status_code == 200, billing.json
    seats = billing.json["seats"]
    assert seats["used"] == used
    assert seats["seasonal_used"] == sum(
        taken for (member_id, kind, *_), taken in zip(members, expected.values(), strict=True)
        if kind == "seasonal")
    assert seats["free_members"] == sum(1 for _, kind, status, *_ in members
                                        if kind == "free" and status in ("invited", "active"))
    listed = stack.api.simulate_get(f"/v1/accounts/{admin.id}/billing/seats",
                                    params={"limit": 1000}, headers=admin.headers).json
    assert {item["user_id"]: item["takes_seat"] for item in listed["items"]} == expected
    changes.recalculate_billing(admin.id)
    with session_scope() as session:
        snapshot = session.scalars(select(SeatSnapshot).where(
            SeatSnapshot.account_id == admin.id, SeatSnapshot.taken_on == utcnow().date())).one()
        assert (snapshot.used, snapshot.seasonal_used) == (used, seats["seasonal_used"])
    return used


def status_of(member_id: int) -> str | None:
    with session_scope() as session:
        return session.scalar(select(Membership.status).where(Membership.id == member_id))


def invite(stack: Stack, admin: AdminAccount, kind: str) -> int:
    answer = stack.invite(admin, email=fresh_email(kind.replace("_", "")),
                          **KINDS_OF_MEMBER[kind])
    assert answer.status_code == 201, answer.json
    return int(answer.json["id"])


def join(stack: Stack, member_id: int) -> None:
    """invited -> active. A seasonal member outside its window joins as inactive until its
    season (R10); here it stands as one who joined during an earlier window."""
    accepted = accept(stack, member_id, password="member password")
    if accepted.status_code != 200 or status_of(member_id) != "active":
        set_status(member_id, MemberStatus.ACTIVE)
    assert status_of(member_id) == "active"


def act(stack: Stack, admin: AdminAccount, member_id: int, action: str) -> None:
    path = f"/v1/accounts/{admin.id}/users/{member_id}"
    answer = (stack.api.simulate_delete(path, headers=admin.headers) if action == "remove"
              else stack.api.simulate_post(f"{path}/{action}", headers=admin.headers))
    assert answer.status_code == 200, answer.json


def bulk(stack: Stack, admin: AdminAccount, action: str, user_ids: list[int]) -> None:
    answer = stack.api.simulate_post(f"/v1/accounts/{admin.id}/users/bulk", json={
        "action": action, "user_ids": user_ids}, headers=admin.headers)
    assert answer.status_code == 202, answer.json
    done = finished_job(stack, admin, answer.json["job"]["id"])
    assert done["summary"] == {"succeeded": len(user_ids), "failed": 0}, done


def test_the_seat_matrix_counts_as_r7_says_through_every_path(stack: Stack):
    admin = seasonal_account(stack, plan="base", seats=100)
    assert assert_every_count_agrees(stack, admin) == 1  # the admin
    by_invite = {kind: invite(stack, admin, kind) for kind in KINDS_OF_MEMBER}
    assert assert_every_count_agrees(stack, admin) == 3  # + full and seasonal in window

    rows = ["email,user_type,seasonal_start,seasonal_end"] + [
        f"{fresh_email(kind.replace('_', ''))},{values.get('user_type', 'full')},"
        f"{values.get('seasonal_start', '')},{values.get('seasonal_end', '')}"
        for kind, values in KINDS_OF_MEMBER.items()]
    assert run_import(stack, admin, "\n".join(rows).encode())["summary"]["created"] == 4
    assert assert_every_count_agrees(stack, admin) == 5
    with session_scope() as session:
        imported = list(session.scalars(select(Membership.id).where(
            Membership.account_id == admin.id, Membership.id.not_in(
                list(by_invite.values()))).order_by(Membership.id)))[1:]  # not the admin
    assert len(imported) == 4

    for member_id in [*by_invite.values(), *imported]:  # invited -> active
        join(stack, member_id)
    assert assert_every_count_agrees(stack, admin) == 5
    for member_id in by_invite.values():  # active -> inactive, one by one
        act(stack, admin, member_id, "disable")
        assert status_of(member_id) == "inactive"
        assert_every_count_agrees(stack, admin)
    assert assert_every_count_agrees(stack, admin) == 3
    bulk(stack, admin, "disable", imported)  # the same through a bulk action
    assert {status_of(member_id) for member_id in imported} == {"inactive"}
    assert assert_every_count_agrees(stack, admin) == 1
    for kind, member_id in by_invite.items():  # inactive -> active
        act(stack, admin, member_id, "activate")
        # outside its window a seasonal member waits for its season (R10)
        assert status_of(member_id) == ("inactive" if kind == "seasonal_out" else "active")
    assert assert_every_count_agrees(stack, admin) == 3
    bulk(stack, admin, "activate", imported)
    assert assert_every_count_agrees(stack, admin) == 5
    for member_id in by_invite.values():  # removed: gone, and so is its seat
        act(stack, admin, member_id, "remove")
        assert status_of(member_id) is None
    assert assert_every_count_agrees(stack, admin) == 3
    bulk(stack, admin, "remove", imported)
    assert assert_every_count_agrees(stack, admin) == 1

    # Still invited, then removed and disabled straight from invited: the rest of the matrix.
    waiting = {kind: invite(stack, admin, kind) for kind in KINDS_OF_MEMBER}
    assert assert_every_count_agrees(stack, admin) == 3
    for member_id in waiting.values():
        revoked = stack.api.simulate_delete(
            f"/v1/accounts/{admin.id}/users/{member_id}/invitation", headers=admin.headers)
        assert revoked.status_code == 200, revoked.json
    assert assert_every_count_agrees(stack, admin) == 1
    with session_scope() as session:  # purchased seats never went down on their own (R8)
        assert session.scalar(select(Subscription.seats_purchased)
                              .where(Subscription.account_id == admin.id)) == 100


def test_twenty_invites_racing_for_the_last_three_trial_seats(stack: Stack):
    trial = stack.create_account(plan="trial", seats=10)
    for _ in range(6):
        assert stack.invite(trial, email=fresh_email("early")).status_code == 201
    barrier = threading.Barrier(20)
    answers: list[Any] = [None] * 20

    def race(index: int) -> None:
        barrier.wait()
        answers[index] = stack.invite(trial, email=fresh_email("race"))

    threads = [threading.Thread(target=race, args=(index,)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    codes = Counter(answer.status_code for answer in answers)
    assert codes == {201: 3, 402: 17}
    refusals = [answer.json for answer in answers if answer.status_code == 402]
    assert {refusal["code"] for refusal in refusals} == {"seat_limit"}
    assert all("trial" in refusal["detail"] and "paid plan" in refusal["detail"]
               for refusal in refusals)
    with session_scope() as session:
        assert seats_in_use(session, trial.id, TODAY) == 10


def test_a_trial_that_has_ended_gives_no_seat_and_says_so(stack: Stack):
    trial = stack.create_account(plan="trial", seats=10)
    with session_scope() as session:
        session.execute(update(Subscription).where(Subscription.account_id == trial.id)
                        .values(trial_ends_at=utcnow() - timedelta(minutes=1)))
    refused = stack.invite(trial, email=fresh_email())
    assert refused.status_code == 402, refused.json
    assert refused.json["code"] == "seat_limit" and "trial has ended" in refused.json["detail"]
    assert refused.json["errors"][0]["code"] == "trial_ended"
    assert stack.invite(trial, email=fresh_email(), user_type="free").status_code == 201


def billing_of(stack: Stack, admin: AdminAccount) -> dict[str, Any]:
    answer = stack.api.simulate_get(f"/v1/accounts/{admin.id}/billing", headers=admin.headers)
    assert answer.status_code == 200, answer.json
    return dict(answer.json)


def patch(stack: Stack, admin: AdminAccount, **body: Any) -> Any:
    return stack.api.simulate_patch(f"/v1/accounts/{admin.id}/billing", json=body,
                                    headers=admin.headers)


def events_of(account_id: int, *kinds: str) -> list[tuple[str, int, dict[str, Any]]]:
    with session_scope() as session:
        query = select(BillingEvent.kind, BillingEvent.quantity, BillingEvent.details).where(
            BillingEvent.account_id == account_id).order_by(BillingEvent.id)
        if kinds:
            query = query.where(BillingEvent.kind.in_(kinds))
        return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]


def test_seats_go_up_now_with_a_prorated_charge_and_down_at_the_next_period(stack: Stack):
    admin = stack.create_account(plan="base", seats=3)
    stack.invite(admin, email=fresh_email())
    shown = billing_of(stack, admin)
    assert (shown["plan"], shown["period"], shown["currency"]) == ("base", "monthly", "USD")
    assert shown["seats"] == {"purchased": 3, "used": 2, "seasonal_used": 0, "free_members": 0,
                              "unused": 1}
    preview = stack.api.simulate_get(f"/v1/accounts/{admin.id}/billing/preview",
                                     params={"add": "4"}, headers=admin.headers).json
    # 2 used + 4 = 6: 3 seats to buy for the whole month just started, 15.00 each
    assert (preview["charge_cents"], preview["currency"], preview["days_left"]) == (
        4500, "USD", 30)

    raised = patch(stack, admin, seats=6)
    assert raised.status_code == 200 and raised.json["seats"]["purchased"] == 6
    assert events_of(admin.id, "seats_added")[-1][2]["prorated_charge_cents"] == 4500

    refused = patch(stack, admin, seats=1)
    assert refused.status_code == 409 and refused.json["errors"][0]["field"] == "seats"
    lowered = patch(stack, admin, seats=4)
    assert lowered.status_code == 200, lowered.json
    assert lowered.json["seats"]["purchased"] == 6  # until the period ends
    assert [entry["seats"] for entry in lowered.json["pending"]] == [4]

    upgraded = patch(stack, admin, plan="advanced")  # up: now
    assert upgraded.json["plan"] == "advanced"
    assert events_of(admin.id, "plan_upgraded")[-1][2]["prorated_charge_cents"] == 6 * 1000
    later = patch(stack, admin, plan="base")  # down: at the period's end
    assert later.json["plan"] == "advanced"
    assert {entry["change"] for entry in later.json["pending"]} == {"seats", "plan"}

    with session_scope() as session:  # the period ends
        session.execute(update(Subscription).where(Subscription.account_id == admin.id).values(
            current_period_end=utcnow() - timedelta(minutes=1),
            current_period_start=utcnow() - timedelta(days=30, minutes=1)))
    changes.recalculate_billing(admin.id)
    renewed = billing_of(stack, admin)
    assert (renewed["plan"], renewed["seats"]["purchased"], renewed["pending"]) == ("base", 4, [])
    assert [details["charge_cents"] for _, _, details in events_of(admin.id, "period_renewed")
            ] == [4 * 1500]
    actions = stack.api.simulate_get(f"/v1/accounts/{admin.id}/audit",
                                     params={"action": "billing.change"}, headers=admin.headers)
    assert len(actions.json["items"]) == 4


def test_bad_billing_input_names_the_field(stack: Stack):
    admin = stack.create_account()
    for body, field in (({"seats": "many"}, "seats"), ({"seats": 0}, "seats"),
                        ({"plan": "gold"}, "plan"), ({}, "seats")):
        answer = patch(stack, admin, **body)
        assert answer.status_code == 422, answer.json
        assert answer.json["errors"][0]["field"] == field
    for add in ("x", "0", "-3"):
        answer = stack.api.simulate_get(f"/v1/accounts/{admin.id}/billing/preview",
                                        params={"add": add}, headers=admin.headers)
        assert answer.status_code == 422 and answer.json["errors"][0]["field"] == "add"


def test_billing_view_sees_billing_and_only_admins_change_it(stack: Stack):
    admin = stack.create_account(plan="base", seats=5)
    made = stack.api.simulate_post(f"/v1/accounts/{admin.id}/roles", headers=admin.headers,
                                   json={"name": "Finance", "permissions": ["billing.view"]})
    assert made.status_code == 201, made.json
    _, _, finance = active_member(stack, admin, role="Finance")
    _, _, member = active_member(stack, admin)
    base = f"/v1/accounts/{admin.id}/billing"
    for path in (base, f"{base}/events", f"{base}/seats", f"{base}/preview?add=1"):
        assert stack.api.simulate_get(path, headers=finance).status_code == 200, path
        assert stack.api.simulate_get(path, headers=member).status_code == 403, path
    assert stack.api.simulate_patch(base, json={"seats": 9}, headers=finance).status_code == 403
    assert stack.api.simulate_post(f"{base}/recalculate", headers=finance).status_code == 403
    assert billing_of(stack, admin)["seats"]["purchased"] == 5


def scenario(stack: Stack) -> list[int]:
    """A trial ending in two days, one that ended, a paid period that ended, and one that
    renews in five days with seats left unused: each has events to record."""
    ending, ended = stack.create_account(plan="trial"), stack.create_account(plan="trial")
    paid, renewing = (stack.create_account(plan="pro", seats=5),
                      stack.create_account(plan="base", seats=4))
    now = utcnow()
    with session_scope() as session:
        for account, ends in ((ending, now + timedelta(days=2)), (ended, now - timedelta(days=1))):
            session.execute(update(Subscription).where(Subscription.account_id == account.id)
                            .values(trial_ends_at=ends, current_period_end=ends))
        session.execute(update(Subscription).where(Subscription.account_id == paid.id).values(
            current_period_end=now - timedelta(hours=1),
            current_period_start=now - timedelta(days=30, hours=1)))
        renews_soon(session, renewing.id)
    return [ending.id, ended.id, paid.id, renewing.id]


def renews_soon(session: Session, account_id: int, days: int = 5) -> None:
    now = utcnow()
    session.execute(update(Subscription).where(Subscription.account_id == account_id).values(
        current_period_end=now + timedelta(days=days),
        current_period_start=now + timedelta(days=days - 30)))


def trial_end_as_recorded(account_id: int) -> None:
    """The ``trial_ending`` event names the trial's end, to the microsecond, in ISO 8601."""
    with session_scope() as session:
        details = session.scalar(select(BillingEvent.details).where(
            BillingEvent.account_id == account_id, BillingEvent.kind == "trial_ending"))
        ends_at = session.scalar(select(Subscription.trial_ends_at)
                                 .where(Subscription.account_id == account_id))
    assert details is not None and datetime.fromisoformat(details["trial_ends_at"]) == ends_at


def recorded(account_ids: list[int]) -> Counter[tuple[int, str]]:
    with session_scope() as session:
        return Counter(session.execute(select(BillingEvent.account_id, BillingEvent.kind).where(
            BillingEvent.account_id.in_(account_ids))).all())


def test_the_recalculation_run_twice_or_by_two_workers_at_once_records_each_event_once(
        stack: Stack):
    once = scenario(stack)
    changes.recalculate_billing()
    ending, ended, paid, renewing = once
    expected = Counter({(ending, "trial_ending"): 1, (ended, "trial_ending"): 1,
                        (ended, "trial_expired"): 1, (paid, "period_renewed"): 1,
                        (renewing, "seats_unused"): 1})
    assert recorded(once) == expected
    changes.recalculate_billing()
    assert recorded(once) == expected
    trial_end_as_recorded(ending)

    at_once = scenario(stack)
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            changes.recalculate_billing()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    mapping = dict(zip(once, at_once, strict=True))
    assert recorded(at_once) == Counter({(mapping[account], kind): count
                                         for (account, kind), count in expected.items()})
    with session_scope() as session:  # the period rolled once, not twice
        end = session.scalar(select(Subscription.current_period_end)
                             .where(Subscription.account_id == at_once[2]))
    assert timedelta(days=29) < end - utcnow() < timedelta(days=30)


def test_the_trial_end_is_recorded_in_utc_whatever_the_session_s_time_zone(stack: Stack):
    ending = stack.create_account(plan="trial")
    with session_scope() as session:
        session.execute(update(Subscription).where(Subscription.account_id == ending.id)
                        .values(trial_ends_at=utcnow() + timedelta(days=2, microseconds=7)))
    with engine().connect() as connection, connection.begin():
        connection.execute(text("SET LOCAL TIME ZONE 'America/Sao_Paulo'"))
        recalculation.recalculate(connection, utcnow(), [ending.id])
    trial_end_as_recorded(ending.id)
    with session_scope() as session:
        written = session.scalar(select(BillingEvent.details).where(
            BillingEvent.account_id == ending.id))
    assert written is not None and written["trial_ends_at"].endswith("+00:00")


def test_a_seat_change_that_comes_during_a_renewal_waits_for_it_and_is_kept(stack: Stack):
    """The renewal reads the subscriptions whose period ended, then rolls them. A PATCH
    between the two must not be overwritten by the terms read before it: on PostgreSQL the
    read locks the rows, the PATCH waits for the roll and then applies to the new period."""
    admin = stack.create_account(plan="base", seats=5)
    now = utcnow()
    with session_scope() as session:
        session.execute(update(Subscription).where(Subscription.account_id == admin.id).values(
            current_period_end=now - timedelta(hours=1),
            current_period_start=now - timedelta(days=30, hours=1)))
    answers: list[Any] = []
    raise_seats = threading.Thread(target=lambda: answers.append(patch(stack, admin, seats=8)))
    with engine().connect() as connection, connection.begin():
        scope = recalculation._scope([admin.id])
        renewals, rolls = recalculation._renewals(connection, now, scope)
        raise_seats.start()
        raise_seats.join(timeout=2)
        assert raise_seats.is_alive(), "the PATCH went ahead of the renewal's roll"
        recalculation._record(connection, renewals, now)
        recalculation._roll(connection, rolls)
    raise_seats.join(timeout=60)
    assert answers[0].status_code == 200, answers[0].json
    with session_scope() as session:
        seats, end = session.execute(select(Subscription.seats_purchased,
                                            Subscription.current_period_end)
                                     .where(Subscription.account_id == admin.id)).one()
    assert seats == 8 and end > utcnow() + timedelta(days=29)


def test_on_sqlite_the_recalculation_records_the_same_events_and_snapshots(
        stack: Stack, tmp_path: Path):
    previous = activate({"PROVISIONING_DATABASE_URL": f"sqlite:///{tmp_path / 'bill.sqlite3'}"})
    try:
        upgrade()
        ending, ended, paid, renewing = accounts = scenario(stack)
        expected = Counter({(ending, "trial_ending"): 1, (ended, "trial_ending"): 1,
                            (ended, "trial_expired"): 1, (paid, "period_renewed"): 1,
                            (renewing, "seats_unused"): 1})
        for _ in range(2):
            assert changes.recalculate_billing()["accounts"] == len(accounts)
            assert recorded(accounts) == expected
        trial_end_as_recorded(ending)
        with session_scope() as session:
            renews_at = session.scalar(select(BillingEvent.details["renews_at"].as_string())
                                       .where(BillingEvent.account_id == renewing))
            period_end = session.scalar(select(Subscription.current_period_end)
                                        .where(Subscription.account_id == renewing))
        assert renews_at is not None and datetime.fromisoformat(renews_at) == period_end
        with session_scope() as session:
            snapshots = session.execute(select(
                SeatSnapshot.account_id, SeatSnapshot.purchased, SeatSnapshot.used,
                SeatSnapshot.unused).where(SeatSnapshot.taken_on == utcnow().date())).all()
        assert sorted(snapshots) == sorted([(ending, 10, 1, 9), (ended, 10, 1, 9),
                                            (paid, 5, 1, 4), (renewing, 4, 1, 3)])
    finally:
        deactivate(previous)


def test_a_recalculation_on_demand_is_a_job(stack: Stack):
    admin = stack.create_account(plan="base", seats=4)
    with session_scope() as session:
        renews_soon(session, admin.id)
    answer = stack.api.simulate_post(f"/v1/accounts/{admin.id}/billing/recalculate",
                                     headers=admin.headers)
    assert answer.status_code == 202, answer.json
    done = finished_job(stack, admin, answer.json["job"]["id"])
    assert (done["kind"], done["status"], done["summary"]) == (
        "billing", "succeeded", {"accounts": 1, "events": 1})  # three seats unused
    events = stack.api.simulate_get(f"/v1/accounts/{admin.id}/billing/events",
                                    headers=admin.headers).json["items"]
    assert [(event["kind"], event["quantity"]) for event in events] == [("seats_unused", 3)]


def test_unused_seats_are_noticed_once_a_period_while_the_admin_can_still_lower_them(
        stack: Stack):
    """``seats_unused`` comes in the last days before a renewal
    (``PROVISIONING_BILLING_UNUSED_NOTICE_DAYS``), not earlier; it counts the seats the
    coming period will bill (a lowering already asked for counts), and comes once."""
    early, lowered, soon = (stack.create_account(plan="base", seats=4) for _ in range(3))
    with session_scope() as session:
        renews_soon(session, early.id, days=20)
        for account, pending in ((lowered, 1), (soon, 2)):  # each admin uses one seat
            renews_soon(session, account.id)
            session.execute(update(Subscription).where(Subscription.account_id == account.id)
                            .values(pending_seats=pending))
    changes.recalculate_billing()
    changes.recalculate_billing()
    accounts = [early.id, lowered.id, soon.id]
    assert recorded(accounts) == Counter({(soon.id, "seats_unused"): 1})
    with session_scope() as session:
        event = session.scalars(select(BillingEvent).where(
            BillingEvent.account_id == soon.id)).one()
        renews_at = session.scalar(select(Subscription.current_period_end)
                                   .where(Subscription.account_id == soon.id))
        assert (event.quantity, event.details) == (1, {
            "unused": 1, "seats": 2, "purchased": 4, "used": 1,
            "renews_at": event.details["renews_at"]})
        assert datetime.fromisoformat(event.details["renews_at"]) == renews_at
        snapshot = session.get(SeatSnapshot, (utcnow().date(), early.id))
        assert snapshot is not None and (snapshot.purchased, snapshot.used, snapshot.unused) == (
            4, 1, 3)


def test_a_path_outside_the_seat_statements_marks_its_account_due(stack: Stack):
    admin = stack.create_account(plan="base", seats=3)
    with session_scope() as session:
        due.mark_changed(session, [admin.id])
    with session_scope() as session:  # as if the delay had passed
        marked = session.scalar(select(Subscription.recalc_due_at)
                                .where(Subscription.account_id == admin.id))
        assert marked is not None and marked > utcnow()
        session.execute(update(Subscription).where(Subscription.account_id == admin.id)
                        .values(recalc_due_at=utcnow() - timedelta(seconds=1)))
    changes.recalculate_due_billing()

    def recalculated() -> bool:
        with session_scope() as session:
            count, due_at = session.execute(
                select(Subscription.recalculations, Subscription.recalc_due_at)
                .where(Subscription.account_id == admin.id)).one()
        return count == 1 and due_at is None

    wait_until(recalculated, timeout=30, message="the due account recalculated once")


def test_five_hundred_changes_within_the_delay_make_one_recalculation(stack: Stack):
    admin = stack.create_account(plan="base", seats=600)
    started = time.monotonic()
    for index in range(500):
        answer = stack.invite(admin, email=f"burst{index}.{uuid.uuid4().hex[:6]}@example.com")
        assert answer.status_code == 201, answer.json
    assert time.monotonic() - started < DELAY, "the burst must fit in the delay to mean much"

    def recalculations() -> tuple[int, bool]:
        with session_scope() as session:
            count, due_at = session.execute(
                select(Subscription.recalculations, Subscription.recalc_due_at)
                .where(Subscription.account_id == admin.id)).one()
        return count, due_at is None

    assert recalculations() == (0, False)
    wait_until(lambda: recalculations()[0] >= 1, timeout=DELAY + 60, interval=0.5,
               message="the debounced recalculation")
    assert recalculations() == (1, True)
    with session_scope() as session:
        assert session.scalar(select(SeatSnapshot.used).where(
            SeatSnapshot.account_id == admin.id)) == 501
