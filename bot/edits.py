"""Edits asked for in ordinary Discord messages: is the bot addressed, what is the instruction, which images.

Pure functions over plain data (no discord.py), so the rules are tested without a gateway. The Discord
adapter (``cogs.edits``) turns a message into ``MessageFacts`` and acts on what these functions decide.
Only URLs whose origin is allow-listed are ever returned for download: everything else is reported as
``Skipped`` with a reason the member can read (no SSRF through a pasted link or a link embed).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from bot.errors import InvalidRequest
from bot.i18n import Text, _, _n, join
from bot.prompts import clean_prompt
from bot.providers.base import Capabilities

T = TypeVar("T")
_LINK = re.compile(r"<?(https?://[^\s<>]+)>?", re.IGNORECASE)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif")
MAX_LISTED_SKIPS = 8


@dataclass(frozen=True)
class AttachmentFacts:
    url: str
    filename: str
    content_type: str | None = None
    size: int = 0


@dataclass(frozen=True)
class MessageFacts:
    """What we know about one message: its text, its files, and each embed image's candidate URLs."""

    content: str = ""
    attachments: tuple[AttachmentFacts, ...] = ()
    #: One tuple per embed image: the original URL first, then Discord's proxy URL (either may be allowed).
    embed_images: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Skipped:
    """An image or link we did not use, and why (shown to the member)."""

    what: str
    why: str | Text


@dataclass
class ImagePick:
    urls: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class Trigger(Enum):
    IGNORE = "ignore"
    #: The message mentions the bot in its text ("@Seedream make it night").
    MENTION = "mention"
    #: A reply to one of our result messages, without a mention in the text.
    REPLY_TO_RESULT = "reply_to_result"


def trigger_of(
    *,
    from_bot_or_webhook: bool,
    text_mentions_bot: bool,
    pinged_by_reply: bool,
    replies_to_our_result: bool,
    content_intent: bool,
) -> Trigger:
    """Decide whether a message asks us for an edit.

    Bots and webhooks are never answered (no loops). A reply to our result counts without a text mention
    only when we can read it: with the Message Content intent, or when the reply pings us (Discord then
    delivers the content). A reply ping to one of our other messages (help, errors) is not a request.
    """
    if from_bot_or_webhook:
        return Trigger.IGNORE
    if text_mentions_bot:
        return Trigger.MENTION
    if replies_to_our_result and (content_intent or pinged_by_reply):
        return Trigger.REPLY_TO_RESULT
    return Trigger.IGNORE


def _mention_pattern(mention_ids: Sequence[int]) -> re.Pattern[str] | None:
    if not mention_ids:
        return None
    return re.compile(r"<@[!&]?(?:" + "|".join(str(int(i)) for i in mention_ids) + r")>")


def mentions_in_text(content: str, mention_ids: Sequence[int]) -> bool:
    """True if the text mentions one of ``mention_ids`` (the bot user, or its managed role)."""
    pattern = _mention_pattern(mention_ids)
    return bool(pattern and pattern.search(content))


def links_in(content: str) -> list[str]:
    """Every http(s) link in the text, in order, without the <> that suppress Discord's embeds."""
    return list(dict.fromkeys(m.group(1).rstrip(".,;:!?)]}'\"") for m in _LINK.finditer(content)))


def instruction_from(content: str, mention_ids: Sequence[int]) -> str:
    """The edit instruction: the text without our mention and without links (they are image sources)."""
    pattern = _mention_pattern(mention_ids)
    text = pattern.sub(" ", content) if pattern else content
    return clean_prompt(_LINK.sub(" ", text))


def shown(url: str, limit: int = 60) -> str:
    """A link as a member may see it in a notice: host and path, shortened, inside code (not clickable)."""
    parts = urlsplit(url)
    text = (parts.netloc + parts.path) or url
    text = text.replace("`", "")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"`{text}`"


