"""The two invitation emails (R3) in every language (R11)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from jinja2 import Environment, UndefinedError, meta

from provisioning.core.validation import LANGUAGES
from provisioning.mail.templates import (
    DEFAULT_TEMPLATES_DIR,
    PARTS,
    RenderedEmail,
    _environment,
    _render,
    render_email,
)

TEMPLATES = ("invite_new", "invite_existing")
TRANSLATED = tuple(language for language in LANGUAGES if language != "en")
LINK = "https://app.example.test/invitations/9f3c1e7a"
LOGIN = "bruno.lima@example.test"
EXPIRES_AT = datetime(2027, 1, 7, 12, 0, tzinfo=UTC)

# How each language greets, by name and without one.
GREETING = {
    "en": ("Hi Bruno Lima,", "Hello,"),
    "es": ("Hola, Bruno Lima:", "Hola:"),
    "pt-BR": ("Olá, Bruno Lima!", "Olá!"),
    "id": ("Halo Bruno Lima,", "Halo,"),
    "tr": ("Merhaba Bruno Lima,", "Merhaba,"),
    "ru": ("Здравствуйте, Bruno Lima!", "Здравствуйте!"),
}
# "invitation" in each translation (a stem where the word declines).
INVITATION_WORD = {
    "es": "invitación", "pt-BR": "convite", "id": "undangan", "tr": "davet", "ru": "приглаш",
}
# "Your login and password stay unchanged", as each translation says it.
UNCHANGED = {
    "en": "login and password stay unchanged",
    "es": "no cambian",
    "pt-BR": "continuam os mesmos",
    "id": "tetap sama",
    "tr": "aynı kalıyor",
    "ru": "остаются прежними",
}
# The word for password, and the verb for setting (creating) one.
PASSWORD_WORD = {
    "en": "password", "es": "contraseña", "pt-BR": "senha", "id": "kata sandi", "tr": "şifre",
    "ru": "парол",
}
SET_WORD = {
    "en": "set", "es": "crear", "pt-BR": "criar", "id": "buat", "tr": "belirle", "ru": "задать",
}
LONG_DATE = {
    "en": "January 7, 2027", "es": "7 de enero de 2027", "pt-BR": "7 de janeiro de 2027",
    "id": "7 Januari 2027", "tr": "7 Ocak 2027", "ru": "7 января 2027",
}


def invitation(**changes: object) -> dict[str, object]:
    context: dict[str, object] = {
        "account_name": "Acme Logistics",
        "inviter_name": "Ana Souza",
        "invitee_name": "Bruno Lima",
        "email": LOGIN,
        "link": LINK,
        "expires_at": EXPIRES_AT,
        "product_name": "Provisioner",
    }
    context.update(changes)
    return context


def visible_lines(html: str) -> list[str]:
    """The HTML part's text as a reader sees it, one paragraph per line."""
    body = html.split("<body", 1)[1]
    return [" ".join(line.split()) for line in re.sub(r"<[^>]+>", " ", body).splitlines()]


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_renders_both_emails(template: str, language: str) -> None:
    email = render_email(template, language, invitation())

    assert email.subject and "\n" not in email.subject and email.subject == email.subject.strip()
    assert f'<html lang="{language}"' in email.html
    assert f"<title>{email.subject}</title>" in email.html
    for part in (email.text, email.html):
        assert LINK in part
        assert LOGIN in part
        assert "Ana Souza" in part
        assert "Acme Logistics" in part
        assert LONG_DATE[language] in part


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_differ_from_english_and_are_in_the_language(
    template: str, language: str
) -> None:
    english = render_email(template, "en", invitation())
    translated = render_email(template, language, invitation())

    assert translated.subject != english.subject
    assert translated.text != english.text
    assert translated.html != english.html
    assert INVITATION_WORD[language] in translated.text.casefold()
    assert INVITATION_WORD[language] in translated.html.casefold()


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("language", LANGUAGES)
def test_invitee_is_greeted_by_name_when_given(template: str, language: str) -> None:
    by_name, generic = GREETING[language]

    named = render_email(template, language, invitation())
    assert named.text.splitlines()[0] == by_name
    assert f">{by_name}</p>" in named.html

    for unnamed in (None, ""):
        email = render_email(template, language, invitation(invitee_name=unnamed))
        assert email.text.splitlines()[0] == generic
        assert f">{generic}</p>" in email.html


