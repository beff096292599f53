"""Member-facing text in the member's language: translatable messages and the gettext catalogs they come from.

The core never words a reply in a language: it builds a ``Text`` (the English source, its placeholders and,
for counted things, a plural) and whoever shows it to a member renders it in their locale. The English
source is the gettext msgid; ``bot/i18n/locales/<locale>.po`` holds each translation (docs/localization.md).
Logs, the audit trail and the CLI use ``str(text)``: English.
"""

from __future__ import annotations

from bot.i18n.catalog import DEFAULT_LOCALE, LOCALES, catalog, choose_locale, translate
from bot.i18n.text import Text, _, _n, _p, join, render

__all__ = [
    "DEFAULT_LOCALE",
    "LOCALES",
    "Text",
    "_",
    "_n",
    "_p",
    "catalog",
    "choose_locale",
    "join",
    "render",
    "translate",
]
