"""The notification catalog, settings rules and each event's sentence, with no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from provisioning.core.errors import InvalidInput
from provisioning.core.validation import LANGUAGES
from provisioning.mail.templates import render_email
from provisioning.notifications import catalog
from provisioning.notifications.preferences import is_time_zone, preferences_of, read_change

SAMPLE_DETAILS: dict[str, dict[str, object]] = {
    "invitation_accepted": {"member_name": "Bruno", "account_name": "Acme"},
    "participant_added": {"record_name": "Lead #7", "account_name": "Acme"},
    "records_reassigned": {"from_name": "Carla", "count": 12, "account_name": "Acme"},
    "task_assigned": {"task_title": "Call back", "account_name": "Acme"},
    "seats_changed": {"seats": 15, "account_name": "Acme"},
    "incoming_email": {"sender": "Siti", "email_subject": "Quote"},
    "call": {"caller": "Budi"},
}


def test_the_catalog_names_the_events_the_issue_asks_for() -> None:
    assert {"invitation_accepted", "participant_added", "records_reassigned", "task_assigned",
            "seats_changed", "incoming_email", "call"} <= set(catalog.EVENTS)
    assert set(SAMPLE_DETAILS) == set(catalog.EVENTS)
    for event, details in SAMPLE_DETAILS.items():
        assert catalog.missing_details(event, details) == []


@pytest.mark.parametrize("event", sorted(catalog.EVENTS))
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_event_has_its_own_sentence_in_every_language(event: str, language: str) -> None:
    context = {"event": event, "details": SAMPLE_DETAILS[event], "recipient_name": "",
               "product_name": "Provisioner"}
    sentence = render_email("notification", language, context).subject
    others = {render_email("notification", language, {**context, "event": other,
                                                      "details": SAMPLE_DETAILS[other]}).subject
              for other in catalog.EVENTS if other != event}
    assert sentence and sentence not in others
    for value in SAMPLE_DETAILS[event].values():
        assert str(value) in sentence


def test_a_new_member_gets_the_defaults_of_the_spec() -> None:
    defaults = preferences_of(None)
    assert defaults.enabled and defaults.email_mode == "instant"
    assert defaults.channels == {"in_app": True, "email": True, "mobile": False,
                                 "browser": False, "telegram": False}
    assert set(defaults.events) == set(catalog.EVENTS) and all(defaults.events.values())
    assert defaults.time_zone == "UTC" and not defaults.digest_on


def test_a_change_keeps_what_it_does_not_name_and_collects_every_problem() -> None:
    changed = read_change({"events": {"call": False}, "email_mode": "digest"},
                           preferences_of(None))
    assert changed.events["call"] is False and changed.events["task_assigned"] is True
    assert changed.digest_on
    with pytest.raises(InvalidInput) as refused:
        read_change({"digest_time": "7pm", "time_zone": "Nowhere/Town", "enabled": 1},
                     preferences_of(None))
    assert {error.field for error in refused.value.errors} == {"digest_time", "time_zone",
                                                               "enabled"}


@pytest.mark.parametrize(("name", "known"), [
    ("Asia/Jakarta", True), ("America/Sao_Paulo", True), ("UTC", True), ("Europe/Istanbul", True),
    ("", False), ("Mars/Base", False), ("../etc/passwd", False), ("/etc/localtime", False),
    (" UTC", False)])
def test_time_zones_are_iana_names(name: str, known: bool) -> None:
    assert is_time_zone(name) is known


def test_an_unknown_event_is_a_programming_error() -> None:
    from provisioning.notifications.publish import notify

    with pytest.raises(ValueError, match="unknown notification event"):
        notify(Any, 1, "lunch", {})  # type: ignore[arg-type]