def file_label(url: str) -> str:
    """A downloaded file as the member knows it: its file name (the link itself when it has none)."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]).replace("`", "")
    return f"`{name}`" if name else shown(url)


def _looks_like_image(attachment: AttachmentFacts) -> bool:
    if attachment.content_type:
        return attachment.content_type.lower().startswith("image/")
    return attachment.filename.lower().endswith(IMAGE_EXTENSIONS)


def pick_images(
    sources: Sequence[MessageFacts],
    *,
    is_allowed: Callable[[str], bool],
    max_bytes: int,
    text_links_of: MessageFacts | None = None,
) -> ImagePick:
    """The image URLs to download from ``sources`` (in order), and what was skipped.

    Attachments and embed images of every source count; links written in ``text_links_of`` (the member's
    own message) count only when allow-listed. Nothing outside ``is_allowed`` is ever returned.
    """
    pick = ImagePick()
    host_reason = _("not a file uploaded to Discord, and I never download other links")

    def take(url: str) -> None:
        if url not in pick.urls:
            pick.urls.append(url)

    def skip(what: str, why: Text) -> None:
        if all(s.what != what for s in pick.skipped):
            pick.skipped.append(Skipped(what, why))

    for source in sources:
        for attachment in source.attachments:
            name = f"`{attachment.filename.replace('`', '')}`"
            if not _looks_like_image(attachment):
                skip(name, _("not an image (PNG, JPEG or WebP please)"))
            elif attachment.size > max_bytes:
                skip(name, _("larger than the {limit} MiB I accept", limit=max_bytes // (1024 * 1024)))
            elif not is_allowed(attachment.url):
                skip(name, host_reason)
            else:
                take(attachment.url)
        for candidates in source.embed_images:
            allowed = next((url for url in candidates if is_allowed(url)), None)
            if allowed is not None:
                take(allowed)
            elif candidates:
                skip(shown(candidates[0]), host_reason)
    if text_links_of is not None:
        for link in links_in(text_links_of.content):
            if is_allowed(link):
                take(link)
            else:
                skip(shown(link), host_reason)
    return pick


def reference_limit(caps: Capabilities, count: int) -> int:
    """How many reference images the provider takes next to ``count`` outputs."""
    limit = caps.max_references
    if caps.max_total_images is not None:
        limit = min(limit, caps.max_total_images - count)
    return max(0, limit)


def cap_references(candidates: Sequence[T], limit: int, provider_label: str) -> tuple[list[T], Text | None]:
    """The first ``limit`` candidates, and a note for the member when some were left out."""
    kept = list(candidates[:limit])
    left_out = len(candidates) - len(kept)
    if left_out <= 0:
        return kept, None
    return kept, _n(
        "{provider} takes at most {count} reference image here, so I used the first {count} and left out {left_out}.",
        "{provider} takes at most {count} reference images here, so I used the first {count} and left out {left_out}.",
        limit,
        provider=provider_label,
        left_out=left_out,
    )


def parse_count(text: str | None, most: int) -> int:
    """The number of images typed in a modal (empty means 1), refused politely outside 1..most."""
    raw = (text or "").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise InvalidRequest(_("Please give a number of images from 1 to {most}.", most=most))
    return int(raw)


def skipped_notice(skipped: Sequence[Skipped]) -> Text:
    """One short message listing what was left out and why."""
    lines: list[str | Text] = [_("I did not use:")]
    lines += [_("• {what}: {why}", what=s.what, why=s.why) for s in skipped[:MAX_LISTED_SKIPS]]
    if len(skipped) > MAX_LISTED_SKIPS:
        lines.append(_("• …and {count} more", count=len(skipped) - MAX_LISTED_SKIPS))
    return join(lines, "\n")


def help_text(bot_name: str, *, content_intent: bool, menu: str = "Edit with Seedream") -> Text:
    """The polite answer when no image was found: the ways to ask for an edit (``menu``: the Apps entry's name
    as the member's client shows it)."""
    lines = [
        _("I couldn't find an image to edit. You can ask me like this:"),
        _("1. Reply to a message with pictures and mention me: “@{bot} make it night, add snow”.", bot=bot_name),
        _(
            "2. Attach pictures to a message that mentions me, e.g. “@{bot} turn this into a watercolour”.",
            bot=bot_name,
        ),
        _("3. Right-click (or long-press) a message with pictures → Apps → **{menu}**.", menu=menu),
    ]
    if content_intent:
        lines.append(_("You can also simply reply to one of my pictures and say what to change."))
    return join(lines, "\n")


def empty_instruction_text(bot_name: str) -> Text:
    return _("Please tell me what to change, for example “@{bot} make it night, add snow”.", bot=bot_name)
