"""Discord's rules for application commands as registered (create, overwrite), localizations included.

Discord answers 400 (50035 Invalid Form Body) to a chat-input name outside
``^[-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$`` or with an upper-case letter, a description over 100
characters, a localization keyed by a locale it does not have, and two options (or choices) of one command
with the same name, in any locale.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from .constants import CommandType
from .rules import FormErrors

#: Discord's locales (AvailableLocalesEnum in its OpenAPI spec).
LOCALES = frozenset(
    [
        "ar",
        "bg",
        "cs",
        "da",
        "de",
        "el",
        "en-GB",
        "en-US",
        "es-419",
        "es-ES",
        "fi",
        "fr",
        "he",
        "hi",
        "hr",
        "hu",
        "id",
        "it",
        "ja",
        "ko",
        "lt",
        "nl",
        "no",
        "pl",
        "pt-BR",
        "ro",
        "ru",
        "sv-SE",
        "th",
        "tr",
        "uk",
        "vi",
        "zh-CN",
        "zh-TW",
    ]
)
SUBCOMMAND, GROUP = 1, 2


def _name_char_ok(char: str) -> bool:
    """One character of ``[-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]`` (Python's ``re`` has no \\p{…})."""
    if char in "-_'" or unicodedata.category(char)[0] in "LN":
        return True
    return 0x0900 <= ord(char) <= 0x097F or 0x0E00 <= ord(char) <= 0x0E7F  # Devanagari, Thai


def chat_input_name_problem(name: object) -> str | None:
    """Why Discord refuses ``name`` as a slash command or option name (None: it accepts it)."""
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        return "Must be between 1 and 32 in length."
    if not all(_name_char_ok(c) for c in name):
        return f"Command name is invalid: {name!r} does not match Discord's name pattern."
    if name != name.lower():
        return f"Command name is invalid: {name!r} has upper-case letters."
    return None


def validate_command(body: dict[str, Any]) -> None:
    """Raise Discord's 400 for a command ``body`` Discord would refuse."""
    errors = FormErrors()
    kind = body.get("type", CommandType.CHAT_INPUT)
    if kind == CommandType.CHAT_INPUT:
        _check_named(errors, (), body, name_rule=chat_input_name_problem)
        _check_options(errors, ("options",), body.get("options") or [])
    else:  # context menus: free-text names, no description
        _check_named(errors, (), body, name_rule=_menu_name_problem, described=False)
    errors.raise_if_any()


def _menu_name_problem(name: object) -> str | None:
    return None if isinstance(name, str) and 1 <= len(name) <= 32 else "Must be between 1 and 32 in length."


def _check_named(
    errors: FormErrors, path: tuple[str | int, ...], item: dict[str, Any], *, name_rule: Any, described: bool = True
) -> None:
    problem = name_rule(item.get("name"))
    if problem:
        errors.add((*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", problem)
    for locale, value in (item.get("name_localizations") or {}).items():
        if locale not in LOCALES:
            errors.add((*path, "name_localizations", locale), "ENUM_TYPE_COERCE", f"Value {locale!r} is not a locale.")
        elif problem := name_rule(value):
            errors.add((*path, "name_localizations", locale), "APPLICATION_COMMAND_INVALID_NAME", problem)
    if not described:
        if item.get("description"):
            errors.add((*path, "description"), "BASE_TYPE_MAX_LENGTH", "Context menu commands have no description.")
        return
    _check_text(errors, (*path, "description"), item.get("description"), 1, 100)
    for locale, value in (item.get("description_localizations") or {}).items():
        if locale not in LOCALES:
            errors.add((*path, "description_localizations", locale), "ENUM_TYPE_COERCE", f"{locale!r} is no locale.")
        else:
            _check_text(errors, (*path, "description_localizations", locale), value, 1, 100)


def _check_text(errors: FormErrors, path: tuple[str | int, ...], value: object, low: int, high: int) -> None:
    if not isinstance(value, str) or not low <= len(value) <= high:
        errors.add(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")


def _check_unique(errors: FormErrors, path: tuple[str | int, ...], items: list[dict[str, Any]]) -> None:
    """Siblings must differ by name in every locale (a localized name counts where it is given)."""
    for locale in {None, *(loc for item in items for loc in item.get("name_localizations") or {})}:
        seen: set[str] = set()
        for item in items:
            name = str((item.get("name_localizations") or {}).get(locale, item.get("name"))) if locale else item["name"]
            if name in seen:
                errors.add(
                    path,
                    "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                    f"Option name {name!r} is already used{f' in {locale}' if locale else ''}.",
                )
            seen.add(name)


def _check_options(errors: FormErrors, path: tuple[str | int, ...], options: list[dict[str, Any]]) -> None:
    errors.max_length(path, options, 25)
    _check_unique(errors, path, options)
    for i, option in enumerate(options):
        where = (*path, i)
        _check_named(errors, where, option, name_rule=chat_input_name_problem)
        if option.get("type") in (SUBCOMMAND, GROUP):
            _check_options(errors, (*where, "options"), option.get("options") or [])
        choices = option.get("choices") or []
        errors.max_length((*where, "choices"), choices, 25)
        _check_unique(errors, (*where, "choices"), choices)
        for j, choice in enumerate(choices):
            _check_text(errors, (*where, "choices", j, "name"), choice.get("name"), 1, 100)
            for locale, value in (choice.get("name_localizations") or {}).items():
                if locale not in LOCALES:
                    errors.add((*where, "choices", j, "name_localizations", locale), "ENUM_TYPE_COERCE", "No locale.")
                else:
                    _check_text(errors, (*where, "choices", j, "name_localizations", locale), value, 1, 100)
