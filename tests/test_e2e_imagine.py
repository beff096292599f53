"""/imagine end to end: the real bot entry point against the fake Discord, real SQLite, local provider."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from PIL import Image

from bot import sizes
from bot.images import read_provenance
from bot.jobs import JobState
from tests.botrunner import bot_settings, is_card, running_bot, wait_for_card
from tests.fakediscord import CallbackType, FakeDiscord, FakeMessage


def png(width: int = 64, height: int = 64, colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def embed_footer_job(message: FakeMessage) -> str:
    return str(message.embeds[0]["footer"]["text"]).split(" · ")[0].removeprefix("job ")


def result_messages(fake: FakeDiscord, channel) -> list[FakeMessage]:  # type: ignore[no-untyped-def]
    return [m for m in fake.bot_messages(channel) if m.attachments]


async def test_imagine_posts_images_in_a_thread(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        guild = await fake.add_guild("Koalas")
        channel = await fake.add_channel(guild, "art")
        alice = fake.add_user("alice")
        await fake.add_member(guild, alice)
        async with running_bot(fake, bot_settings(fake, guild, tmp_path)) as bot:
            assert {c["name"] for c in fake.commands(guild)} >= {"imagine", "jobs", "help"}
            handle = await fake.slash_command(
                "imagine",
                user=alice,
                channel=channel,
                options={"prompt": "a koala on a skateboard", "count": 2, "aspect": "16:9"},
            )
            await handle.wait_for_callback()
            assert handle.callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
            assert handle.ack_latency is not None and handle.ack_latency < 3.0
            card = await wait_for_card(handle)  # the command's own answer is the job's public card
            assert card.channel_id == channel.id and card.embeds[0]["title"] == "a koala on a skateboard"
            assert not card.flags & 64

            thread = await fake.wait_for(lambda: next(iter(fake.threads(channel)), None), timeout=10)
            assert thread.name == "a koala on a skateboard"
            assert thread.id == card.id  # started from the card
            posted = await fake.wait_for(lambda: result_messages(fake, thread) or None, timeout=10)
            (message,) = posted
            assert len(message.attachments) == 2
            for attachment in message.attachments:
                with Image.open(io.BytesIO(attachment.data)) as image:
                    assert image.size == sizes.dimensions("16:9", "1K")
                # the file itself says how to make it again (provenance, on by default)
                provenance = read_provenance(attachment.data)
                assert provenance["prompt"] == "a koala on a skateboard" and provenance["model"] == "placeholder"
                assert provenance["job_id"] == embed_footer_job(message)
            embed = message.embeds[0]
            assert embed["title"] == "a koala on a skateboard"
            assert message.allowed_mentions == {"parse": []}
            labels = [c["label"] for row in message.components for c in row["components"]]
            assert labels[:3] == ["🎲 Reroll", "✏️ Edit", "🗑️ Delete"] and "Vary 2" in labels

            job = (await bot.engine.jobs.recent_for(alice.id, guild.id))[0]
            async with asyncio.timeout(5):
                while (await bot.engine.jobs.get(job.id)).state != JobState.DONE:  # type: ignore[union-attr]
                    await asyncio.sleep(0.02)
            status = fake.message(job.delivery.card_message_id)
            assert status is card
            assert "Done" in status.embeds[0]["description"] and status.components == []
            assert [m for m in fake.bot_messages(channel) if m.id != card.id] == []  # nothing else in the channel
            assert fake.unknown_routes == []


class World:
    """A guild with one art channel and a few members, for the tests below."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    async def build(self, *, premium_tier: int = 0, upload_limit: int | None = None, members: int = 2) -> World:
        self.guild = await self.fake.add_guild("Koalas", premium_tier=premium_tier, upload_limit=upload_limit)
        self.channel = await self.fake.add_channel(self.guild, "art")
        self.users = [self.fake.add_user(f"member{i}") for i in range(members)]
        for user in self.users:
            await self.fake.add_member(self.guild, user)
        return self


async def imagine(fake: FakeDiscord, world: World, user_index: int = 0, **options: object) -> None:
    handle = await fake.slash_command(
        "imagine", user=world.users[user_index], channel=world.channel, options={"prompt": "a koala", **options}
    )
    await wait_for_card(handle)


def footers(messages: list[FakeMessage]) -> list[str]:
    return [e.get("footer", {}).get("text", "") for m in messages for e in m.embeds]


async def all_results(fake: FakeDiscord, expected_jobs: int, timeout: float = 20.0) -> list[FakeMessage]:
    def done() -> list[FakeMessage] | None:
        posted = [m for ch in fake.state.channels.values() for m in fake.bot_messages(ch) if m.attachments]
        return posted if len({f.split(" · ")[0] for f in footers(posted)}) >= expected_jobs else None

    return await fake.wait_for(done, timeout=timeout)


