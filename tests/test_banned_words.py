"""Banned words that invisible characters, look-alike letters and spacing cannot dodge (bot/moderation/words.py)."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from bot.errors import InvalidRequest
from bot.moderation import MATCHING_RULES, find_banned_word, fold
from bot.moderation.admin import normalise_word
from bot.storage import Database
from tests import pg
from tests.test_policy import GUILD, MOD, World, build, member


@pytest.fixture(params=pg.STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every ``db`` test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


WORDS = sorted(["gore", "ass", "red flag", "cunt", "porn", "usa", "sex", "f*ck"])


@pytest.fixture
def world(db: Database) -> World:
    return build(db)


def rule(prompt: str, words: list[str] = WORDS) -> tuple[str, str] | None:
    match = find_banned_word(prompt, words)
    return (match.word, match.rule) if match else None


# -- invisible characters ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "hidden",
    [
        "\u034f",  # combining grapheme joiner
        "\ufe0f",  # variation selector-16
        "\ufe00",  # variation selector-1
        "\U000e0100",  # variation selector-17
        "\u200b",  # zero-width space
        "\u200c",  # zero-width non-joiner
        "\u200d",  # zero-width joiner
        "\u2060",  # word joiner
        "\ufeff",  # zero-width no-break space
        "\u00ad",  # soft hyphen
        "\u180e",  # Mongolian vowel separator
        "\u202e",  # right-to-left override
        "\u2066",  # left-to-right isolate
        "\U000e0067",  # tag letter g
        "\u3164",  # Hangul filler
        "\x07",  # a control character
    ],
)
def test_an_invisible_character_between_the_letters_does_not_hide_the_word(hidden: str) -> None:
    assert rule(f"a scene full of g{hidden}o{hidden}r{hidden}e") == ("gore", "normalised")
    assert rule(f"GO{hidden}RE") == ("gore", "normalised")


def test_every_format_character_is_ignored() -> None:
    """Not just the ones someone thought of: every Cf code point Python's Unicode database knows."""
    format_chars = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
    assert len(format_chars) > 150
    missed = [f"U+{ord(c):04X}" for c in format_chars if rule(f"go{c}re") != ("gore", "normalised")]
    assert missed == []


def test_fullwidth_styled_and_accented_letters_are_the_plain_ones() -> None:
    assert rule("ｇｏｒｅ") == ("gore", "normalised")  # fullwidth
    assert rule("ＧＯＲＥ everywhere") == ("gore", "normalised")
    assert rule("𝐠𝐨𝐫𝐞") == ("gore", "normalised")  # mathematical bold
    assert rule("ⓖⓞⓡⓔ") == ("gore", "normalised")  # circled
    assert rule("góre") == ("gore", "normalised")  # an accent
    assert rule("g̷o̷r̷e̷") == ("gore", "normalised")  # "Zalgo" overlays
    assert rule("red\u200b\nflag") == ("red flag", "normalised")


def test_case_is_ignored_and_a_plain_match_says_so() -> None:
    assert rule("lots of GORE here") == ("gore", "word")
    assert rule("Kick ASS!") == ("ass", "word")
    assert rule("a RED   Flag waving") == ("red flag", "word")
    assert rule("F*CK it") == ("f*ck", "word")


# -- look-alike letters -----------------------------------------------------------------------------
def test_cyrillic_and_greek_look_alikes_are_read_as_latin() -> None:
    assert rule("gоrе") == ("gore", "look-alike")  # Cyrillic о and е
    assert rule("ѕех") == ("sex", "look-alike")  # all three Cyrillic
    assert rule("gοre") == ("gore", "look-alike")  # Greek omicron
    assert rule("рorn") == ("porn", "look-alike")  # Cyrillic р
    assert rule("ＧОRЕ") == ("gore", "look-alike")  # fullwidth and Cyrillic capitals together


def test_a_banned_word_in_another_script_still_matches_that_script() -> None:
    """Both sides are folded the same way, so a Cyrillic banned word keeps working."""
    assert rule("какая-то сука тут", ["сука"]) == ("сука", "word")
    assert rule("СУКА", ["сука"]) == ("сука", "word")
    assert rule("с\u200bука", ["сука"]) == ("сука", "normalised")
    assert rule("сукабля", ["сука"]) is None


def test_ascii_is_never_rewritten_so_innocent_words_stay_innocent() -> None:
    """The confusables table maps m to rn and 1 to l; applied to ASCII that would refuse "pom" for "porn"."""
    assert fold("pom 1ol m0m") == "pom 1ol m0m"
    assert rule("a pom-pom hat") is None
    assert rule("g0re") is None  # leetspeak is documented as not caught


