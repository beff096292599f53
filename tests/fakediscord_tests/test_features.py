"""The fake Discord serves what discord.py does: connect, sync, respond, upload, click, resume."""

from __future__ import annotations

import asyncio
import io
import time

import discord
import discord.gateway
import discord.http
import pytest
from PIL import Image

from tests.fakediscord import (
    CallbackType,
    ErrorCode,
)
from tests.fakediscord_tests.conftest import World, png, start_bot

# --- the happy paths ---------------------------------------------------------------------------------------


async def test_connect_sync_and_round_trip_is_fast(world: World) -> None:
    started = time.perf_counter()
    bot = await start_bot(world)
    handle = await world.fake.slash_command("ping", user=world.alice, channel=world.general)
    reply = await handle.wait_for_response()
    elapsed = time.perf_counter() - started
    ack = handle.ack_latency or 0.0
    print(f"\nconnect + sync + /ping round trip: {elapsed * 1000:.0f} ms (ack {ack * 1000:.1f} ms)")
    assert reply.content == "pong" and handle.callback_type == CallbackType.CHANNEL_MESSAGE_WITH_SOURCE
    assert elapsed < 3.0
    fake = world.fake
    assert bot.user is not None and bot.user.id == fake.bot.id
    assert [r.t for r in fake.dispatches()][:2] == ["READY", "GUILD_CREATE"]
    identify = fake.received_ops(2)[0].d
    assert identify["token"] == fake.token and identify["intents"] == discord.Intents.default().value
    assert fake.gateway.connections and next(iter(fake.gateway.connections)).compress == "zlib-stream"
    assert bot.get_guild(world.guild.id) is not None and bot.get_channel(world.general.id) is not None
    synced = {c["name"]: c for c in fake.commands(world.guild)}
    assert {"ping", "imagine", "menu", "feedback", "Describe"} <= set(synced)
    assert synced["imagine"]["options"][1]["type"] == 11  # attachment option
    assert fake.calls("GET /users/@me") and fake.calls("GET /gateway/bot")
    assert fake.calls("PUT /applications/{application_id}/guilds/{guild_id}/commands")
    assert not fake.unknown_routes


async def test_defer_followup_with_uploaded_png_and_attachment_input(online: World) -> None:
    fake = online.fake
    h = await fake.slash_command(
        "imagine",
        user=online.alice,
        channel=online.general,
        options={"prompt": "a cat"},
        attachments={"image": ("in.png", png(20, 10))},
    )
    assert h.record.payload["data"]["resolved"]["attachments"]
    msg = await h.wait_for_response()
    assert h.callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
    assert msg.content == "a cat from 20x10" and not msg.loading and msg.id == h.original.id  # type: ignore[union-attr]
    (att,) = msg.attachments
    assert (att.filename, att.content_type, att.width, att.height) == ("out.png", "image/png", 64, 32)
    with Image.open(io.BytesIO(await fake.fetch(att.url))) as img:
        assert img.format == "PNG" and img.size == (64, 32) and img.getpixel((0, 0)) == (0, 0, 255)
    assert msg.embeds[0]["image"]["url"] == att.url and msg.embeds[0]["title"] == "a cat"
    (upload,) = fake.calls("POST /webhooks/{webhook_id}/{webhook_token}")
    assert upload.files[0].field == "files[0]" and upload.json["attachments"][0]["filename"] == "out.png"
    assert fake.read_channel(online.general) == [msg]


async def test_button_click_updates_message(online: World) -> None:
    fake = online.fake
    h = await fake.slash_command("menu", user=online.alice, channel=online.general)
    msg = await h.wait_for_response()
    assert msg.custom_ids() == ["menu:go", "menu:defer"]
    click = await fake.click_button(msg, "menu:go", user=online.alice)
    await click.wait_for_callback()
    assert click.callback_type == CallbackType.UPDATE_MESSAGE
    assert fake.message(msg.id).content == "clicked" and fake.message(msg.id).components == []


async def test_deferred_component_update_edits_clicked_message(online: World) -> None:
    fake = online.fake
    msg = await (await fake.slash_command("menu", user=online.alice, channel=online.general)).wait_for_response()
    click = await fake.click_button(msg, "menu:defer", user=online.alice)
    (secret,) = await click.wait_for_followups()
    assert click.callback_type == CallbackType.DEFERRED_UPDATE_MESSAGE
    assert click.original is not None and click.original.id == msg.id and msg.content == "deferred edit"
    assert secret.content == "secret" and secret.ephemeral and secret.interaction_user_id == online.alice.id
    assert fake.calls("PATCH /webhooks/{webhook_id}/{webhook_token}/messages/{message_id}")[0].path.endswith(
        "@original"
    )


