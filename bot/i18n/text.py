"""``Text``: a message to show a member, kept in its English source form until it is shown.

Mark a message with ``_("…{name}…", name=value)``; a counted one with ``_n("{count} image", "{count} images",
count)``; one whose English is ambiguous with ``_p("context", "…")``. Babel extracts those three calls
(docs/localization.md). Placeholders are ``str.format`` names (a literal brace is doubled); a placeholder's
value may itself be a ``Text``, rendered in the same locale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.i18n.catalog import DEFAULT_LOCALE, catalog


@dataclass(frozen=True)
class Text:
    msgid: str
    params: dict[str, Any] = field(default_factory=dict)
    plural: str | None = None
    count: int = 0
    context: str | None = None

    def render(self, locale: str = DEFAULT_LOCALE) -> str:
        translations = catalog(locale)
        if self.plural is not None:
            if self.context:
                template = translations.npgettext(self.context, self.msgid, self.plural, self.count)
            else:
                template = translations.ngettext(self.msgid, self.plural, self.count)
        elif self.context:
            template = translations.pgettext(self.context, self.msgid)
        else:
            template = translations.gettext(self.msgid)
        values = {"count": self.count} if self.plural is not None else {}
        values.update({name: render(value, locale) for name, value in self.params.items()})
        return template.format_map(values)

    def __str__(self) -> str:
        return self.render(DEFAULT_LOCALE)


def _(msgid: str, /, **params: Any) -> Text:
    return Text(msgid, params)


def _n(singular: str, plural: str, count: int, /, **params: Any) -> Text:
    """``{count}`` in either form is the count itself."""
    return Text(singular, params, plural, count)


def _p(context: str, msgid: str, /, **params: Any) -> Text:
    return Text(msgid, params, context=context)


def render(value: object, locale: str = DEFAULT_LOCALE) -> Any:
    """``value`` as shown in ``locale``: a ``Text`` rendered, anything else as it is."""
    return value.render(locale) if isinstance(value, Text) else value


@dataclass(frozen=True)
class Joined(Text):
    """Several messages shown as one (each rendered in the same locale), e.g. sentences of a reply."""

    parts: tuple[Any, ...] = ()
    separator: str = " "

    def render(self, locale: str = DEFAULT_LOCALE) -> str:
        return self.separator.join(str(render(part, locale)) for part in self.parts)


def join(parts: Sequence[Any], separator: str = " ") -> Text:
    return Joined("", parts=tuple(parts), separator=separator)
