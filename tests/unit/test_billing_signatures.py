"""What a receiver checks of a billing webhook: ``verify_signature`` accepts the body signed with
the shared secret within the tolerance, and nothing else."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from provisioning.billing.webhooks import sign, verify_signature, webhook_body

SECRET = "whsec_unit"
SENT_AT = 1_800_000_000
BODY = webhook_body(42, "seats_added", 7, datetime(2027, 1, 7, 12, 0, tzinfo=UTC),
                    {"from": 10, "to": 11, "prorated_charge_cents": 750})


def test_the_header_is_stripe_style_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{SENT_AT}.".encode() + BODY,
                        hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, SENT_AT) == f"t={SENT_AT},v1={expected}"


def test_the_body_carries_the_event_as_documented() -> None:
    assert BODY == (b'{"account_id":7,"created_at":"2027-01-07T12:00:00+00:00","data":'
                    b'{"from":10,"prorated_charge_cents":750,"to":11},"id":42,'
                    b'"type":"seats_added"}')


def test_a_signed_body_within_the_tolerance_verifies() -> None:
    header = sign(SECRET, BODY, SENT_AT)
    assert verify_signature(SECRET, header, BODY, 300, now=SENT_AT + 299)
    assert verify_signature(SECRET, header, BODY, 300, now=SENT_AT - 299)  # clocks drift


@pytest.mark.parametrize("case", ["tampered body", "other secret", "too old", "no header",
                                  "no signature", "no timestamp", "other scheme",
                                  "timestamp changed"])
def test_anything_else_does_not_verify(case: str) -> None:
    header = sign(SECRET, BODY, SENT_AT)
    digest = header.split("v1=")[1]
    secret, body, now = SECRET, BODY, float(SENT_AT)
    given: str | None = header
    if case == "tampered body":
        body = BODY.replace(b"750", b"75")
    elif case == "other secret":
        secret = "whsec_other"
    elif case == "too old":
        now = SENT_AT + 301
    elif case == "no header":
        given = None
    elif case == "no signature":
        given = f"t={SENT_AT}"
    elif case == "no timestamp":
        given = f"v1={digest}"
    elif case == "other scheme":
        given = f"t={SENT_AT},v0={digest}"
    elif case == "timestamp changed":
        given = f"t={SENT_AT + 1},v1={digest}"
    assert not verify_signature(secret, given, body, 300, now=now)


def test_any_of_several_signatures_may_match_during_a_change_of_secret() -> None:
    header = sign(SECRET, BODY, SENT_AT)
    rotated = f"t={SENT_AT},v1={'0' * 64},{header.split(',')[1]}"
    assert verify_signature(SECRET, rotated, BODY, 300, now=SENT_AT)
