"""The gettext catalogs, read from the ``.po`` files shipped in this package (no compile step: Babel reads
each ``.po`` once and builds the in-memory ``.mo`` that Python's ``gettext`` serves from)."""

from __future__ import annotations

import functools
import gettext
import io
from importlib import resources

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

#: The English source; every other locale translates it. Discord's locale codes throughout.
DEFAULT_LOCALE = "en-US"
#: Every locale with a catalog (Discord's codes), the default first.
LOCALES = ("en-US", "de", "fr", "es-ES", "pt-BR", "ja", "zh-CN")
#: Discord locales served by a catalog of the same language: British English reads the English source,
#: Latin American Spanish reads the Spanish catalog better than a server's other language.
SAME_LANGUAGE = {"en-GB": "en-US", "es-419": "es-ES"}


def supported(locale: str | None) -> str | None:
    """Our locale for a Discord locale code, or None when we have no catalog in its language."""
    if not locale:
        return None
    locale = SAME_LANGUAGE.get(locale, locale)
    return locale if locale in LOCALES else None


def choose_locale(locale: str | None, guild_locale: str | None = None) -> str:
    """The member's locale if we have it, else the server's, else English."""
    return supported(locale) or supported(guild_locale) or DEFAULT_LOCALE


def po_path(locale: str) -> resources.abc.Traversable:
    return resources.files("bot.i18n").joinpath("locales", f"{locale}.po")


@functools.cache
def po_catalog(locale: str) -> Catalog:
    """The parsed ``.po`` file of ``locale`` (one of ``LOCALES`` other than English)."""
    with po_path(locale).open("rb") as po:
        return read_po(po, locale=locale.replace("-", "_"))


@functools.cache
def catalog(locale: str) -> gettext.NullTranslations:
    """The translations of ``locale`` (English: the source itself); untranslated messages fall back to English."""
    if locale == DEFAULT_LOCALE or locale not in LOCALES:
        return gettext.NullTranslations()
    compiled = io.BytesIO()
    write_mo(compiled, po_catalog(locale), use_fuzzy=False)
    compiled.seek(0)
    translations = gettext.GNUTranslations(compiled)
    translations.add_fallback(gettext.NullTranslations())
    return translations


def translate(locale: str, msgid: str, *, context: str | None = None) -> str | None:
    """The catalog's translation of ``msgid`` (in ``context``), or None when ``locale`` has none for it."""
    if locale == DEFAULT_LOCALE or locale not in LOCALES:
        return None
    message = po_catalog(locale).get(msgid, context=context)
    if message is None or message.fuzzy or not isinstance(message.string, str) or not message.string:
        return None
    return message.string
