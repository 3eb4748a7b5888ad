"""The one list of notification events and channels, and a new person's settings (SPEC §8).

A service that has something to tell a person calls ``publish.notify`` with one of
``EVENTS`` and the details its sentence names; the sentence itself, in each language, is
in ``templates/email/_events.txt`` (and its HTML copy).
"""

from __future__ import annotations

from types import MappingProxyType

# Each event and the details its sentence needs. ``account_name`` is filled in by
# ``notify`` from the account the event happened in.
EVENTS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType({
    "invitation_accepted": ("member_name", "account_name"),
    "participant_added": ("record_name", "account_name"),
    "records_reassigned": ("from_name", "count", "account_name"),
    "task_assigned": ("task_title", "account_name"),
    "seats_changed": ("seats", "account_name"),
    "incoming_email": ("sender", "email_subject"),
    "call": ("caller",),
})

# Events whose instant email has a template of its own; the others use ``notification``.
EMAIL_TEMPLATES: MappingProxyType[str, str] = MappingProxyType({
    "participant_added": "participant_added",
})

CHANNELS = ("in_app", "email", "mobile", "browser", "telegram")
# The channels that go through a push adapter and the push outbox.
PUSH_CHANNELS = ("mobile", "browser", "telegram")
EMAIL_MODES = ("instant", "digest")

# A new member (SPEC Clarifications): on, every event, in-app and email, instant emails.
DEFAULT_ENABLED = True
DEFAULT_CHANNELS = MappingProxyType({channel: channel in ("in_app", "email")
                                     for channel in CHANNELS})
DEFAULT_EMAIL_MODE = "instant"
DEFAULT_DIGEST_TIME = "09:00"
DEFAULT_TIME_ZONE = "UTC"


def missing_details(event: str, details: dict[str, object]) -> list[str]:
    """The details ``event``'s sentence needs that ``details`` lacks."""
    return [name for name in EVENTS[event] if name not in details]
