"""The rules behind edits asked for in plain messages (bot.edits): who is addressed, instruction, images."""

from __future__ import annotations

import pytest

from bot.edits import (
    AttachmentFacts,
    MessageFacts,
    Skipped,
    Trigger,
    cap_references,
    file_label,
    help_text,
    instruction_from,
    links_in,
    mentions_in_text,
    parse_count,
    pick_images,
    reference_limit,
    skipped_notice,
    trigger_of,
)
from bot.errors import InvalidRequest
from bot.fetch import origin_of
from bot.jobs.formats import result_range
from bot.providers.base import Capabilities

BOT, ROLE = 1111, 2222
CDN = "https://cdn.discordapp.com"
ALLOWED = {CDN, "https://media.discordapp.net"}
MiB = 1024 * 1024


def is_allowed(url: str) -> bool:
    return origin_of(url) in ALLOWED


def upload(name: str = "cat.png", *, content_type: str | None = "image/png", size: int = 1000) -> AttachmentFacts:
    return AttachmentFacts(f"{CDN}/attachments/1/2/{name}?ex=1&hm=abc", name, content_type, size)


def pick(*sources: MessageFacts, own: MessageFacts | None = None):  # type: ignore[no-untyped-def]
    return pick_images(sources, is_allowed=is_allowed, max_bytes=20 * MiB, text_links_of=own)


# -- who is addressed ---------------------------------------------------------------------------------------
def decide(**overrides: bool) -> Trigger:
    facts = {
        "from_bot_or_webhook": False,
        "text_mentions_bot": False,
        "pinged_by_reply": False,
        "replies_to_our_result": False,
        "content_intent": False,
    }
    return trigger_of(**{**facts, **overrides})


def test_a_text_mention_is_a_request() -> None:
    assert decide(text_mentions_bot=True) is Trigger.MENTION


def test_bots_and_webhooks_are_never_answered_even_when_they_mention_us() -> None:
    assert decide(from_bot_or_webhook=True, text_mentions_bot=True, replies_to_our_result=True) is Trigger.IGNORE


def test_a_plain_reply_to_our_result_counts_only_with_the_intent_or_a_reply_ping() -> None:
    assert decide(replies_to_our_result=True) is Trigger.IGNORE
    assert decide(replies_to_our_result=True, content_intent=True) is Trigger.REPLY_TO_RESULT
    assert decide(replies_to_our_result=True, pinged_by_reply=True) is Trigger.REPLY_TO_RESULT


def test_a_reply_ping_to_a_message_that_is_not_our_result_is_not_a_request() -> None:
    assert decide(pinged_by_reply=True, content_intent=True) is Trigger.IGNORE


def test_messages_that_do_not_address_us_are_ignored_with_the_intent_on() -> None:
    assert decide(content_intent=True) is Trigger.IGNORE


# -- the instruction ----------------------------------------------------------------------------------------
def test_mentions_of_the_bot_user_or_its_role_are_recognised() -> None:
    assert mentions_in_text(f"<@{BOT}> hi", [BOT])
    assert mentions_in_text(f"hi <@!{BOT}>", [BOT])
    assert mentions_in_text(f"<@&{ROLE}> hi", [BOT, ROLE])
    assert not mentions_in_text("<@999> hi", [BOT, ROLE])
    assert not mentions_in_text(f"{BOT} hi", [BOT])


def test_the_instruction_is_the_text_without_our_mention_and_links() -> None:
    text = f"<@{BOT}>  make it\u200b night,   add snow <https://example.com/x.png> <@&{ROLE}>"
    assert instruction_from(text, [BOT, ROLE]) == "make it night, add snow"


def test_other_mentions_stay_in_the_instruction() -> None:
    assert instruction_from(f"<@{BOT}> draw <@42> as a knight", [BOT]) == "draw <@42> as a knight"


def test_a_bare_mention_leaves_no_instruction() -> None:
    assert instruction_from(f" <@{BOT}> ", [BOT]) == ""


def test_links_are_found_with_or_without_angle_brackets() -> None:
    content = "see <https://a.example/1.png> and https://b.example/2.png, then https://a.example/1.png"
    assert links_in(content) == ["https://a.example/1.png", "https://b.example/2.png"]


# -- which images -------------------------------------------------------------------------------------------
def test_replied_images_come_first_then_the_replys_own() -> None:
    replied = MessageFacts(attachments=(upload("a.png"),))
    own = MessageFacts(content="go", attachments=(upload("b.png"),))
    result = pick(replied, own, own=own)
    assert [u.split("?")[0].rsplit("/", 1)[-1] for u in result.urls] == ["a.png", "b.png"]
    assert result.skipped == []


