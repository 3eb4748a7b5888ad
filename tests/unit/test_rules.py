"""Pure rules, no I/O: seats (R7), invitation states, retry backoff, wake-ups, parsing."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from provisioning.billing.plans import prorated_charge_cents
from provisioning.billing.seats import consumes_seat
from provisioning.core import dispatch
from provisioning.core.config import load_settings
from provisioning.core.errors import InvalidInput
from provisioning.core.pages import decode_cursor, encode_cursor
from provisioning.core.security import hash_secret, invitation_token
from provisioning.core.validation import normalise_email, normalise_language
from provisioning.mail.delivery import retry_delay
from provisioning.members.directory import invitation_state
from provisioning.members.rules import InviteRequest

TODAY = date(2026, 11, 23)


@pytest.mark.parametrize(
    ("user_type", "status", "window", "expected"),
    [
        ("full", "invited", None, True),
        ("full", "active", None, True),
        ("full", "inactive", None, False),
        ("free", "active", None, False),
        ("seasonal", "active", (date(2026, 11, 1), date(2026, 11, 30)), True),
        ("seasonal", "active", (date(2026, 11, 23), date(2026, 11, 23)), True),
        ("seasonal", "active", (date(2026, 12, 1), date(2027, 1, 31)), False),
        ("seasonal", "inactive", (date(2026, 11, 1), date(2026, 11, 30)), False),
        ("seasonal", "invited", None, False),
    ],
)
def test_r7_who_consumes_a_seat(user_type: str, status: str, window: Any, expected: bool):
    start, end = window or (None, None)
    assert consumes_seat(user_type, status, start, end, TODAY) is expected


def _invitation(**values: Any) -> Any:
    base = {"accepted_at": None, "revoked_at": None, "membership_id": 7,
            "expires_at": datetime(2026, 11, 30, tzinfo=UTC)}
    return SimpleNamespace(**{**base, **values})


def test_invitation_state_follows_the_email_until_accepted_revoked_or_expired():
    now = datetime(2026, 11, 23, tzinfo=UTC)
    assert invitation_state(_invitation(), "queued", now) == "queued"
    assert invitation_state(_invitation(), "sending", now) == "queued"
    assert invitation_state(_invitation(), "deferred", now) == "deferred"
    assert invitation_state(_invitation(), "sent", now) == "sent"
    assert invitation_state(_invitation(), "failed", now) == "failed"
    assert invitation_state(_invitation(expires_at=now), "sent", now) == "expired"
    assert invitation_state(_invitation(revoked_at=now), "sent", now) == "revoked"
    assert invitation_state(_invitation(membership_id=None), "sent", now) == "revoked"
    assert invitation_state(_invitation(accepted_at=now, expires_at=now), "sent", now) == \
        "accepted"


def test_retry_delay_grows_with_jitter_and_stays_under_the_ceiling():
    config = load_settings()
    delays = [[retry_delay(attempt, config) for _ in range(200)] for attempt in range(1, 15)]
    assert all(config.outbox_retry_base_seconds / 2 <= d <= config.outbox_retry_max_seconds
               for row in delays for d in row)
    assert len(set(delays[3])) > 150, "jitter spreads the retries"
    assert max(delays[1]) < max(delays[6])
    assert config.outbox_retry_max_seconds < config.broker_visibility_timeout


def test_the_push_and_webhook_backoff_doubles_in_its_upper_half_up_to_the_most():
    for attempts, low, high in ((1, 15, 30), (2, 30, 60), (3, 50, 100), (9, 50, 100)):
        delays = [dispatch.backoff_seconds(attempts, 30, 100) for _ in range(200)]
        assert all(low <= d <= high for d in delays), attempts
        assert len(set(delays)) > 150, "jitter spreads the retries"


def test_debounced_wake_up_always_follows_the_last_call():
    sent: list[float] = []
    previous = dispatch.use_sender(lambda name, args, options: sent.append(time.monotonic()))
    try:
        wake = dispatch.Debounced("provisioning.send_emails", window=0.05)
        calls = []
        for _ in range(200):
            calls.append(time.monotonic())
            wake()
        done = threading.Event()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (sent and sent[-1] >= calls[-1]):
            done.wait(0.01)
        assert sent[-1] >= calls[-1], "a send happens after the last call"
        assert 1 <= len(sent) <= 3, f"200 calls in a burst give few sends, got {len(sent)}"
    finally:
        dispatch.use_sender(previous)


def test_invitation_tokens_derive_from_the_secret_and_are_stored_hashed():
    token = invitation_token("secret-a", "nonce")
    assert len(token) == 64 and token != invitation_token("secret-b", "nonce")
    assert token != invitation_token("secret-a", "other nonce")
    assert hash_secret(token) != token and len(hash_secret(token)) == 64


def test_cursor_round_trip_and_garbage():
    assert decode_cursor(encode_cursor(12345)) == 12345
    assert decode_cursor(None) is None
    for bad in ("!!!", "aWQ6eA", encode_cursor(1)[:-2] + "zz"):
        with pytest.raises(InvalidInput) as refused:
            decode_cursor(bad)
        assert refused.value.errors[0].field == "cursor"


def test_emails_are_trimmed_and_case_folded_and_languages_normalised():
    assert normalise_email("  Ana.Silva@Example.COM ") == "ana.silva@example.com"
    assert normalise_language("PT-br") == "pt-BR"
    assert normalise_language("pt_BR") == "pt-BR"
    with pytest.raises(InvalidInput):
        normalise_language("fr")


def test_invite_request_names_every_bad_field():
    with pytest.raises(InvalidInput) as refused:
        InviteRequest.parse({"email": "nope", "user_type": "seasonal", "language": "xx",
                             "seasonal_start": "31/12/2026"})
    fields = {error.field for error in refused.value.errors}
    assert fields == {"email", "language", "seasonal_start", "seasonal_end"}
    with pytest.raises(InvalidInput) as backwards:
        InviteRequest.parse({"email": "a@example.com", "user_type": "seasonal",
                             "seasonal_start": "2026-12-31", "seasonal_end": "2026-12-01"})
    assert [e.field for e in backwards.value.errors] == ["seasonal_end"]
    request = InviteRequest.parse({"email": " A@Example.com ", "seasonal_start": None})
    assert (request.email, request.role, request.user_type) == ("a@example.com", "member", "full")
    assert request.seasonal_start is None


@pytest.mark.parametrize(("period", "days", "months"), [("monthly", 30, 1), ("annual", 365, 12)])
def test_r8_seats_bought_mid_period_cost_what_is_left_of_that_period(period: str, days: int,
                                                                       months: int):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    subscription = SimpleNamespace(plan="base", period=period, current_period_start=start,
                                   current_period_end=start + timedelta(days=days))
    halfway = start + timedelta(days=days // 2, hours=12)  # day-based: the hour does not count
    left = days - days // 2
    # base: 15.00 a seat a month; three seats for the days left, rounded half up once
    assert prorated_charge_cents(subscription, 3, halfway) == int(
        Decimal(1500 * months * 3 * left) / days + Decimal("0.5"))
    assert prorated_charge_cents(subscription, 3, start) == 1500 * months * 3
    assert prorated_charge_cents(subscription, 3, start + timedelta(days=days + 1)) == 0
    assert prorated_charge_cents(subscription, 0, halfway) == 0
