"""Prompt hygiene: what reaches a provider or a chat message is plain, visible text."""

from __future__ import annotations

import re
import unicodedata

# Zero-width and bidi control characters hide text from moderators and banned-word checks.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u00ad]")


def clean_prompt(text: str) -> str:
    """NFKC-normalise, drop control and invisible characters (keeping newlines), trim."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    return re.sub(r"[ \t]+", " ", text).strip()
