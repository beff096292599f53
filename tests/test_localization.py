"""The message catalogs: every locale has every message, with the English placeholders, and what Discord would
refuse (a command or option name outside its pattern, a description over 100 characters) fails here first."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import string
from pathlib import Path

import pytest
from babel.messages.catalog import Message
from babel.messages.extract import extract_from_dir

from bot.i18n import DEFAULT_LOCALE, LOCALES, Text, _, _n, choose_locale
from bot.i18n.catalog import po_catalog
from tests.fakediscord.command_rules import chat_input_name_problem, validate_command
from tests.fakediscord.rules import DiscordError

ROOT = Path(__file__).resolve().parent.parent
TRANSLATED = [locale for locale in LOCALES if locale != DEFAULT_LOCALE]
#: The marker calls Babel extracts (docs/localization.md): _(msgid), _n(singular, plural, n), _p(context, msgid).
KEYWORDS = {"_": None, "_n": (1, 2), "_p": ((1, "c"), 2)}
NAME_CONTEXTS = ("command name", "option name")
DESCRIPTION_CONTEXTS = ("command description", "option description", "choice")

Key = tuple[str | None, str]


def key(message: Message) -> Key:
    msgid = message.id if isinstance(message.id, str) else message.id[0]
    return message.context, msgid


def entries(locale: str) -> dict[Key, Message]:
    return {key(m): m for m in po_catalog(locale) if m.id}


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def extracted() -> dict[Key, tuple[str, ...]]:
    """Every marked message in bot/ and cogs/, as Babel's extractor finds it: key -> its English forms."""
    found: dict[Key, tuple[str, ...]] = {}
    for package in ("bot", "cogs"):
        for filename, _line, message, _comments, context in extract_from_dir(
            ROOT / package, method_map=[("**.py", "python")], keywords=KEYWORDS
        ):
            forms = (message,) if isinstance(message, str) else tuple(message)
            found[(context, forms[0])] = forms
            assert all(forms), f"{package}/{filename}: an empty message"
    return found


def test_the_code_marks_messages_and_the_catalogs_have_each_of_them() -> None:
    marked = extracted()
    assert len(marked) > 10  # the extractor sees our markers at all
    for locale in TRANSLATED:
        missing = sorted(str(k) for k in marked if k not in entries(locale))
        assert not missing, f"{locale}.po lacks {len(missing)} message(s): {missing[:5]}"


def test_the_catalogs_keep_no_message_the_code_no_longer_uses() -> None:
    """Command strings are looked up by the tree's translator (tests/test_e2e_locales.py checks those); every
    other entry must still be marked somewhere, or it is a translation nobody reads."""
    marked = extracted()
    command_contexts = {*NAME_CONTEXTS, *DESCRIPTION_CONTEXTS, "menu name"}
    stale = [k for k in entries(TRANSLATED[0]) if k[0] not in command_contexts and k not in marked]
    assert stale == []


@pytest.mark.parametrize("locale", TRANSLATED)
def test_each_locale_has_the_same_messages_all_translated(locale: str) -> None:
    reference = set(entries(TRANSLATED[0]))
    ours = entries(locale)
    assert set(ours) == reference, f"{locale}.po differs: {sorted(map(str, set(ours) ^ reference))[:5]}"
    for k, message in ours.items():
        forms = [message.string] if isinstance(message.string, str) else list(message.string)
        assert all(forms) and not message.fuzzy, f"{locale}: {k} is untranslated or fuzzy"


@pytest.mark.parametrize("locale", TRANSLATED)
def test_placeholders_match_the_english(locale: str) -> None:
    for k, message in entries(locale).items():
        english = [message.id] if isinstance(message.id, str) else list(message.id)
        wanted = set().union(*(placeholders(e) for e in english))
        forms = [message.string] if isinstance(message.string, str) else list(message.string)
        for form in forms:
            got = placeholders(form)
            # a plural form may leave the count implicit ("one image"), never add or lose another placeholder
            assert got - {"count"} == wanted - {"count"} and got <= wanted, f"{locale}: {k} has {got}, not {wanted}"


@pytest.mark.parametrize("locale", TRANSLATED)
def test_command_strings_are_ones_discord_accepts(locale: str) -> None:
    names = 0
    for (context, msgid), message in entries(locale).items():
        if context in NAME_CONTEXTS:
            names += 1
            assert chat_input_name_problem(msgid) is None
            assert chat_input_name_problem(message.string) is None, f"{locale}: {message.string!r}"
        elif context in DESCRIPTION_CONTEXTS:
            assert 1 <= len(msgid) <= 100, msgid
            assert 1 <= len(message.string) <= 100, f"{locale}: {len(message.string)} chars: {message.string!r}"
        elif context == "menu name":
            assert 1 <= len(message.string) <= 32, f"{locale}: {message.string!r}"
    assert names > 20


def test_the_name_rule_refuses_what_discord_refuses() -> None:
    for bad in ("Imagine", "two words", "", "x" * 33, "bild!", "画像・生成"):
        assert chat_input_name_problem(bad) is not None, bad
    for good in ("imagine", "seedream-admin", "auflösung", "画像生成", "生成图片", "in-flight", "ภาพ", "चित्र"):
        assert chat_input_name_problem(good) is None, good


