"""Render the email templates in ``templates/email/<name>/`` in a member's language.

Each email is a folder of ``subject.txt``, ``body.txt`` and ``body.html``; the
strings are English in the templates and translated by the gettext catalogs in
``templates/locale/<locale>/LC_MESSAGES/messages.po``, read once per language.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import cache, lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date, format_datetime, get_datetime_format, tokenize_pattern
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency
from babel.support import NullTranslations, Translations
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    nodes,
    select_autoescape,
)
from jinja2.ext import InternationalizationExtension

from provisioning.core.validation import LANGUAGES

SOURCE_LANGUAGE = "en"
# A variable in a {% trans %} message, or a percent sign (the block doubles each one).
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
PARTS = ("subject.txt", "body.txt", "body.html")
DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"


@dataclass(frozen=True)
class RenderedEmail:
    """One email in one language, ready for the MIME builder."""

    subject: str
    text: str
    html: str


def render_email(
    template: str,
    language: str,
    context: Mapping[str, object],
    *,
    templates_dir: Path | None = None,
) -> RenderedEmail:
    """Render the subject, text and HTML parts of ``template`` in ``language``.

    ``templates_dir`` replaces the repository's ``templates/`` folder (for tests).
    Raises ValueError for a language outside LANGUAGES and LookupError for an
    email with no template folder; a missing context value raises
    ``jinja2.UndefinedError``.
    """
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; expected one of {LANGUAGES}")
    directory = templates_dir or DEFAULT_TEMPLATES_DIR
    environment = _environment(language, directory)
    try:
        parts = [environment.get_template(f"email/{template}/{part}") for part in PARTS]
    except TemplateNotFound as missing:
        raise LookupError(
            f"no email template {template!r}: {missing.name} is missing from {directory}"
        ) from missing
    return _render(parts, context)


def _render(parts: Sequence[Template], context: Mapping[str, object]) -> RenderedEmail:
    """Render the subject, text and HTML templates of one email."""
    subject_template, text_template, html_template = parts
    # Headers are one line; this also drops any line break smuggled in through a name.
    subject = " ".join(subject_template.render(context).split())
    return RenderedEmail(
        subject=subject,
        text=text_template.render(context),
        html=html_template.render(context, subject=subject),
    )


class _EmailEnvironment(Environment):
    """An environment whose globals are complete before its first template loads."""

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        # Jinja chains a template's globals to the environment's so later changes show
        # through; these never change, and a flat copy spares each render walking the chain
        # (a tenth of an invitation's rendering).
        return {**self.globals, **(d or {})}


@cache
def _environment(language: str, templates_dir: Path, *,
                 compile_translations: bool = True) -> Environment:
    """One Jinja2 environment per language: it keeps its compiled templates.

    ``compile_translations=False`` leaves the translating to Jinja's own i18n
    extension at render time, the reference the compiled form must match.
    """
    environment = _EmailEnvironment(
        loader=FileSystemLoader(templates_dir),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        extensions=(CompiledTranslations if compile_translations else "jinja2.ext.i18n",),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Templates ship with the code; checking their mtime on every render is wasted work.
        auto_reload=False,
    )
    # Whitespace inside {% trans %} collapses, as pybabel extracts it (trimmed = true in babel.cfg).
    environment.policies["ext.i18n.trimmed"] = True
    environment.install_gettext_translations(  # type: ignore[attr-defined]
        _translations(language, templates_dir), newstyle=True
    )
    environment.globals["language"] = language
    environment.filters["format_datetime"] = _datetime_formatter(language)
    environment.filters["format_date"] = _date_formatter(language)
    environment.filters["format_money"] = _money_formatter(language)
    return environment


class CompiledTranslations(InternationalizationExtension):
    """``{% trans %}`` translated once, when a template compiles, instead of at every render.

    An environment serves one language (``_environment``), so each message's
    translation is known when its template compiles: the block becomes the
    translated text with its variables in place, plain template output, instead
    of a gettext call and a %-format each time (a third of an invitation's
    rendering). The output is the same as newstyle gettext's: the translated text
    is trusted like the template's own, each variable is escaped where the
    template autoescapes. Plural and context forms, a translation with any other
    %-format, and ``_()`` calls keep the runtime call.
    """

    _translations: NullTranslations | None = None

    def _install(self, translations: Any, newstyle: bool | None = None) -> None:
        self._translations = translations
        super()._install(translations, newstyle)

    def _make_node(self, singular: str, plural: str | None, context: str | None,
                   variables: dict[str, nodes.Expr], plural_expr: nodes.Expr | None,
                   vars_referenced: bool, num_called_num: bool) -> nodes.Output:
        newstyle = getattr(self.environment, "newstyle_gettext", False)
        if self._translations is not None and newstyle and not plural_expr and not context:
            inlined = _inline(self._translations.gettext(singular), variables)
            if inlined is not None:
                return inlined
        return super()._make_node(singular, plural, context, variables, plural_expr,
                                  vars_referenced, num_called_num)


def _inline(translated: str, variables: dict[str, nodes.Expr]) -> nodes.Output | None:
    """``translated % variables`` as template output; None if it takes more than that."""
    children: list[nodes.Expr] = []
    text, position = "", 0
    for placeholder in _PLACEHOLDER.finditer(translated):
        literal = translated[position:placeholder.start()]
        name, position = placeholder[1], placeholder.end()
        if "%" in literal or (name is not None and name not in variables):
            return None  # another %-format, or a variable the block lacks: the runtime call
        if name is None:
            text += literal + "%"
        else:
            children += [nodes.TemplateData(text + literal), variables[name]]
            text = ""
    rest = translated[position:]
    if "%" in rest:
        return None
    children.append(nodes.TemplateData(text + rest))
    return nodes.Output([child for child in children
                         if not (isinstance(child, nodes.TemplateData) and not child.data)])


def _translations(language: str, templates_dir: Path) -> NullTranslations:
    """The language's catalog, compiled in memory from its .po file (no .mo in git)."""
    if language == SOURCE_LANGUAGE:
        return NullTranslations()
    folder = language.replace("-", "_")
    path = templates_dir / "locale" / folder / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=folder)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(fp=compiled)


