"""The "Edit with Seedream" modal takes the member's own image as a file upload (Discord's modal file
upload component), checked like any attachment; end to end against the fake Discord."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tests.botrunner import bot_settings, running_bot, wait_for_card
from tests.fakediscord import CallbackType, FakeDiscord, FileSpec
from tests.test_e2e_edits import MENU, World, png


async def test_an_edit_from_the_modals_uploaded_file(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        guild, channel, alice = world.guild, world.channel, world.alice
        async with running_bot(fake, bot_settings(fake, guild, tmp_path)) as bot:
            source = await fake.send_message(channel, alice, "", attachments=[("cat.png", png(colour="red"))])
            handle = await fake.message_context_menu(MENU, source, user=alice)
            await handle.wait_for_callback()
            assert handle.callback_type == CallbackType.MODAL
            (upload,) = [c for c in handle.modal["components"] if c["type"] == 18 and c["component"]["type"] == 19]
            assert upload["component"]["required"] is False  # optional: the message's image alone still works

            mine = png(80, 80, colour="blue")
            submitted = await handle.submit_modal({"instruction": "make it night", "upload": ("mine.png", mine)})
            assert submitted.record.payload["data"]["resolved"]["attachments"]  # as Discord submits uploads
            card = await wait_for_card(submitted)
            assert card.embeds[0]["title"] == "make it night"
            (job,) = await bot.engine.jobs.recent_for(alice.id, guild.id)
            assert job.kind == "edit" and len(job.request.references) == 2
            first = job.request.references[0]
            with Image.open(first.path) as image:  # the uploaded image is the one edited, the message's follows
                assert image.size == (80, 80) and image.getpixel((0, 0))[:3] == (0, 0, 255)


async def test_an_uploaded_file_that_is_not_an_image_is_refused_and_nothing_is_charged(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        guild, channel, alice = world.guild, world.channel, world.alice
        settings = bot_settings(fake, guild, tmp_path, generation={"max_reference_bytes": 2048})
        async with running_bot(fake, settings) as bot:
            source = await fake.send_message(channel, alice, "", attachments=[("cat.png", png())])
            for upload, why in (
                (FileSpec("notes.txt", b"hello", content_type="text/plain"), "not an image"),
                (FileSpec("huge.png", png(), content_type="image/png", declared_size=5 * 1024 * 1024), "limit"),
            ):
                handle = await fake.message_context_menu(MENU, source, user=alice)
                await handle.wait_for_callback()
                submitted = await handle.submit_modal({"instruction": "make it night", "upload": upload})
                answer = await submitted.wait_for_response()
                assert answer.flags & 64 and why in answer.content
            assert await bot.engine.jobs.recent_for(alice.id, guild.id) == []
            assert [m for m in fake.bot_messages(channel) if m.embeds] == []
