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
