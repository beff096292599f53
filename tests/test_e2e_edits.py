"""Edits asked for in plain messages and with the "Edit with Seedream" menu, end to end: the real bot
entry point against the fake Discord, real SQLite, the local provider (and Leonardo's strict fake)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from bot import sizes
from bot.jobs import Job
from cogs.app import SeedreamBot
from tests.botrunner import bot_settings, running_bot, wait_for_card
from tests.fakediscord import CallbackType, FakeChannel, FakeDiscord, FakeMessage, FakeUser, Perm
from tests.fakeproviders.leonardo import FakeLeonardo

MENU = "Edit with Seedream"


def png(width: int = 96, height: int = 64, colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


class World:
    async def build(self, fake: FakeDiscord) -> World:
        self.fake = fake
        self.guild = await fake.add_guild("Koalas")
        self.channel = await fake.add_channel(self.guild, "art")
        self.alice, self.bob = fake.add_user("alice"), fake.add_user("bob")
        for user in (self.alice, self.bob):
            await fake.add_member(self.guild, user)
        return self

    @property
    def mention(self) -> str:
        return self.fake.bot.mention

    def bot_replies_to(self, message: FakeMessage) -> list[FakeMessage]:
        return [
            m
            for m in self.fake.state.messages.values()
            if m.author_id == self.fake.bot.id
            and not m.deleted
            and (m.message_reference or {}).get("message_id") == str(message.id)
        ]

    async def reply_from_bot(self, message: FakeMessage) -> FakeMessage:
        return await self.fake.wait_for(lambda: next(iter(self.bot_replies_to(message)), None), timeout=10)

    async def thread_off(self, message: FakeMessage) -> FakeChannel:
        """The thread of an edit asked for in ``message``: it hangs off the bot's card, the reply to the
        message (threads opened from a message carry the message's id, as on Discord)."""
        card = await self.reply_from_bot(message)
        return await self.fake.wait_for(lambda: self.fake.state.channels.get(card.id), timeout=10)

    async def first_thread(self) -> FakeChannel:
        return await self.fake.wait_for(lambda: next(iter(self.fake.threads(self.channel)), None), timeout=10)

    async def results_in(self, channel: FakeChannel, count: int = 1) -> list[FakeMessage]:
        def posted() -> list[FakeMessage] | None:
            found = [m for m in self.fake.bot_messages(channel) if m.attachments]
            return found if len(found) >= count else None

        return await self.fake.wait_for(posted, timeout=15)

    async def plain_reply(self, channel: FakeChannel, user: FakeUser, content: str, to: FakeMessage) -> FakeMessage:
        """A reply with the client's reply ping switched off: it does not mention the bot at all."""
        body: dict[str, Any] = {
            "content": content,
            "message_reference": {"message_id": str(to.id), "channel_id": str(to.channel_id)},
            "allowed_mentions": {"parse": ["users", "roles", "everyone"], "replied_user": False},
        }
        return await self.fake.core.messages.create(channel, user.id, body, [])

    async def completed_edit(self, channel: FakeChannel, reply_to: FakeMessage | None = None) -> FakeChannel:
        """A member's edit run to its posted result. Used as a barrier: it takes the same path as the message
        sent just before it, so had that one been accepted, its job and thread would exist by now too."""
        probe = await self.fake.send_message(
            channel, self.alice, f"{self.mention} barrier", attachments=[("b.png", png())], reply_to=reply_to
        )
        thread = channel if reply_to is not None else await self.thread_off(probe)
        await self.fake.wait_for(
            lambda: any(m.attachments and m.embeds[0]["title"] == "barrier" for m in self.fake.bot_messages(thread)),
            timeout=10,
        )
        return thread


async def jobs(bot: SeedreamBot, user: FakeUser, guild_id: int) -> list[Job]:
    return await bot.engine.jobs.recent_for(user.id, guild_id)


def labels(message: FakeMessage) -> list[str]:
    return [c["label"] for row in message.components for c in row["components"]]


async def test_reply_with_mention_edits_a_members_upload_without_the_content_intent(tmp_path: Path) -> None:
    async with FakeDiscord(message_content_enabled=False) as fake:
        world = await World().build(fake)
        async with running_bot(fake, bot_settings(fake, world.guild, tmp_path)) as bot:
            upload = await fake.send_message(world.channel, world.alice, "my cat", attachments=[("cat.png", png())])
            ask = await fake.send_message(
                world.channel, world.bob, f"{world.mention} make it night, add snow", reply_to=upload
            )

            card = await world.reply_from_bot(ask)  # one reply: the job's card
            thread = await fake.wait_for(lambda: next(iter(fake.threads(world.channel)), None), timeout=10)
            assert thread.id == card.id  # the thread hangs off the card
            assert thread.name == "make it night, add snow"
            (result,) = await world.results_in(thread)
            assert result.embeds[0]["title"] == "make it night, add snow"
            assert labels(result)[:3] == ["🎲 Reroll", "✏️ Edit", "🗑️ Delete"]
            assert result.allowed_mentions == {"parse": []}
            with Image.open(io.BytesIO(result.attachments[0].data)) as image:
                assert image.size == sizes.dimensions("3:2", "1K")  # "auto" followed the 96×64 upload

            (job,) = await jobs(bot, world.bob, world.guild.id)
            assert job.kind == "edit" and job.request.prompt == "make it night, add snow"
            assert [r.size_bytes for r in job.request.references] == [len(upload.attachments[0].data)]
            status = fake.message(job.delivery.card_message_id)
            assert status is card and status.channel_id == world.channel.id
            assert (status.message_reference or {}).get("message_id") == str(ask.id)
            await fake.wait_for(lambda: "Done" in status.embeds[0]["description"] or None)  # and is kept current
            assert [m.id for m in fake.bot_messages(world.channel)] == [card.id]  # nothing else in the channel
            assert fake.unknown_routes == []


async def test_without_thread_permission_the_answer_is_a_reply_in_the_channel(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        await fake.set_overwrite(world.channel, fake.bot_role(world.guild), deny=Perm.CREATE_PUBLIC_THREADS)
        async with running_bot(fake, bot_settings(fake, world.guild, tmp_path)):
            ask = await fake.send_message(
                world.channel, world.bob, f"{world.mention} make it night", attachments=[("cat.png", png())]
            )
            status = await world.reply_from_bot(ask)
            assert status.embeds[0]["title"] == "make it night"
            (result,) = await world.results_in(world.channel)
            assert "can't create a thread" in result.embeds[0].get("description", "")
            assert fake.threads(world.channel) == []


async def test_attachments_with_a_mention_are_the_references(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        async with running_bot(fake, bot_settings(fake, world.guild, tmp_path)) as bot:
            pictures = [("a.png", png(colour="red")), ("b.png", png(colour="blue"))]
            ask = await fake.send_message(
                world.channel, world.alice, f"{world.mention} turn these into one watercolour", attachments=pictures
            )
            thread = await world.thread_off(ask)
            await world.results_in(thread)
            (job,) = await jobs(bot, world.alice, world.guild.id)
            assert len(job.request.references) == 2
            assert job.request.prompt == "turn these into one watercolour"


async def test_a_plain_reply_to_our_result_edits_it_when_the_intent_is_on(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        settings = bot_settings(fake, world.guild, tmp_path, discord={"message_content_intent": True})
        async with running_bot(fake, settings) as bot:
            handle = await fake.slash_command(
                "imagine", user=world.alice, channel=world.channel, options={"prompt": "a koala"}
            )
            await wait_for_card(handle)
            thread = await world.first_thread()
            (first,) = await world.results_in(thread)
            await world.plain_reply(thread, world.alice, "now at night", to=first)

            await world.results_in(thread, count=2)
            edit, parent = await jobs(bot, world.alice, world.guild.id)
            assert edit.kind == "edit" and edit.parent_job_id == parent.id
            assert edit.request.prompt == "now at night"
            assert [r.path for r in edit.request.references] == [r.path for r in parent.results]  # no download
            status = fake.message(edit.delivery.card_message_id)
            assert status.channel_id == thread.id
            assert (status.message_reference or {}).get("message_id") is not None  # answers the member's reply


async def test_a_plain_reply_to_our_result_is_ignored_with_the_intent_off(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        async with running_bot(fake, bot_settings(fake, world.guild, tmp_path)) as bot:
            handle = await fake.slash_command(
                "imagine", user=world.alice, channel=world.channel, options={"prompt": "a koala"}
            )
            await wait_for_card(handle)
            thread = await world.first_thread()
            (first,) = await world.results_in(thread)
            plain = await world.plain_reply(thread, world.alice, "now at night", to=first)
            await world.completed_edit(thread, reply_to=first)  # the mention form keeps working
            prompts = [j.request.prompt for j in await jobs(bot, world.alice, world.guild.id)]
            assert prompts == ["barrier", "a koala"]
            assert world.bot_replies_to(plain) == []


async def test_context_menu_opens_a_modal_then_runs_the_edit(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        async with running_bot(fake, bot_settings(fake, world.guild, tmp_path)) as bot:
            upload = await fake.send_message(world.channel, world.alice, "", attachments=[("cat.png", png())])
            handle = await fake.message_context_menu(MENU, upload, user=world.bob)
            await handle.wait_for_callback()
            assert handle.callback_type == CallbackType.MODAL
            submitted = await handle.submit_modal({"instruction": "make it night", "aspect": "16:9", "count": "2"})
            card = await wait_for_card(submitted)
            assert not card.flags & 64 and card.embeds[0]["title"] == "make it night"  # the card is public

            (result,) = await world.results_in(await world.first_thread())
            assert len(result.attachments) == 2
            with Image.open(io.BytesIO(result.attachments[0].data)) as image:
                assert image.size == sizes.dimensions("16:9", "1K")
            (job,) = await jobs(bot, world.bob, world.guild.id)
            assert job.kind == "edit" and len(job.request.references) == 1

            text_only = await fake.send_message(world.channel, world.alice, "no pictures here")
            empty = await fake.message_context_menu(MENU, text_only, user=world.bob)
            answer = await empty.wait_for_response()
            assert empty.record.modal is None and answer.flags & 64
            assert "couldn't find an image" in answer.content


async def test_links_from_foreign_hosts_are_never_fetched_and_are_reported(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, foreign_host() as (foreign, hits):
        world = await World().build(fake)
        async with running_bot(fake, bot_settings(fake, world.guild, tmp_path)) as bot:
            upload = await fake.send_message(
                world.channel,
                world.alice,
                "look",
                attachments=[("cat.png", png())],
                embeds=[{"type": "image", "image": {"url": f"{foreign}/embedded.png"}}],
            )
            await fake.send_message(
                world.channel, world.bob, f"{world.mention} like {foreign}/secret.png please", reply_to=upload
            )
            thread = await fake.wait_for(lambda: next(iter(fake.threads(world.channel)), None), timeout=10)
            (result,) = await world.results_in(thread)
            notice = result.embeds[0]["description"].replace("\\", "")  # said on the result, not in a message
            host = foreign.removeprefix("http://")
            assert "did not use" in notice and "never download" in notice
            assert f"{host}/embedded.png" in notice and f"{host}/secret.png" in notice
            (job,) = await jobs(bot, world.bob, world.guild.id)
            assert len(job.request.references) == 1 and job.request.prompt == "like please"

            only_foreign = await fake.send_message(
                world.channel, world.bob, f"{world.mention} edit {foreign}/other.png"
            )
            refusal = await world.reply_from_bot(only_foreign)
            assert "other.png" in refusal.content and "couldn't find an image" in refusal.content
            assert hits == []


async def test_messages_from_other_bots_are_ignored(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        robot = fake.add_user("robot", bot=True)
        await fake.add_member(world.guild, robot)
        async with running_bot(fake, bot_settings(fake, world.guild, tmp_path)) as bot:
            loud = await fake.send_message(
                world.channel, robot, f"{world.mention} make it night", attachments=[("cat.png", png())]
            )
            barrier = await world.completed_edit(world.channel)
            assert world.bot_replies_to(loud) == []
            assert await jobs(bot, robot, world.guild.id) == []
            assert fake.threads(world.channel) == [barrier]


async def test_no_image_gets_the_three_ways_in_as_a_dismissable_reply(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        async with running_bot(fake, bot_settings(fake, world.guild, tmp_path)):
            ask = await fake.send_message(world.channel, world.bob, f"{world.mention} make it night")
            answer = await world.reply_from_bot(ask)
            assert "Reply to a message with pictures" in answer.content and MENU in answer.content
            assert answer.allowed_mentions is not None and answer.allowed_mentions.get("parse") == []
            dismiss = next(c["custom_id"] for row in answer.components for c in row["components"])

            foreign = await fake.click_button(answer, dismiss, user=world.alice)
            assert "Only" in (await foreign.wait_for_response()).content
            assert not fake.message(answer.id).deleted
            mine = await fake.click_button(answer, dismiss, user=world.bob)
            await mine.wait_for_callback()
            await fake.wait_for(lambda: fake.message(answer.id).deleted or None)


async def test_quota_and_moderation_refusals_come_back_as_replies(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        settings = bot_settings(fake, world.guild, tmp_path, quota={"default_limit": 1})
        async with running_bot(fake, settings) as bot:
            await bot.services.moderation.add_banned_words(world.guild.id, world.alice.id, ["gore"])
            upload = await fake.send_message(world.channel, world.alice, "", attachments=[("cat.png", png())])
            banned = await fake.send_message(world.channel, world.bob, f"{world.mention} add gore", reply_to=upload)
            assert "not allowed on this server" in (await world.reply_from_bot(banned)).content

            first = await fake.send_message(world.channel, world.bob, f"{world.mention} add a hat", reply_to=upload)
            await world.results_in(await world.thread_off(first))
            second = await fake.send_message(world.channel, world.bob, f"{world.mention} add a scarf", reply_to=upload)
            refusal = await world.reply_from_bot(second)
            assert "0 of 1 left" in refusal.content and "<t:" in refusal.content
            (only,) = await jobs(bot, world.bob, world.guild.id)
            assert only.request.prompt == "add a hat"


async def test_channels_closed_by_moderators_stay_silent(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        other = await fake.add_channel(world.guild, "studio")
        async with running_bot(fake, bot_settings(fake, world.guild, tmp_path)) as bot:
            await bot.services.moderation.set_allowed_channels(world.guild.id, world.alice.id, [other.id])
            closed = await fake.send_message(
                world.channel, world.bob, f"{world.mention} make it night", attachments=[("cat.png", png())]
            )
            await world.completed_edit(other)
            assert world.bot_replies_to(closed) == [] and fake.threads(world.channel) == []
            assert await jobs(bot, world.bob, world.guild.id) == []


async def test_an_edit_of_a_leonardo_result_reuses_its_generated_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    leonardo = FakeLeonardo()
    leonardo.pending_polls = 0
    await leonardo.start()
    monkeypatch.setenv("LEONARDO_E2E_KEY", leonardo.api_key)
    try:
        async with FakeDiscord() as fake:
            world = await World().build(fake)
            provider = {
                "kind": "leonardo",
                "base_url": leonardo.base_url,
                "api_key_env": "LEONARDO_E2E_KEY",
                "model": "seedream-4.0",
                "poll_interval_seconds": 0.01,
            }
            settings = bot_settings(
                fake, world.guild, tmp_path, providers={"leo": provider}, generation={"default_provider": "leo"}
            )
            async with running_bot(fake, settings) as bot:
                handle = await fake.slash_command(
                    "imagine", user=world.alice, channel=world.channel, options={"prompt": "a lighthouse"}
                )
                await wait_for_card(handle)
                thread = await world.first_thread()
                (first,) = await world.results_in(thread)
                await fake.send_message(thread, world.bob, f"{world.mention} make it stormy", reply_to=first)
                await world.results_in(thread, count=2)

                (edit,) = await jobs(bot, world.bob, world.guild.id)
                assert edit.kind == "edit" and edit.provider == "leo"
                (generated,) = [i["id"] for g in leonardo.generations.values() for i in g.images][:1]
                creates = [c.body for c in leonardo.calls_to("POST", "/v2/generations")]
                assert len(creates) == 2
                references = creates[1]["parameters"]["guidances"]["image_reference"]
                assert [r["image"] for r in references] == [{"id": generated, "type": "GENERATED"}]
                assert leonardo.uploaded_images() == []  # no second upload of our own result
    finally:
        await leonardo.stop()


@asynccontextmanager
async def foreign_host() -> AsyncIterator[tuple[str, list[str]]]:
    """A web server on another port of the same host: any request to it would be an SSRF."""
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=png(), content_type="image/png")

    app = web.Application()
    app.router.add_get("/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", hits
    finally:
        await runner.cleanup()
