"""The email a member gets when records are reassigned to them (R6), in every language (R11)."""

from __future__ import annotations

import pytest

from provisioning.core.validation import LANGUAGES
from provisioning.mail.templates import render_email

# "Tasks" in each language: the kind whose count every rendering below shows.
TASKS_WORD = {"en": "Tasks", "es": "Tareas", "pt-BR": "Tarefas", "id": "Tugas",
              "tr": "Görevler", "ru": "Задачи"}


def context(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "recipient_name": "Bruno Lima", "former_owner_name": "Carla Dias",
        "actor_name": "Ana Souza", "account_name": "Acme Logistics",
        "product_name": "Provisioner", "app_url": "https://app.example.test",
        "leads": 1200, "contacts": 0, "customers": 3, "tasks": 45}
    values.update(changes)
    return values


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_counts_and_names_reach_the_member_in_their_language(language: str) -> None:
    email = render_email("records_reassigned", language, context())

    assert "Carla Dias" in email.subject and "\n" not in email.subject
    for part in (email.text, email.html):
        for text in ("Bruno Lima", "Carla Dias", "Ana Souza", "Acme Logistics", "1200", "45",
                     f"{TASKS_WORD[language]}: 45", "https://app.example.test"):
            assert text in part, (language, text)
    if language != "en":
        english = render_email("records_reassigned", "en", context())
        assert email.subject != english.subject and email.text != english.text


def test_a_kind_that_did_not_move_is_not_listed() -> None:
    email = render_email("records_reassigned", "en", context(leads=0, customers=0))

    assert "Contacts:" not in email.text and "Leads:" not in email.text
    assert "Customers:" not in email.html and "- Tasks: 45" in email.text


def test_names_are_escaped_in_html_and_the_greeting_works_without_one() -> None:
    email = render_email("records_reassigned", "en",
                         context(former_owner_name="<b>Eve</b>", recipient_name=""))

    assert "<b>Eve</b>" not in email.html and "&lt;b&gt;Eve&lt;/b&gt;" in email.html
    assert email.text.startswith("Hello,")