@pytest.mark.parametrize("language", LANGUAGES)
def test_existing_identity_keeps_its_login_and_password(language: str) -> None:
    existing = render_email("invite_existing", language, invitation())
    new = render_email("invite_new", language, invitation())

    assert UNCHANGED[language] in existing.text
    assert UNCHANGED[language] in existing.html
    assert UNCHANGED[language] not in new.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_new_identity_mentions_a_password_only_to_set_one(language: str) -> None:
    email = render_email("invite_new", language, invitation())

    mentions = [
        line.casefold()
        for line in email.text.splitlines() + visible_lines(email.html)
        if PASSWORD_WORD[language] in line.casefold()
    ]
    assert len(mentions) >= 2, "the text link and the HTML button both say what they are for"
    assert all(SET_WORD[language] in line for line in mentions)


def test_no_template_asks_for_a_password() -> None:
    parser = Environment(extensions=["jinja2.ext.i18n"])
    for name in ("format_datetime", "format_date", "format_money"):
        parser.filters[name] = str
    sources = sorted((DEFAULT_TEMPLATES_DIR / "email").rglob("*.*"))
    names: set[str] = set()
    for source in sources:
        if source.suffix in (".txt", ".html"):
            names |= meta.find_undeclared_variables(parser.parse(source.read_text("utf-8")))

    assert {"account_name", "inviter_name", "invitee_name", "email", "link"} <= names
    assert not [name for name in names if "password" in name.lower()]


@pytest.mark.parametrize("template", TEMPLATES)
def test_markup_in_names_is_escaped_in_html(template: str) -> None:
    email = render_email(
        template,
        "en",
        invitation(
            inviter_name="<script>alert(1)</script>",
            invitee_name='<img src=x onerror="alert(2)">',
            account_name="R&D <Team>",
        ),
    )

    assert "<script>" not in email.html and "<img" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "R&amp;D &lt;Team&gt;" in email.html
    # The text part is not HTML: it shows the name as typed.
    assert "<script>alert(1)</script>" in email.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_subject_stays_one_line_whatever_the_names(language: str) -> None:
    email = render_email(
        "invite_new", language, invitation(inviter_name="Ana\r\nBcc: all@example.test")
    )

    assert "\r" not in email.subject and "\n" not in email.subject
    assert "Ana Bcc: all@example.test" in email.subject


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("language", LANGUAGES)
def test_an_inviter_without_a_name_still_reads_well(template: str, language: str) -> None:
    named = render_email(template, language, invitation())
    anonymous = render_email(template, language, invitation(inviter_name=""))

    assert anonymous.subject != named.subject
    assert "Acme Logistics" in anonymous.subject
    assert not anonymous.subject.startswith(" ")
    assert "  " not in anonymous.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_expiry_is_written_the_way_the_language_writes_dates(language: str) -> None:
    from_datetime = render_email("invite_new", language, invitation())
    # The outbox keeps its context as JSON, so the expiry may arrive as ISO 8601 text.
    from_text = render_email("invite_new", language, invitation(expires_at=EXPIRES_AT.isoformat()))

    assert LONG_DATE[language] in from_datetime.text
    assert "UTC" in from_datetime.text
    assert from_text == from_datetime


def test_the_same_instant_reads_in_its_own_zone_and_seconds_never_show() -> None:
    # Each formatted minute is kept: equal instants in other zones must not share it.
    three_hours_east = EXPIRES_AT.astimezone(timezone(timedelta(hours=3)))
    utc = render_email("invite_new", "en", invitation()).text
    east = render_email("invite_new", "en", invitation(expires_at=three_hours_east)).text
    seconds_later = render_email(
        "invite_new", "en", invitation(expires_at=EXPIRES_AT + timedelta(seconds=59))
    ).text
    assert "12:00\u202fPM UTC" in utc
    assert "3:00\u202fPM +0300" in east
    assert seconds_later == utc


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        render_email("invite_new", "fr", invitation())
    with pytest.raises(ValueError):
        render_email("invite_new", "pt_BR", invitation())


