"""The emails of a login email change, in every language (R11)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from provisioning.core.validation import LANGUAGES
from provisioning.mail.templates import render_email

LINK = "https://app.example.test/email-change/4be1c0"
CONTEXT = {"name": "Bruno Lima", "old_email": "bruno@old.example", "new_email":
           "bruno@new.example", "expires_at": datetime(2027, 1, 7, 12, 0, tzinfo=UTC),
           "link": LINK, "product_name": "Provisioner"}


@pytest.mark.parametrize("template", ["email_change_confirm", "email_changed_notice"])
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_email_change_email_renders_in_every_language(template: str,
                                                           language: str) -> None:
    email = render_email(template, language, CONTEXT)
    english = render_email(template, "en", CONTEXT)
    assert email.subject and "\n" not in email.subject
    for part in (email.text, email.html):
        assert "bruno@old.example" in part and "bruno@new.example" in part
        assert "Bruno Lima" in part
        assert (LINK in part) == (template == "email_change_confirm")
    if language != "en":
        assert (email.subject, email.text) != (english.subject, english.text)