def test_non_images_and_oversize_files_are_skipped_with_a_reason() -> None:
    source = MessageFacts(
        attachments=(
            upload("notes.txt", content_type="text/plain"),
            upload("huge.png", size=21 * MiB),
            upload("fine.jpg", content_type="image/jpeg"),
        )
    )
    result = pick(source)
    assert len(result.urls) == 1 and "fine.jpg" in result.urls[0]
    assert [(s.what, "image" in str(s.why) or "MiB" in str(s.why)) for s in result.skipped] == [
        ("`notes.txt`", True),
        ("`huge.png`", True),
    ]
    assert "20 MiB" in str(result.skipped[1].why)


def test_an_attachment_without_a_content_type_counts_when_its_name_is_an_image() -> None:
    source = MessageFacts(attachments=(upload("x.webp", content_type=None), upload("x.bin", content_type=None)))
    result = pick(source)
    assert len(result.urls) == 1 and "x.webp" in result.urls[0]


def test_foreign_links_and_embeds_are_never_returned_and_are_reported() -> None:
    replied = MessageFacts(embed_images=(("https://evil.example/cat.png", "https://images-ext.example/p"),))
    own = MessageFacts(content="<@1> like http://127.0.0.1:8080/admin and http://169.254.169.254/latest")
    result = pick(replied, own, own=own)
    assert result.urls == []
    assert [s.what for s in result.skipped] == [
        "`evil.example/cat.png`",
        "`127.0.0.1:8080/admin`",
        "`169.254.169.254/latest`",
    ]
    assert all("never download" in str(s.why) for s in result.skipped)


def test_an_embed_is_used_through_whichever_of_its_urls_is_allowed() -> None:
    source = MessageFacts(embed_images=(("https://elsewhere.example/a.png", f"{CDN}/proxy/a.png"),))
    assert pick(source).urls == [f"{CDN}/proxy/a.png"]


def test_origin_must_match_scheme_host_and_port() -> None:
    own = MessageFacts(
        content=f"http://cdn.discordapp.com/a.png https://cdn.discordapp.com:8443/b.png {CDN}/c.png "
        "https://cdn.discordapp.com.evil.example/d.png"
    )
    result = pick(own=own)
    assert result.urls == [f"{CDN}/c.png"]
    assert len(result.skipped) == 3


def test_the_same_image_twice_is_used_once() -> None:
    same = MessageFacts(attachments=(upload("a.png"),))
    assert len(pick(same, same).urls) == 1


# -- limits and words -------------------------------------------------------------------------------------
def caps(max_references: int, max_total: int | None = None) -> Capabilities:
    return Capabilities(
        kind="x",
        model="m",
        aspect_ratios=("1:1",),
        resolutions=("2K",),
        max_count=4,
        max_references=max_references,
        max_total_images=max_total,
    )


def test_reference_limit_leaves_room_for_the_outputs() -> None:
    assert reference_limit(caps(6), 4) == 6
    assert reference_limit(caps(14, 15), 1) == 14
    assert reference_limit(caps(14, 15), 4) == 11


def test_more_images_than_the_provider_takes_uses_the_first_and_says_so() -> None:
    kept, note = cap_references(["a", "b", "c", "d"], 3, "leonardo")
    assert kept == ["a", "b", "c"]
    assert str(note) == "leonardo takes at most 3 reference images here, so I used the first 3 and left out 1."
    assert note is not None and note.render("de").startswith("leonardo nimmt hier höchstens 3 Referenzbilder")
    assert cap_references(["a"], 3, "leonardo") == (["a"], None)


def test_a_result_message_footer_says_which_results_it_shows() -> None:
    assert result_range("job 0123456789abcdef012 · images 3–4 of 4", 4) == range(2, 4)
    assert result_range("job 0123456789abcdef012 · images 1–1 of 1", 1) == range(0, 1)
    assert result_range("something else", 3) == range(3)
    assert result_range("job 0123456789abcdef012 · images 3–9 of 9", 4) == range(4)


def test_count_from_a_modal() -> None:
    assert parse_count("", 4) == 1
    assert parse_count(" 3 ", 4) == 3
    for bad in ("0", "5", "two", "-1"):
        with pytest.raises(InvalidRequest, match="from 1 to 4"):
            parse_count(bad, 4)


def test_help_explains_the_three_ways_in() -> None:
    text = str(help_text("Seedream", content_intent=False))
    assert "Reply to a message with pictures and mention me" in text
    assert "Attach pictures to a message that mentions me" in text
    assert "Edit with Seedream" in text
    assert "simply reply" not in text
    assert "simply reply to one of my pictures" in str(help_text("Seedream", content_intent=True))


def test_skipped_notice_lists_what_and_why_and_stays_short() -> None:
    many = [Skipped(f"`f{i}.txt`", "not an image") for i in range(12)]
    text = str(skipped_notice(many))
    assert text.startswith("I did not use:\n• `f0.txt`: not an image")
    assert text.count("\n") == 9 and text.endswith("…and 4 more")


def test_file_label_is_the_file_name() -> None:
    assert file_label(f"{CDN}/attachments/1/2/my%20cat.png?ex=1") == "`my cat.png`"
    assert file_label("https://example.com/") == "`example.com/`"