def _datetime_formatter(language: str) -> Callable[[datetime | str], str]:
    """Format a moment as the language writes it: long date, short time, time zone."""
    locale = Locale.parse(language, sep="-")
    # CLDR glues a date and a time with a per-language pattern ("{1}, {0}", "{1} {0}").
    pattern = (
        str(get_datetime_format("long", locale=locale))
        .replace("{1}", locale.date_formats["long"].pattern)
        .replace("{0}", locale.time_formats["short"].pattern + " z")
    )
    # The emails of one bulk send expire within a minute or two of each other and the
    # pattern shows no seconds: each minute is formatted once (babel is ~25 µs a call).
    to_the_minute = not _shows_seconds(pattern)

    @lru_cache(maxsize=256)
    def format_once(moment: datetime, zone: tzinfo | None, fold: int) -> str:
        return format_datetime(moment, pattern, locale=locale)

    def format_moment(moment: datetime | str) -> str:
        # The outbox keeps its context as JSON, so the moment may arrive as ISO 8601 text.
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment)
        if to_the_minute:
            moment = moment.replace(second=0, microsecond=0)
        # Equal instants compare equal across zones: the zone and fold belong in the key.
        return format_once(moment, moment.tzinfo, moment.fold)

    return format_moment


def _date_formatter(language: str) -> Callable[[datetime | str], str]:
    """Format a day as the language writes it in full (the day of the moment, in UTC)."""
    locale = Locale.parse(language, sep="-")

    def format_day(moment: datetime | str) -> str:
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment)
        return format_date(moment.date(), "long", locale=locale)

    return format_day


def _money_formatter(language: str) -> Callable[[int, str], str]:
    """Format an amount in cents as the language writes money (``$12.50``, ``12,50 US$``)."""
    locale = Locale.parse(language, sep="-")

    def format_money(cents: int, currency: str) -> str:
        return format_currency(cents / 100, currency, locale=locale)

    return format_money


def _shows_seconds(pattern: str) -> bool:
    """Whether a CLDR pattern has a field finer than minutes (seconds, fractions, ms of day)."""
    return any(kind == "field" and value[0] in "sSA" for kind, value in tokenize_pattern(pattern))
