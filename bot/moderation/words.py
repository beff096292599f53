"""Banned words that invisible characters, look-alike letters and spacing cannot dodge.

The banned word and the prompt are *folded* the same way (``fold``) and then compared:

1. NFKC: fullwidth, styled and circled letters become plain ones (``ｇｏｒｅ``, ``𝐠𝐨𝐫𝐞`` → ``gore``).
2. Case folding (``GORE`` → ``gore``, ``Straße`` → ``strasse``).
3. Removed: every default-ignorable code point (zero-width space and joiners, the combining grapheme
   joiner U+034F, variation selectors such as U+FE0F, the soft hyphen, bidi controls, tag characters,
   Hangul fillers), every other format (Cf) or non-whitespace control character, and the generic combining
   marks (U+0300–036F, 1AB0–1AFF, 1DC0–1DFF, 20D0–20FF, FE20–FE2F): accents and "Zalgo" overlays hide
   nothing (``góre``, ``g̷o̷r̷e̷`` → ``gore``). The price: a banned ``café`` also matches ``cafe``, and Cyrillic
   ``й`` counts as ``и``. Marks in a script's own block (Devanagari vowel signs, say) are kept: there they
   are letters.
4. Look-alike letters: a non-ASCII character that Unicode's confusables table (UTS #39, as shipped by the
   maintained ``confusable-homoglyphs`` package, not a hand-made list) says looks like ASCII letters or
   digits becomes them, whatever its script: Cyrillic ``gоrе`` or ``ѕех``, Greek ``ο`` are caught. ASCII
   itself is never rewritten (the table would turn ``m`` into ``rn`` and ``1`` into ``l``, refusing
   innocent words), so leetspeak such as ``g0re`` is not caught: ban such variants as words of their own.
   Because both sides are folded, a banned word written in Cyrillic still matches Cyrillic prompts; a
   Russian word that looks letter for letter like a banned English word is refused too.

Matching, on the folded text:

* **Whole words**, as before: a banned word matches only where it is not part of a longer word, so ``ass``
  matches ``Kick ASS!`` and ``bad-ass`` but not ``class``, and ``Scunthorpe`` is safe from a banned
  ``cunt``; a banned phrase's words may be separated by any whitespace.
* **Spaced letters**: a single banned word of at least 4 letters also matches when exactly one space or
  punctuation mark separates each of its letters (``g o r e``, ``g.o.r.e``, ``g-o-r-e``), provided the
  spaced run does not go on past the word (``g o r e s`` is no more ``gore`` than ``gores`` is; a single
  letter before it is allowed, as in ``draw a g o r e scene``). Shorter words are never matched spaced
  out, or ``u.s.a``-style abbreviations and initials would be refused. Two or more separators between
  letters, repeated letters (``gooore``) and spaced-out phrases are not caught.

``find_banned_word`` says which rule matched (``BannedMatch.rule``) so the moderators' audit can show it;
the member always sees the same polite refusal.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from bot.i18n import _

#: Shown to moderators with the banned-words list (keep it short: it goes into a Discord message).
MATCHING_RULES = _(
    "Matching ignores case, accents, invisible characters, fullwidth/styled letters and look-alike letters "
    "from other scripts (Cyrillic “о” counts as “o”). A word of 4+ letters is also caught spelled out with "
    "one space or mark between its letters (“g o r e”, “g.o.r.e”). A banned word never matches inside a "
    "longer word; digits standing in for letters (“g0re”) are not caught: add such variants as words."
)

Rule = Literal["word", "normalised", "look-alike", "spaced"]
#: What each rule means, for the audit log's readers.
RULE_NAMES: dict[Rule, str] = {
    "word": "the word as written (ignoring case)",
    "normalised": "after removing invisible characters, accents and fullwidth/styled forms",
    "look-alike": "after reading look-alike letters from other scripts as Latin ones",
    "spaced": "spelled out with one space or mark between the letters",
}
#: A banned word needs this many letters to be matched spelled out.
SPACED_MIN_LETTERS = 4

# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties.txt; stable since Unicode 6.0).
_DEFAULT_IGNORABLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e0fff"
)
# The generic combining marks (accents, overlays), as opposed to marks that belong to one script.
_GENERIC_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_ASCII_CONTROLS = "\x00-\x08\x0e-\x1f\x7f"  # keeps \t \n \v \f \r: they separate words
_INVISIBLE = re.compile(f"[{_DEFAULT_IGNORABLE}{_ASCII_CONTROLS}]")
_MARKS = re.compile(f"[{_GENERIC_MARKS}]")
_TOKEN = re.compile(r"\w+")
# Single letters (or digits), each followed by exactly one separator (space, punctuation, symbol, "_").
_SPELLED_RUN = re.compile(rf"(?<![^\W_])[^\W_](?:[\W_][^\W_](?![^\W_])){{{SPACED_MIN_LETTERS - 1},}}")


@dataclass(frozen=True)
class BannedMatch:
    """The banned word (as the moderators listed it) and the rule that caught it."""

    word: str
    rule: Rule

    @property
    def description(self) -> str:
        return RULE_NAMES[self.rule]


def remove_invisible(text: str) -> str:
    """Without default-ignorable, format (Cf) and control characters; whitespace is kept."""
    text = _INVISIBLE.sub("", text)
    if text.isascii():
        return text
    return "".join(ch for ch in text if not _is_hidden(ch))


def strip_hidden(text: str) -> str:
    """Steps 1-3 of the module docstring: NFKC, case folding, invisible characters and accents removed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = remove_invisible(_MARKS.sub("", unicodedata.normalize("NFD", text)))
    return unicodedata.normalize("NFKC", text)