def test_unknown_template_is_a_clear_error() -> None:
    with pytest.raises(LookupError, match="no email template 'invite_nobody'"):
        render_email("invite_nobody", "en", invitation())
    with pytest.raises(LookupError):
        render_email("_layout", "en", invitation())


def test_a_missing_context_value_is_an_error_not_a_blank() -> None:
    context = invitation()
    del context["link"]

    with pytest.raises(UndefinedError, match="link"):
        render_email("invite_new", "es", context)


@pytest.mark.parametrize("language", TRANSLATED)
def test_catalog_translates_every_message_with_the_same_placeholders(language: str) -> None:
    folder = language.replace("-", "_")
    path = DEFAULT_TEMPLATES_DIR / "locale" / folder / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po_file:
        catalog = read_po(po_file)
    with (DEFAULT_TEMPLATES_DIR / "locale" / "messages.pot").open("rb") as pot_file:
        template_ids = {message.id for message in read_po(pot_file) if message.id}

    messages = [message for message in catalog if message.id]
    assert {message.id for message in messages} == template_ids
    for message in messages:
        assert not message.fuzzy, f"{language}: {message.id!r} is fuzzy"
        # A plural message has a form for each of the language's plural forms, all translated.
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.pluralizable:
            assert len(forms) == catalog.num_plurals, f"{language}: {message.id!r}"
        placeholders = sorted(re.findall(r"%\(\w+\)s", str(ids[-1])))
        for form in forms:
            assert form, f"{language}: {message.id!r} is not translated"
            assert sorted(re.findall(r"%\(\w+\)s", str(form))) == placeholders


def rendered_by_jinja_i18n(template: str, language: str, context: dict[str, object],
                           templates_dir: Path = DEFAULT_TEMPLATES_DIR) -> RenderedEmail:
    """The email as Jinja's own i18n extension renders it, translating at every render."""
    reference = _environment(language, templates_dir, compile_translations=False)
    return _render([reference.get_template(f"email/{template}/{part}") for part in PARTS],
                   context)


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_compiled_into_templates_render_as_jinja_translates_at_render(
        template: str, language: str) -> None:
    contexts = [
        invitation(),
        invitation(invitee_name="", inviter_name=""),
        invitation(invitee_name='<b>Tom & "Jerry"</b> 100% %(x)s', account_name="R&D <Team>",
                   inviter_name="Zoë 50%%", link=LINK + "?a=1&b=<2>"),
        invitation(invitee_name="José  Núñez\nda Silva", expires_at=EXPIRES_AT.isoformat()),
    ]
    for context in contexts:
        assert render_email(template, language, context) == rendered_by_jinja_i18n(
            template, language, context)


def test_percent_signs_and_variables_in_a_trans_block_compile_as_gettext_formats_them(
        tmp_path: Path) -> None:
    folder = tmp_path / "email" / "offer"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("{% trans %}100% off for {{ who }}{% endtrans %}")
    block = ("{% trans n=count|string %}{{ who }}: {{ n }}% of {{ n }}%, %(n)s stays{% endtrans %}")
    (folder / "body.txt").write_text(block + "\n")  # trim_blocks takes the newline
    (folder / "body.html").write_text("<p>" + block + "</p>\n")
    context = {"who": "<Ana & Bo>", "count": 30}

    compiled = render_email("offer", "en", context, templates_dir=tmp_path)

    assert compiled == rendered_by_jinja_i18n("offer", "en", context, tmp_path)
    assert compiled.subject == "100% off for <Ana & Bo>"
    assert compiled.text == "<Ana & Bo>: 30% of 30%, %(n)s stays"
    assert compiled.html == "<p>&lt;Ana &amp; Bo&gt;: 30% of 30%, %(n)s stays</p>\n"
    # and the translating happened when the templates compiled: no gettext call is left
    environment = _environment("en", tmp_path)
    for part in PARTS:
        source = (folder / part).read_text()
        assert "gettext" not in str(environment.compile(source, raw=True))