async def test_autocomplete_and_user_context_menu(online: World) -> None:
    fake = online.fake
    h = await fake.autocomplete(
        "imagine", user=online.alice, channel=online.general, options={"prompt": "ca"}, focused="prompt"
    )
    await h.wait_for_callback()
    assert h.autocomplete_choices == [{"name": "cat", "value": "cat"}, {"name": "car", "value": "car"}]
    h = await fake.user_context_menu("Profile", online.alice, user=online.alice, channel=online.general)
    assert (await h.wait_for_response()).content == "user alice in Test Guild"


async def test_direct_messages(online: World) -> None:
    fake, bot = online.fake, online.client
    dm = fake.dm_channel(online.alice)
    await fake.send_message(dm, online.alice, "psst")
    reply = await fake.wait_for_message(dm, lambda m: m.author_id == fake.bot.id)
    assert reply.content == "dm ok: psst"  # DMs carry content without the message_content intent
    h = await fake.slash_command("ping", user=online.alice, channel=dm)
    assert (await h.wait_for_response()).content == "pong" and "user" in h.record.payload
    await (await bot.fetch_user(online.alice.id)).send("hello")
    assert fake.read_channel(dm)[-1].content == "hello"


async def test_injected_errors_surface_as_discord_errors(online: World) -> None:
    fake = online.fake
    fake.inject_error("POST /channels/{channel_id}/messages", status=403, code=ErrorCode.MISSING_PERMISSIONS)
    with pytest.raises(discord.Forbidden) as info:
        await online.channel().send("nope")
    assert info.value.code == 50013 and info.value.text == "Missing Permissions"
    fake.inject_error(None, status=503, message="upstream connect error")
    with pytest.raises(discord.DiscordServerError):
        await online.client.fetch_channel(online.general.id)
    assert (await online.channel().send("fine")).content == "fine"
    assert [c.injected for c in fake.rest_log[-3:]] == ["error", "error", None]


async def test_modal_submit(online: World) -> None:
    fake = online.fake
    h = await fake.slash_command("feedback", user=online.alice, channel=online.general)
    await h.wait_for_callback()
    assert h.callback_type == CallbackType.MODAL and h.modal is not None and h.modal["title"] == "Feedback"
    submitted = await h.submit_modal({"feedback:text": "great bot"})
    reply = await submitted.wait_for_response()
    assert reply.content == "got great bot" and reply.ephemeral
    assert reply not in fake.read_channel(online.general)
    assert reply in fake.read_channel(online.general, user=online.alice)


async def test_modal_file_upload_submits_attachment_ids_and_resolved_attachments(online: World) -> None:
    fake = online.fake
    h = await fake.slash_command("upload", user=online.alice, channel=online.general)
    await h.wait_for_callback()
    (label,) = h.modal["components"] if h.modal else []
    assert label["type"] == 18 and label["component"]["type"] == 19
    with pytest.raises(ValueError, match="takes 1-2 files, not 0"):  # the client enforces min_values
        await h.submit_modal({"upload:files": []})
    with pytest.raises(ValueError, match="not 3"):
        await h.submit_modal({"upload:files": [("a.png", b"1"), ("b.png", b"2"), ("c.png", b"3")]})
    submitted = await h.submit_modal({"upload:files": [("a.png", png(4, 4)), ("b.txt", b"hello")]})
    data = submitted.record.payload["data"]
    (component,) = [label["component"] for label in data["components"]]
    assert sorted(component["values"]) == sorted(data["resolved"]["attachments"])
    reply = await submitted.wait_for_response()
    assert reply.content == f"got a.png {len(png(4, 4))} {len(png(4, 4))}, b.txt 5 5"


def test_a_file_upload_outside_a_label_is_refused() -> None:
    from tests.fakediscord.interactions import _validate_modal
    from tests.fakediscord.rules import DiscordError

    row = {"type": 1, "components": [{"type": 19, "custom_id": "f"}]}
    with pytest.raises(DiscordError) as info:
        _validate_modal({"custom_id": "m", "title": "t", "components": [row]})
    assert info.value.code == 50035 and "0" in info.value.errors["components"]  # type: ignore[index]
    label = {"type": 18, "label": "Pictures", "component": {"type": 19, "custom_id": "f", "max_values": 11}}
    with pytest.raises(DiscordError):
        _validate_modal({"custom_id": "m", "title": "t", "components": [label]})
    label["component"]["max_values"] = 10  # type: ignore[index]
    _validate_modal({"custom_id": "m", "title": "t", "components": [label]})


