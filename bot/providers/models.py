"""The Seedream models by family, whatever a provider calls them: strengths and default quota weight.

Every provider names the same few models differently (ModelArk ``seedream-5-5-261028``, Leonardo
``bytedance/seedream-5.5``, Novita ``seedream-5.0-lite`` …). ``family_of`` reads any of those ids and
returns the family, so the chat layer can describe a model in a few words and the quota can weigh it by
price without every provider repeating the table.

Cost weights follow the list prices collected in the provider reference (§5.6, §10.5, per image):
4.0 ≈ $0.03, 4.5 ≈ $0.04, 5.0 Lite $0.035, 5.0 Flash $0.018, 5.5 $0.020–0.035 (+ $0.008 per reference),
5.0 Pro $0.045 at up to 2.36 MP and $0.09 above. Quota units are whole numbers, so every model costs 1
except 5.0 Pro, which costs 2 (its 2K images cost twice the others').
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.i18n import Text, _p


@dataclass(frozen=True)
class Family:
    """One Seedream model as members choose it."""

    #: Short name members read: "4.5", "5.0 Lite", "5.5".
    name: str
    #: What it is good at, in a few words (``str()`` is English; the chat layer renders it in a member's language).
    strengths: Text
    #: Default quota weight per image (times the resolution weight).
    cost_weight: int
    #: Stable identifier for translations and settings: "4.5", "5.0-lite", "5.5".
    key: str


FAMILIES: dict[str, Family] = {
    family.key: family
    for family in (
        Family("4.0", _p("model strength", "quick drafts"), 1, "4.0"),
        Family("4.5", _p("model strength", "sharp detail"), 1, "4.5"),
        Family("5.0 Lite", _p("model strength", "image sets"), 1, "5.0-lite"),
        Family("5.0 Pro", _p("model strength", "finest detail, slow"), 2, "5.0-pro"),
        Family("5.0 Flash", _p("model strength", "fastest"), 1, "5.0-flash"),
        Family("5.5", _p("model strength", "best quality"), 1, "5.5"),
    )
}

_ID = re.compile(r"seed(?:ream|ance)-(\d)-(\d)(?:-(lite|pro|flash))?")


def family_of(model: str) -> Family | None:
    """The family of any provider's model id, or None (e.g. an Ark ``ep-…`` endpoint, the local placeholder).

    ``seedream-5-0-260128`` (no variant) is 5.0 Lite, as ModelArk names it; Novita writes ``5.0-lite``,
    gccai ``Doubao-Seedream-5.0-lite``, and the gccai docs' own example spells 4.5 ``seedance``.
    """
    match = _ID.search(model.lower().replace(".", "-").replace("_", "-"))
    if match is None:
        return None
    major, minor, variant = match.groups()
    if (major, minor) == ("5", "0"):
        return FAMILIES[f"5.0-{variant or 'lite'}"]
    return FAMILIES.get(f"{major}.{minor}")