# A sample context for every email in templates/email/: a new email needs one here.
SAMPLE_CONTEXTS: dict[str, dict[str, object]] = {
    "invite_new": invitation(),
    "invite_existing": invitation(),
    "notification": {"event": "invitation_accepted", "recipient_name": "Ana Souza",
                     "details": {"member_name": "Bruno Lima", "account_name": "Acme Logistics"},
                     "product_name": "Provisioner"},
    **{name: {"name": "Ana Souza", "old_email": "ana@old.example", "new_email":
              "ana@new.example", "expires_at": datetime(2027, 1, 7, 12, 0, tzinfo=UTC),
              "link": "https://app.example.test/email-change/4be1c0",
              "product_name": "Provisioner"}
       for name in ("email_change_confirm", "email_changed_notice")},
    "participant_added": {"event": "participant_added", "recipient_name": "Ana Souza",
                          "details": {"record_name": "Big deal", "account_name": "Acme Logistics"},
                          "product_name": "Provisioner", "app_url": "https://app.example.test"},
    "records_reassigned": {"recipient_name": "Ana Souza", "former_owner_name": "Carla Dias",
                           "actor_name": "Bruno Lima", "account_name": "Acme Logistics",
                           "product_name": "Provisioner", "app_url": "https://app.example.test",
                           "leads": 1200, "contacts": 0, "customers": 3, "tasks": 45},
    "seats_increased": {"recipient_name": "Ana Souza", "account_name": "Acme Logistics",
                        "product_name": "Provisioner", "billing_url":
                        "https://app.example.test/settings/billing", "seats_added": 2,
                        "seats_total": 12, "charge_cents": 123450, "currency": "USD"},
    "trial_ending": {"recipient_name": "Ana Souza", "account_name": "Acme Logistics",
                     "product_name": "Provisioner", "billing_url":
                     "https://app.example.test/settings/billing",
                     "trial_ends_at": "2027-01-07T12:00:00+00:00", "trial_ended": False},
    "seats_unused": {"recipient_name": "Ana Souza", "account_name": "Acme Logistics",
                     "product_name": "Provisioner", "billing_url":
                     "https://app.example.test/settings/billing", "unused": 3,
                     "renews_at": "2027-01-07T00:00:00+00:00"},
    "digest": {"recipient_name": "Ana Souza", "count": 2, "day": "7 January 2027",
               "digest_time": "09:00", "time_zone": "Asia/Jakarta", "product_name": "Provisioner",
               "entries": [{"time": "08:10", "text": "Bruno Lima accepted your invitation"},
                           {"time": "08:45", "text": "Incoming call from Budi"}]},
}


def _email_folders() -> list[str]:
    return sorted(path.name for path in (DEFAULT_TEMPLATES_DIR / "email").iterdir()
                  if path.is_dir() and not path.name.startswith("_"))


def test_every_email_folder_has_a_sample_context() -> None:
    assert _email_folders() == sorted(SAMPLE_CONTEXTS)


@pytest.mark.parametrize("template", _email_folders())
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_email_in_the_templates_folder_renders_in_every_language(
        template: str, language: str) -> None:
    email = render_email(template, language, SAMPLE_CONTEXTS[template])

    assert email.subject and "\n" not in email.subject
    assert email.text.strip() and f'<html lang="{language}"' in email.html
    assert "Ana Souza" in email.text and "Ana Souza" in email.html
    if language != "en":
        english = render_email(template, "en", SAMPLE_CONTEXTS[template])
        assert email.subject != english.subject and email.text != english.text


