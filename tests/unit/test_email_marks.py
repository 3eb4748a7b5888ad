"""Outcomes of sent emails are marked in small groups: when a group is written, and what a
failed write means for the emails still being sent."""

from __future__ import annotations

import threading

import pytest

from provisioning.mail.delivery import DeliveryReport, GroupedMarks, MarkingFailed, Outcome
from provisioning.mail.models import EmailStatus
from tests.support.processes import wait_until


def sent(row_id: int) -> Outcome:
    return Outcome(row_id, "claim", EmailStatus.SENT, {"provider_response": "250 Ok"})


class Database:
    """Stands in for the outbox table: keeps each written group, fails when told to."""

    def __init__(self, *, fail_on_group: int | None = None) -> None:
        self.groups: list[list[int]] = []
        self.fail_on_group = fail_on_group
        self.lock = threading.Lock()

    def write(self, group: list[Outcome]) -> None:
        with self.lock:
            if len(self.groups) + 1 == self.fail_on_group:
                raise ConnectionError("the database went away")
            self.groups.append([outcome.row_id for outcome in group])

    def marked(self) -> list[int]:
        with self.lock:
            return [row_id for group in self.groups for row_id in group]


def test_a_full_group_is_written_at_once_and_the_rest_on_close() -> None:
    database = Database()
    marks = GroupedMarks(database.write, DeliveryReport(), size=3, interval=3600)
    for row_id in range(1, 8):
        marks.record(sent(row_id))
    wait_until(lambda: len(database.groups) == 2, message="two full groups written")
    assert database.groups == [[1, 2, 3], [4, 5, 6]]
    marks.close()
    assert database.groups[-1] == [7]


def test_a_group_that_waited_its_interval_is_written_without_being_full() -> None:
    database = Database()
    marks = GroupedMarks(database.write, DeliveryReport(), size=1000, interval=0.01)
    marks.record(sent(1))
    wait_until(lambda: database.marked() == [1], message="the lone outcome written")
    marks.close()
    assert database.groups == [[1]]


def test_closing_with_nothing_recorded_writes_nothing() -> None:
    database = Database()
    GroupedMarks(database.write, DeliveryReport(), size=3, interval=0.01).close()
    assert database.groups == []


def test_after_a_failed_write_no_more_is_sent_and_close_says_so() -> None:
    database = Database(fail_on_group=2)
    marks = GroupedMarks(database.write, DeliveryReport(), size=2, interval=3600)
    for row_id in (1, 2, 3, 4):
        marks.record(sent(row_id))

    def refused() -> bool:
        try:
            marks.record(sent(5))
        except MarkingFailed:
            return True
        return False

    # The connections stop: whatever they sent now could not be marked either.
    wait_until(refused, message="recording to be refused after the failed write")
    with pytest.raises(MarkingFailed):
        marks.close()
    # The group written before the failure stays marked; 3 and 4 stay claimed
    # until the lease runs out, then go again under their own Message-IDs.
    assert database.marked() == [1, 2]


def test_the_report_tallies_each_outcome_and_the_longest_retry() -> None:
    report = DeliveryReport()
    marks = GroupedMarks(Database().write, report, size=10, interval=3600)
    marks.record(sent(1))
    marks.record(Outcome(2, "claim", EmailStatus.FAILED, {"last_error": "550 no"}))
    marks.record(Outcome(3, "claim", EmailStatus.DEFERRED, {"last_error": "451"}, retry_in=7.0))
    marks.record(Outcome(4, "claim", EmailStatus.DEFERRED, {"last_error": "451"}, retry_in=2.0))
    marks.close()
    assert (report.sent, report.failed, report.deferred) == ([1], [2], [3, 4])
    assert report.retry_in == 7.0