async def test_fifty_commands_at_once_are_all_acknowledged_in_time(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World(fake).build(members=10)
        async with running_bot(fake, bot_settings(fake, world.guild, tmp_path)):
            handles = await asyncio.gather(
                *(
                    fake.slash_command(
                        "imagine", user=world.users[i % 10], channel=world.channel, options={"prompt": f"koala {i}"}
                    )
                    for i in range(50)
                )
            )
            await asyncio.gather(*(h.wait_for_callback() for h in handles))
            latencies = sorted(h.ack_latency or 99.0 for h in handles)
            assert latencies[-1] < 3.0, latencies[-5:]
            assert all(a.status < 400 for h in handles for a in h.attempts)
            posted = await all_results(fake, 50, timeout=60)
            assert len(posted) == 50
            assert len(fake.threads(world.channel)) == 50


async def test_buttons_work_after_a_restart(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World(fake).build()
        settings = bot_settings(fake, world.guild, tmp_path)
        async with running_bot(fake, settings):
            await imagine(fake, world)
            (first,) = await all_results(fake, 1)
        async with running_bot(fake, settings):
            reroll = next(
                c["custom_id"] for row in first.components for c in row["components"] if "reroll" in c["custom_id"]
            )
            handle = await fake.click_button(first, reroll, user=world.users[0])
            card = await wait_for_card(handle)
            assert card.channel_id == first.channel_id  # the reroll's card is in the thread it was asked in
            posted = await all_results(fake, 2)
            thread = fake.threads(world.channel)[0]
            assert len(result_messages(fake, thread)) == 2  # the reroll lands in the same thread
            assert len(posted) == 2


async def test_a_job_outliving_the_interaction_token_still_posts(tmp_path: Path) -> None:
    async with FakeDiscord(interaction_token_ttl=0.5) as fake:
        world = await World(fake).build()
        settings = bot_settings(
            fake, world.guild, tmp_path, providers={"local": {"kind": "local", "delay_seconds": 1.2}}
        )
        async with running_bot(fake, settings):
            await imagine(fake, world)
            (message,) = await all_results(fake, 1)
            assert message.attachments


async def test_hard_stop_mid_flight_then_every_job_completes_exactly_once(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World(fake).build(members=3)
        slow = bot_settings(
            fake,
            world.guild,
            tmp_path,
            providers={"local": {"kind": "local", "delay_seconds": 0.6}},
            generation={"workers": 2},
        )
        async with running_bot(fake, slow) as bot:
            for i in range(6):
                await imagine(fake, world, user_index=i % 3, count=2)
            await fake.wait_for(lambda: bot.engine.running_count >= 2 or None, timeout=5)
            bot.settings.discord.shutdown_grace_seconds = 0  # cut running jobs where they are
        rows = await _states(tmp_path)
        assert "done" not in rows or rows.count("done") < 6, rows
        fast = bot_settings(fake, world.guild, tmp_path)
        async with running_bot(fake, fast):
            posted = await all_results(fake, 6, timeout=30)
        per_job = [f.split(" · ")[0] for f in footers(posted)]
        assert len(per_job) == 6 and len(set(per_job)) == 6  # six jobs, one result message each
        assert all(len(m.attachments) == 2 for m in posted)
        assert (await _states(tmp_path)).count("done") == 6


async def _states(tmp_path: Path) -> list[str]:
    import aiosqlite

    async with aiosqlite.connect(tmp_path / "bot.sqlite3") as conn, conn.execute("SELECT state FROM jobs") as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def test_no_thread_permission_falls_back_to_the_channel(tmp_path: Path) -> None:
    from tests.fakediscord import Perm

    async with FakeDiscord() as fake:
        world = await World(fake).build()
        await fake.set_overwrite(world.channel, fake.bot_role(world.guild), deny=Perm.CREATE_PUBLIC_THREADS)
        async with running_bot(fake, bot_settings(fake, world.guild, tmp_path)):
            await imagine(fake, world)
            (message,) = await all_results(fake, 1)
            assert message.channel_id == world.channel.id
            assert fake.threads(world.channel) == []
            assert "can't create a thread" in message.embeds[0].get("description", "")


async def test_oversize_results_fit_the_upload_limit(tmp_path: Path) -> None:
    limit = 300_000  # the fake refuses more with 413/40005; discord.py only knows the tier's 10 MiB
    async with FakeDiscord() as fake:
        world = await World(fake).build(upload_limit=limit)
        async with running_bot(fake, bot_settings(fake, world.guild, tmp_path)):
            await imagine(fake, world, count=3, resolution="4K")
            posted = await all_results(fake, 1)
            await asyncio.sleep(0.2)
            thread = fake.threads(world.channel)[0]
            posted = result_messages(fake, thread)
            assert sum(len(m.attachments) for m in posted) == 3
            for message in posted:
                assert sum(len(a.data) for a in message.attachments) <= limit
            assert 1 <= len(fake.calls(status=413)) <= 2  # learnt the real limit from Discord's 40005, then fit


async def test_everyone_in_a_prompt_pings_nobody(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World(fake).build()
        async with running_bot(fake, bot_settings(fake, world.guild, tmp_path)):
            await imagine(fake, world, prompt=f"@everyone look <@{world.users[1].id}> https://discord.gg/abc")
            (message,) = await all_results(fake, 1)
            assert message.allowed_mentions == {"parse": []}
            title = message.embeds[0]["title"]
            assert "@everyone" not in title and "discord.gg/abc" not in title
            cards = [m for m in fake.bot_messages(world.channel) if is_card(m)]
            assert cards and all(m.allowed_mentions == {"parse": []} for m in cards)


async def test_a_foreign_delete_press_is_refused(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World(fake).build()
        async with running_bot(fake, bot_settings(fake, world.guild, tmp_path)):
            await imagine(fake, world)
            (message,) = await all_results(fake, 1)
            delete = next(
                c["custom_id"] for row in message.components for c in row["components"] if ":delete:" in c["custom_id"]
            )
            handle = await fake.click_button(message, delete, user=world.users[1])
            refusal = await handle.wait_for_response()
            assert refusal.flags & 64 and "Only" in refusal.content
            assert not fake.message(message.id).deleted
            mine = await fake.click_button(message, delete, user=world.users[0])
            await fake.wait_for(lambda: fake.message(message.id).deleted or None)  # the owner may delete it
            answer = await mine.wait_for_response(lambda m: bool(m.content))
            assert answer.flags & 64 and answer.content == "Deleted."