# The prorated charge of 1,234.50 US dollars as each language writes money.
CHARGE = {
    "en": "$1,234.50", "es": "1.234,50\xa0US$", "pt-BR": "US$\xa01.234,50", "id": "US$1.234,50",
    "tr": "$1.234,50", "ru": "1\xa0234,50\xa0$",
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_seats_increased_says_what_was_bought_and_the_charge_in_the_readers_money(
        language: str) -> None:
    email = render_email("seats_increased", language, SAMPLE_CONTEXTS["seats_increased"])

    for part in (email.text, email.html):
        assert CHARGE[language] in part
        assert "2" in part and "12" in part
        assert "https://app.example.test/settings/billing" in part
    assert "12" in email.subject and "Acme Logistics" in email.subject


@pytest.mark.parametrize("language", LANGUAGES)
def test_trial_ending_gives_the_day_and_asks_for_a_plan(language: str) -> None:
    email = render_email("trial_ending", language, SAMPLE_CONTEXTS["trial_ending"])

    assert LONG_DATE[language] in email.subject
    for part in (email.text, email.html):
        assert LONG_DATE[language] in part
        assert "https://app.example.test/settings/billing" in part


# The trial's end as each language says it, to come and past: the email is sent whenever a
# recalculation sees the end near (the days before it are a setting) or already past.
TRIAL_ENDS = {
    "en": "The Provisioner trial of Acme Logistics ends on January 7, 2027.",
    "es": "La prueba de Provisioner de Acme Logistics termina el 7 de enero de 2027.",
    "pt-BR": "O período de teste do Provisioner para Acme Logistics termina em 7 de janeiro de "
             "2027.",
    "id": "Masa uji coba Provisioner untuk Acme Logistics berakhir pada 7 Januari 2027.",
    "tr": "Acme Logistics için Provisioner deneme süresi 7 Ocak 2027 tarihinde bitiyor.",
    "ru": "7 января 2027 г. закончится пробный период Provisioner для Acme Logistics.",
}
TRIAL_ENDED = {
    "en": ("The trial of Acme Logistics ended on January 7, 2027",
           "The Provisioner trial of Acme Logistics ended on January 7, 2027."),
    "es": ("La prueba de Acme Logistics terminó el 7 de enero de 2027",
           "La prueba de Provisioner de Acme Logistics terminó el 7 de enero de 2027."),
    "pt-BR": ("O período de teste de Acme Logistics terminou em 7 de janeiro de 2027",
              "O período de teste do Provisioner para Acme Logistics terminou em 7 de janeiro "
              "de 2027."),
    "id": ("Masa uji coba Acme Logistics telah berakhir pada 7 Januari 2027",
           "Masa uji coba Provisioner untuk Acme Logistics telah berakhir pada 7 Januari 2027."),
    "tr": ("Acme Logistics deneme süresi 7 Ocak 2027 tarihinde bitti",
           "Acme Logistics için Provisioner deneme süresi 7 Ocak 2027 tarihinde bitti."),
    "ru": ("Пробный период Acme Logistics закончился 7 января 2027 г.",
           "7 января 2027 г. закончился пробный период Provisioner для Acme Logistics."),
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_trial_ending_says_the_day_the_trial_ends_or_ended_and_no_count_of_days(
        language: str) -> None:
    ending = render_email("trial_ending", language, SAMPLE_CONTEXTS["trial_ending"])
    ended = render_email("trial_ending", language,
                         {**SAMPLE_CONTEXTS["trial_ending"], "trial_ended": True})
    subject, sentence = TRIAL_ENDED[language]

    assert TRIAL_ENDS[language] in " ".join(ending.text.split())  # as one line, plain spaces
    assert TRIAL_ENDS[language] in visible_lines(ending.html)
    assert ended.subject == subject
    assert sentence in " ".join(ended.text.split()) and sentence in visible_lines(ended.html)
    for email in (ending, ended):
        assert not re.search(r"\b3\b", email.subject + email.text + email.html)
    assert "https://app.example.test/settings/billing" in ended.text
    # an email queued before its context said whether the trial had ended
    queued_before = {name: value for name, value in SAMPLE_CONTEXTS["trial_ending"].items()
                     if name != "trial_ended"}
    assert render_email("trial_ending", language, queued_before) == ending


# Three of the seats the coming period bills are not used, the period renewing on January 7,
# 2027, as each language says it (subject, then the body's sentence).
SEATS_UNUSED = {
    "en": ("Acme Logistics renews on January 7, 2027 with 3 unused seats",
           "The Provisioner subscription of Acme Logistics renews on January 7, 2027 with 3 "
           "seats that nobody uses."),
    "es": ("Acme Logistics se renueva el 7 de enero de 2027 con 3 licencias sin usar",
           "La suscripción de Provisioner de Acme Logistics se renueva el 7 de enero de 2027 "
           "con 3 licencias que nadie usa."),
    "pt-BR": ("A assinatura de Acme Logistics será renovada em 7 de janeiro de 2027 com 3 "
              "licenças sem uso",
              "A assinatura do Provisioner para Acme Logistics será renovada em 7 de janeiro de "
              "2027 com 3 licenças que ninguém usa."),
    "id": ("Acme Logistics diperpanjang pada 7 Januari 2027 dengan 3 lisensi yang tidak terpakai",
           "Langganan Provisioner untuk Acme Logistics diperpanjang pada 7 Januari 2027 dengan "
           "3 lisensi yang tidak digunakan siapa pun."),
    "tr": ("Acme Logistics, 7 Ocak 2027 tarihinde 3 kullanılmayan lisansla yenileniyor",
           "Acme Logistics için Provisioner aboneliği 7 Ocak 2027 tarihinde, kimsenin "
           "kullanmadığı 3 lisansla yenileniyor."),
    "ru": ("Acme Logistics: продление 7 января 2027 г., 3 места не используются",
           "7 января 2027 г. будет продлена подписка Provisioner для Acme Logistics, и в ней 3 "
           "места, которые никто не использует."),
}
# The advice to lower the seats before the renewal, a phrase of it in each language.
LOWER_SEATS = {
    "en": "If you lower the seats on the billing page before then",
    "es": "Si reduces las licencias en la página de facturación antes de esa fecha",
    "pt-BR": "Se você reduzir as licenças na página de cobrança antes disso",
    "id": "Jika Anda mengurangi lisensi di halaman penagihan sebelum tanggal itu",
    "tr": "Lisansları o tarihten önce faturalandırma sayfasından azaltırsanız",
    "ru": "Если уменьшить число мест на странице оплаты до этой даты",
}
# The seat count's words for 1, 2, 5 and 21 unused seats: Russian has three plural forms.
SEAT_FORMS = {
    "en": ("1 unused seat", "2 unused seats", "5 unused seats", "21 unused seats"),
    "es": ("1 licencia sin usar", "2 licencias sin usar", "5 licencias sin usar",
           "21 licencias sin usar"),
    "pt-BR": ("1 licença sem uso", "2 licenças sem uso", "5 licenças sem uso",
              "21 licenças sem uso"),
    "id": ("1 lisensi", "2 lisensi", "5 lisensi", "21 lisensi"),
    "tr": ("1 kullanılmayan lisansla", "2 kullanılmayan lisansla", "5 kullanılmayan lisansla",
           "21 kullanılmayan lisansla"),
    "ru": ("1 место не используется", "2 места не используются", "5 мест не используется",
           "21 место не используется"),
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_seats_unused_says_how_many_seats_nobody_uses_the_renewal_day_and_where_to_lower_them(
        language: str) -> None:
    email = render_email("seats_unused", language, SAMPLE_CONTEXTS["seats_unused"])
    subject, sentence = SEATS_UNUSED[language]

    assert email.subject == subject
    assert sentence in " ".join(email.text.split())  # as one line, plain spaces
    assert sentence in visible_lines(email.html)
    for part in (email.text, " ".join(visible_lines(email.html))):
        assert LOWER_SEATS[language] in part
    assert "https://app.example.test/settings/billing" in email.text
    assert 'href="https://app.example.test/settings/billing"' in email.html


@pytest.mark.parametrize("language", LANGUAGES)
def test_seats_unused_counts_the_seats_in_the_languages_plural_forms(language: str) -> None:
    for unused, words in zip((1, 2, 5, 21), SEAT_FORMS[language], strict=True):
        context = {**SAMPLE_CONTEXTS["seats_unused"], "unused": unused}
        email = render_email("seats_unused", language, context)
        assert words in email.subject, (unused, email.subject)
        # the plural messages are translated at render time: as Jinja's own i18n does it
        assert email == rendered_by_jinja_i18n("seats_unused", language, context)
        if language != "en":
            english = render_email("seats_unused", "en", context)
            assert email.subject != english.subject and email.text != english.text
            assert visible_lines(email.html) != visible_lines(english.html)