async def test_message_context_menu(online: World) -> None:
    fake = online.fake
    target = await fake.send_message(online.general, online.alice, "hello there")
    h = await fake.message_context_menu("Describe", target, user=online.alice)
    assert h.record.payload["data"]["target_id"] == str(target.id)
    reply = await h.wait_for_response()
    assert reply.content == f"target {target.id}: hello there"  # resolved.messages carries content


async def test_mention_reply_thread_and_message_content_rule(online: World) -> None:
    fake, bot = online.fake, online.client
    await fake.send_message(online.general, online.alice, "no mention")
    mention = await fake.send_message(online.general, online.alice, f"{fake.bot.mention} hi", mentions=[fake.bot])
    thread = await fake.wait_for(lambda: next(iter(fake.threads(online.general)), None))
    assert [m.content for m in bot.seen] == ["", f"<@{fake.bot.id}> hi"]  # no message_content intent
    reply = next(m for m in fake.bot_messages(online.general))
    assert reply.content == f"you said: <@{fake.bot.id}> hi"
    assert reply.message_reference is not None and reply.message_reference["message_id"] == str(mention.id)
    assert thread.id == mention.id and thread.name == "discussion" and fake.dispatches("THREAD_CREATE")
    await fake.wait_for(lambda: bot.get_channel(thread.id))
    await bot.get_channel(thread.id).send("in thread")  # type: ignore[union-attr]
    assert [m.content for m in fake.read_channel(thread)] == ["in thread"]


async def test_resume_replays_missed_dispatches(online: World) -> None:
    fake, bot = online.fake, online.client
    session = bot.ws.session_id
    async with fake.gateway_outage():
        missed = await fake.send_message(online.general, online.alice, "while you were away")
    await fake.wait_for(lambda: any(m.id == missed.id for m in bot.seen))
    assert fake.received_ops(6)[0].d["session_id"] == session  # RESUME
    assert fake.received_ops(6)[0].path == "/resume"  # resume_gateway_url from READY
    assert fake.dispatches("RESUMED") and len(fake.received_ops(2)) == 1  # no second IDENTIFY
    assert bot.ws.session_id == session
    h = await fake.slash_command("ping", user=online.alice, channel=online.general)
    assert (await h.wait_for_response()).content == "pong"


async def test_invalid_session_reidentifies_through_adopted_gateway(online: World) -> None:
    fake, bot = online.fake, online.client
    await fake.invalidate_session()
    await fake.wait_for(lambda: len(fake.received_ops(2)) == 2)
    assert fake.received_ops(2)[1].path == "/gateway"  # DEFAULT_GATEWAY, set by adopt_gateway
    await fake.wait_for(lambda: bot.get_guild(online.guild.id) is not None and bot.ws.session_id != "")
    h = await fake.slash_command("ping", user=online.alice, channel=online.general)
    assert (await h.wait_for_response()).content == "pong"


async def test_callback_answer_does_not_wait_for_the_gateway(online: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Discord answers an interaction callback without waiting for its gateway fan-out, like the real one:
    with MESSAGE_CREATE held back, the public defer is still answered and the bot goes on to edit it."""
    fake = online.fake
    release = asyncio.Event()
    dispatch = fake.gateway.dispatch

    async def held(event: str, *args: object, **kwargs: object) -> None:
        if event == "MESSAGE_CREATE":
            await release.wait()
        await dispatch(event, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fake.gateway, "dispatch", held)
    try:
        h = await fake.slash_command("imagine", user=online.alice, channel=online.general, options={"prompt": "a cat"})
        deadline = time.monotonic() + 5
        while not fake.calls("POST /webhooks/{webhook_id}/{webhook_token}"):
            assert time.monotonic() < deadline, "the defer's HTTP answer waited for the gateway"
            await asyncio.sleep(0.01)
    finally:
        release.set()
    msg = await h.wait_for_response()

    def events() -> list[tuple[str | None, str]]:
        return [(r.t, r.d["id"]) for r in fake.dispatches() if r.t in ("MESSAGE_CREATE", "MESSAGE_UPDATE")]

    while len(events()) < 2:
        assert time.monotonic() < deadline + 5, events()
        await asyncio.sleep(0.01)
    assert events() == [("MESSAGE_CREATE", str(msg.id)), ("MESSAGE_UPDATE", str(msg.id))]  # in their order
