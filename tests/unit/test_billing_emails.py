"""What a billing event's email says, read from the event's details when it is announced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from provisioning.billing.announcements import event_context

ENDS_AT = datetime(2027, 1, 7, 12, 0, tzinfo=UTC)
TRIAL_ENDING = {"trial_ends_at": ENDS_AT.isoformat()}


def test_a_trial_ending_email_says_whether_the_trial_has_ended_when_it_is_announced() -> None:
    # A recalculation that never saw the trial ending records the event after its end.
    for now, ended in ((ENDS_AT - timedelta(days=5), False),
                       (ENDS_AT - timedelta(seconds=1), False),
                       (ENDS_AT, True), (ENDS_AT + timedelta(days=2), True)):
        assert event_context("trial_ending", 0, TRIAL_ENDING, now=now) == {
            "trial_ends_at": ENDS_AT.isoformat(), "trial_ended": ended}, now


def test_a_trial_ending_event_without_a_readable_end_makes_no_email() -> None:
    for details in ({}, {"trial_ends_at": "soon"}, {"trial_ends_at": None}):
        assert event_context("trial_ending", 0, details, now=ENDS_AT) is None


RENEWS_AT = "2027-01-07T00:00:00.000000+00:00"  # as the recalculation writes it
SEATS_UNUSED = {"unused": 3, "seats": 12, "purchased": 12, "used": 9, "renews_at": RENEWS_AT}


def test_a_seats_unused_email_says_how_many_seats_nobody_uses_and_the_renewal_day() -> None:
    before = datetime(2027, 1, 2, 9, 30, tzinfo=UTC)
    assert event_context("seats_unused", 3, SEATS_UNUSED, now=before) == {
        "unused": 3, "renews_at": "2027-01-07T00:00:00+00:00"}
    # the day is the renewal's day in UTC, whatever zone the details were written in
    east = {**SEATS_UNUSED, "renews_at": "2027-01-07T02:00:00+03:00"}
    assert event_context("seats_unused", 3, east, now=before) == {
        "unused": 3, "renews_at": "2027-01-06T23:00:00+00:00"}


def test_a_seats_unused_event_without_readable_details_makes_no_email() -> None:
    now = datetime(2027, 1, 2, tzinfo=UTC)
    for details in ({}, {"unused": 3}, {"renews_at": RENEWS_AT},
                    {**SEATS_UNUSED, "unused": None}, {**SEATS_UNUSED, "unused": "some"},
                    {**SEATS_UNUSED, "unused": 0}, {**SEATS_UNUSED, "renews_at": "soon"},
                    {**SEATS_UNUSED, "renews_at": None},
                    {**SEATS_UNUSED, "renews_at": "2027-01-07T00:00:00"}):  # no zone: no day
        assert event_context("seats_unused", 3, details, now=now) is None, details


def test_a_seats_unused_event_announced_after_its_renewal_makes_no_email() -> None:
    # "Lower the seats before then" would come too late; the webhook still gets the event.
    renewal = datetime(2027, 1, 7, tzinfo=UTC)
    for now in (renewal, renewal + timedelta(days=1)):
        assert event_context("seats_unused", 3, SEATS_UNUSED, now=now) is None, now
    assert event_context("seats_unused", 3, SEATS_UNUSED, now=renewal - timedelta(seconds=1))