def test_texts_render_in_the_member_language_with_plurals() -> None:
    assert _("Providers here:").render("de") == "Anbieter hier:"
    assert str(_("Providers here:")) == "Providers here:"

    def images(n: int) -> Text:
        return _n("up to {count} image", "up to {count} images", n)

    one, many = images(1), images(4)
    assert (one.render("de"), many.render("de")) == ("bis zu 1 Bild", "bis zu 4 Bilder")
    assert (one.render("fr"), images(0).render("fr")) == (
        "jusqu'à 1 image",
        "jusqu'à 0 image",  # French counts 0 as singular
    )
    assert many.render("ja") == "最大4枚"
    nested = _("Your allowance: {left}; it resets {resets}.", left=_("unlimited"), resets="<t:1:R>")
    assert nested.render("es-ES") == "Tu cuota: ilimitado; se renueva <t:1:R>."


def test_the_locale_is_the_members_then_the_servers_then_english() -> None:
    assert choose_locale("de", "ja") == "de"
    assert choose_locale("ko", "ja") == "ja"  # no Korean catalog: the server's language
    assert choose_locale("ko", "it") == "en-US"  # neither: English
    assert choose_locale("en-GB", "ja") == "en-US"  # British English reads the English source
    assert choose_locale("es-419", None) == "es-ES"
    assert choose_locale(None, None) == "en-US"


def test_the_fake_discord_refuses_command_localizations_discord_refuses() -> None:
    good = {"name": "imagine", "description": "Make pictures", "name_localizations": {"de": "bild"}}
    validate_command(good)
    bad_variants = [
        {**good, "name_localizations": {"de": "Bild"}},  # upper case
        {**good, "name_localizations": {"xx": "bild"}},  # no such locale
        {**good, "description_localizations": {"fr": "x" * 101}},
        {
            **good,
            "options": [
                {"type": 3, "name": "a", "description": "A", "name_localizations": {"ja": "同じ"}},
                {"type": 3, "name": "b", "description": "B", "name_localizations": {"ja": "同じ"}},
            ],
        },
        {
            **good,
            "options": [
                {
                    "type": 3,
                    "name": "a",
                    "description": "A",
                    "choices": [{"name": "one", "value": "1", "name_localizations": {"de": ""}}],
                }
            ],
        },
    ]
    for bad in bad_variants:
        with pytest.raises(DiscordError) as refused:
            validate_command(bad)
        assert refused.value.status == 400 and refused.value.code == 50035


def _literal(node: ast.expr) -> bool:
    """Words written in code: a string, or an f-string, whose own text has letters (``f"<@{id}>"`` has none)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and any(c.isalpha() for c in node.value)
    if isinstance(node, ast.BinOp):
        return _literal(node.left) or _literal(node.right)
    if isinstance(node, ast.JoinedStr):
        return any(_literal(part) for part in node.values if isinstance(part, ast.Constant))
    return False


def _called(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _error_names() -> set[str]:
    """Every error a member may be told about (``SeedreamError`` and its subclasses), by class name."""
    import bot
    from bot.errors import ConfigError, SeedreamError

    for module in pkgutil.walk_packages(bot.__path__, "bot."):  # every subclass, wherever it is defined
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    from bot.storage.errors import StoreBusy, StoreNotWritable, StoreTooNew

    # the operator's words at start-up, and errors whose argument is a detail for the log (their message is fixed)
    not_members = (ConfigError, StoreNotWritable, StoreTooNew, StoreBusy)
    names, todo = set(), [SeedreamError]
    while todo:
        cls = todo.pop()
        if not issubclass(cls, not_members):
            names.add(cls.__name__)
            todo += cls.__subclasses__()
    return names


#: Member-facing words that stay in code on purpose: (file, its line's text).
SPOKEN_IN_CODE = {
    ("bot/jobs/engine.py", 'raise SeedreamError("Another process took this job; see `seedream-bot status`.")'),
}
#: Calls whose text reaches members, and the keyword arguments that carry it (cogs/).
SENDS = {"reply", "send", "send_message", "edit", "edit_message", "Embed", "add_field", "Button", "TextInput", "Label"}
SENT_KEYWORDS = {"content", "title", "description", "name", "label", "placeholder", "text", "value"}


def test_no_member_facing_words_are_written_outside_the_catalog() -> None:
    """An error raised with plain English, or a reply, embed, button or modal written in code, would reach every
    member in English: each must be a ``_()`` message (its wording then lives in the catalogs)."""
    errors = _error_names()
    found = []
    for package in ("bot", "cogs"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = str(path.relative_to(ROOT))
            if relative == "bot/cli.py":
                continue
            lines = path.read_text().splitlines()
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = _called(node)
                spoken = [node.args[0]] if name in errors and node.args else []
                if package == "cogs" and name in SENDS:
                    spoken += node.args[:1] if name in ("reply", "send", "send_message") else []
                    spoken += [k.value for k in node.keywords if k.arg in SENT_KEYWORDS]
                    if name == "reply":
                        spoken = node.args[1:2]
                for argument in spoken:
                    text = lines[node.lineno - 1].strip()
                    if _literal(argument) and (relative, text) not in SPOKEN_IN_CODE:
                        found.append(f"{relative}:{node.lineno}: {text}")
    assert found == [], "\n".join(found)