def fold(text: str) -> str:
    """What banned words are matched on: ``strip_hidden`` and then look-alike letters read as ASCII."""
    text = strip_hidden(text)
    if text.isascii():
        return text
    return "".join(_look_alike(ch) if not ch.isascii() else ch for ch in text)


def find_banned_word(prompt: str, words: Iterable[str]) -> BannedMatch | None:
    """The first banned word (or phrase) the prompt contains, with the rule that matched; None if none."""
    matcher = _matcher(tuple(words))
    if not matcher.entries:
        return None
    folded = fold(prompt)
    found = matcher.find(folded)
    if found is None:
        return None
    word, spaced = found
    return BannedMatch(word, "spaced" if spaced else _rule(prompt, word))


def banned_word_in(prompt: str, words: Iterable[str]) -> str | None:
    """The first banned word (or phrase) the prompt contains (see the module docstring for how)."""
    match = find_banned_word(prompt, words)
    return match.word if match else None


@dataclass(frozen=True)
class _Entry:
    word: str  # as listed
    token: str | None  # folded, when it is one run of word characters: a set lookup finds it
    pattern: re.Pattern[str] | None  # otherwise (phrases, words with punctuation)
    spaced: bool  # may be spelled out letter by letter


class _Matcher:
    """One guild's list, folded once: a prompt costs one pass over its words, not one regex per word."""

    def __init__(self, words: tuple[str, ...]) -> None:
        self.entries: list[_Entry] = []
        for word in words:
            folded = fold(word)
            if not folded.split():
                continue
            if _TOKEN.fullmatch(folded):
                spaced = len(folded) >= SPACED_MIN_LETTERS and "_" not in folded
                self.entries.append(_Entry(word, folded, None, spaced))
            else:
                self.entries.append(_Entry(word, None, _whole_word(folded), False))
        self.longest = max((len(e.token) for e in self.entries if e.spaced and e.token), default=0)

    def find(self, folded: str) -> tuple[str, bool] | None:
        tokens = set(_TOKEN.findall(folded))
        spelled: set[str] | None = None
        for entry in self.entries:
            if entry.token is not None and entry.token in tokens:
                return entry.word, False
            if entry.pattern is not None and entry.pattern.search(folded):
                return entry.word, False
            if entry.spaced:
                if spelled is None:
                    spelled = self._spelled_out(folded)
                if entry.token in spelled:
                    return entry.word, True
        return None

    def _spelled_out(self, folded: str) -> set[str]:
        """The words of 4+ letters a run of single letters spells, each ending where the run ends: "a g o r e"
        spells "agore" and "gore"; "g o r e s" spells "gores" and "ores", never "gore"."""
        found: set[str] = set()
        for run in _SPELLED_RUN.finditer(folded):
            letters = run.group()[::2]
            for start in range(max(0, len(letters) - self.longest), len(letters) - SPACED_MIN_LETTERS + 1):
                found.add(letters[start:])
        return found


@functools.lru_cache(maxsize=256)
def _matcher(words: tuple[str, ...]) -> _Matcher:
    return _Matcher(words)


def _rule(prompt: str, word: str) -> Rule:
    """The plainest rule that catches the word (only computed once a prompt is refused)."""
    plain = _whole_word(word.casefold())
    if plain is not None and plain.search(prompt.casefold()):
        return "word"
    normalised = _whole_word(strip_hidden(word))
    if normalised is not None and normalised.search(strip_hidden(prompt)):
        return "normalised"
    return "look-alike"


def _whole_word(word: str) -> re.Pattern[str] | None:
    """Today's rule: the word, not inside a longer one; a phrase's words separated by any whitespace."""
    parts = word.split()
    if not parts:
        return None
    body = r"\s+".join(re.escape(part) for part in parts)
    return re.compile(rf"(?<!\w){body}(?!\w)")


@functools.lru_cache(maxsize=2048)
def _is_hidden(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category == "Cf" or (category == "Cc" and not ch.isspace())


@functools.lru_cache(maxsize=8192)
def _look_alike(ch: str) -> str:
    """The ASCII letters or digits the confusables table says ``ch`` looks like, or ``ch`` itself."""
    from confusable_homoglyphs import confusables  # loads a 900 KB table: only once a prompt is not ASCII

    found = confusables.is_confusable(ch, greedy=True, preferred_aliases=[])
    if not found:
        return ch
    targets = {
        glyph["c"].lower()
        for entry in found
        for glyph in entry["homoglyphs"]
        if glyph["c"].isascii() and glyph["c"].isalnum()
    }
    return targets.pop() if len(targets) == 1 else ch