def test_fold_is_stable() -> None:
    """Folding a folded text changes nothing, across the blocks look-alikes and tricks come from."""
    blocks = [
        (0x0000, 0x0500),  # Latin, IPA, diacritics, Greek, Cyrillic
        (0x1AB0, 0x1AFF),
        (0x1D00, 0x1DFF),
        (0x2000, 0x2BFF),  # punctuation, letterlike symbols, enclosed alphanumerics
        (0x3130, 0x318F),
        (0xFE00, 0xFFEF),  # variation selectors, fullwidth forms
        (0x1D400, 0x1D7FF),  # mathematical alphanumerics
        (0xE0000, 0xE01EF),
    ]
    unstable = [
        f"U+{c:04X}"
        for start, end in blocks
        for c in range(start, end + 1)
        if not 0xD800 <= c <= 0xDFFF and fold(fold(chr(c))) != fold(chr(c))
    ]
    assert unstable == []


# -- spaced letters ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prompt",
    ["g o r e", "g.o.r.e", "g-o-r-e", "g_o_r_e", "G/O/R/E", "draw a g o r e scene", "g o r e!"],
)
def test_a_word_of_four_letters_or_more_is_caught_spelled_out(prompt: str) -> None:
    assert rule(prompt) == ("gore", "spaced")


def test_spelled_out_look_alikes_and_invisibles_are_caught_too() -> None:
    assert rule("g\u200b o r е") == ("gore", "spaced")


@pytest.mark.parametrize(
    "prompt",
    [
        "g o r e s",  # spells "gores", which is not "gore" (as "gores" is not)
        "g  o  r  e",  # two separators
        "go r e",  # not every letter on its own
        "a s s",  # three letters: too short to match spelled out
        "U.S.A. flag",  # abbreviations are safe for the same reason
        "S c u n t h o r p e",
        "an Al Pacino portrait",  # real words never join into "anal"
    ],
)
def test_spacing_that_is_not_a_spelled_out_banned_word(prompt: str) -> None:
    assert rule(prompt, [*WORDS, "anal"]) is None


def test_a_long_spelled_out_text_is_still_cheap() -> None:
    """A prompt of nothing but single letters is scanned once, not once per banned word and position."""
    assert rule("x y " * 1000 + "g o r e") == ("gore", "spaced")
    assert rule("a b " * 1000, [f"w{i}ord" for i in range(500)]) is None


# -- whole words only, as before --------------------------------------------------------------------
@pytest.mark.parametrize(
    "prompt",
    ["a class of glass, assorted", "Scunthorpe at dawn", "a gorgeous sunset", "redflag", "an assassin", "Sussex"],
)
def test_a_banned_word_inside_a_longer_word_is_not_matched(prompt: str) -> None:
    assert rule(prompt) is None


def test_a_word_attached_by_punctuation_is_a_word() -> None:
    assert rule("bad-ass") == ("ass", "word")
    assert rule("gore!") == ("gore", "word")


# -- storing words ------------------------------------------------------------------------------------
def test_stored_words_lose_invisible_characters_but_keep_their_letters() -> None:
    assert normalise_word("  Go\u200bre ") == "gore"
    assert normalise_word("ＧＯＲＥ") == "gore"
    assert normalise_word("Gоre") == "gоre"  # the Cyrillic о stays as typed; matching folds it
    with pytest.raises(InvalidRequest, match="empty"):
        normalise_word("\u200b\ufe0f")


async def test_a_word_stored_with_an_invisible_character_can_still_be_removed(world: World) -> None:
    async with world.db.transaction() as conn:  # as an older version stored it
        await world.policy.store.add_word(conn, GUILD, "gore\u200b", MOD, world.clock())
    assert await world.mod.remove_banned_words(GUILD, MOD, ["gore"]) == ["gore\u200b"]
    assert await world.policy.store.banned_words(GUILD) == []


# -- through the policy: the same refusal, and the audit names the rule ------------------------------
async def test_a_dodged_word_gets_the_same_refusal_and_the_audit_names_the_rule(world: World) -> None:
    await world.mod.add_banned_words(GUILD, MOD, ["gore", "blood"])
    refusals = []
    for prompt in ("GORE", "g\u034fo\ufe0fre", "gоrе", "g.o.r.e"):
        with pytest.raises(InvalidRequest) as refused:
            await world.check(member(user=7, channel=22), prompt=prompt)
        refusals.append(refused.value.user_message)
    assert len(set(refusals)) == 1 and "“gore”" in refusals[0]
    entries = [e for e in await world.policy.store.audit(GUILD, limit=10) if e.action == "prompt.refused"]
    assert [e.details["rule"] for e in reversed(entries)] == ["word", "normalised", "look-alike", "spaced"]
    newest = entries[0]
    assert (newest.actor_id, newest.target) == (7, "user:7")
    assert newest.details == {"word": "gore", "rule": "spaced", "channel_id": 22, "prompt": "g.o.r.e"}
    assert newest.reason is not None and "spelled out" in newest.reason
    await world.check(member(user=7), prompt="a gorgeous sunset over bloodstone cliffs")
    assert len([e for e in await world.policy.store.audit(GUILD) if e.action == "prompt.refused"]) == 4


def test_the_matching_rules_shown_to_moderators_fit_a_discord_message() -> None:
    rules = str(MATCHING_RULES)  # in English
    assert "look-alike" in rules and "g o r e" in rules and len(rules) < 1500
