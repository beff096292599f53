"""A member's own install, end to end: /imagine in a DM with the bot and in a server that never added it,
results through the interaction's follow-ups, a job outliving the 15-minute token (by DM, or refunded
where DMs are closed), personal use switched off, and servers that added the bot unchanged."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bot.jobs import Job, JobState
from cogs.app import SeedreamBot
from cogs.followups import STILL_WORKING
from tests.botrunner import bot_settings, kill, running_bot, wait_for_card
from tests.fakediscord import FakeChannel, FakeDiscord, FakeUser, InteractionHandle


class World:
    async def build(self, fake: FakeDiscord) -> World:
        self.fake = fake
        self.home = await fake.add_guild("Home")  # a server that added the bot
        self.home_channel = await fake.add_channel(self.home, "art")
        self.elsewhere = await fake.add_guild("Elsewhere", with_bot=False)
        self.lounge = await fake.add_channel(self.elsewhere, "lounge")
        self.alice = fake.add_user("alice")
        for guild in (self.home, self.elsewhere):
            await fake.add_member(guild, self.alice)
        fake.install_for_user(self.alice)
        return self

    async def imagine(self, channel: FakeChannel, prompt: str = "a koala") -> InteractionHandle:
        return await self.fake.slash_command("imagine", user=self.alice, channel=channel, options={"prompt": prompt})

    def settings(self, tmp_path: Path, *, personal: int = 5, delay: float = 0.0) -> Any:
        return bot_settings(
            self.fake,
            self.home,
            tmp_path,
            discord={"guilds_only": False, "command_guilds": []},  # user installs need global commands
            quota={"personal_daily": personal, "default_limit": 50},
            providers={"local": {"kind": "local", "delay_seconds": delay}},
        )


async def results(handle: InteractionHandle, count: int = 1) -> list[Any]:
    def posted() -> list[Any] | None:
        found = [m for m in handle.followups if m.attachments]
        return found if len(found) >= count else None

    return await handle.fake.wait_for(posted, timeout=15)


async def ended_jobs(bot: SeedreamBot, user: FakeUser, count: int) -> list[Job]:
    """The member's personal jobs once ``count`` of them have ended (checked as the job rows change)."""
    for _ in range(400):
        jobs = await bot.engine.jobs.recent_for(user.id, None)
        if len([j for j in jobs if not j.is_active]) >= count:
            return jobs
        await asyncio.sleep(0.05)
    raise AssertionError(f"jobs did not end: {[j.state for j in jobs]}")


async def personal_used(bot: SeedreamBot, user: FakeUser) -> int:
    return await bot.services.ledger.used(None, user.id)


def bot_token_posts(fake: FakeDiscord, channel: FakeChannel) -> list[Any]:
    return [c for c in fake.calls() if c.auth == "bot" and f"/channels/{channel.id}/" in c.path + "/"]


async def test_imagine_in_a_dm_and_in_a_server_without_the_bot_answers_through_follow_ups(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        async with running_bot(fake, world.settings(tmp_path)) as bot:
            (synced,) = [c for c in fake.commands() if c["name"] == "imagine"]
            assert synced["integration_types"] == [0, 1] and synced["contexts"] == [0, 1, 2]
            for channel in (fake.dm_channel(world.alice), world.lounge):
                handle = await fake.slash_command(
                    "imagine", user=world.alice, channel=channel, options={"prompt": "a koala", "count": 2}
                )
                card = await wait_for_card(handle)
                assert card.id == handle.record.original_message_id and not card.flags & 64
                (result,) = await results(handle)
                assert len(result.attachments) == 2 and result.channel_id == channel.id
                assert fake.threads() == []
            assert bot_token_posts(fake, world.lounge) == []  # the bot is not there: everything went by token
            jobs = await ended_jobs(bot, world.alice, 2)
            assert [j.state for j in jobs] == [JobState.DONE, JobState.DONE]
            assert all(j.guild_id is None and j.delivery.via_interaction for j in jobs)
            assert await personal_used(bot, world.alice) == 4  # one personal allowance across both places
            for channel in (fake.dm_channel(world.alice), world.lounge):
                quota = await fake.slash_command("quota", user=world.alice, channel=channel)
                assert (await quota.wait_for_response()).content.startswith("**You**: 4 of 5 used, 1 left")
            delete = next(c for c in result.custom_ids() if ":delete:" in c)  # the buttons work there too
            pressed = await fake.click_button(result, delete, user=world.alice)
            assert (await pressed.wait_for_response()).content == "Deleted."
            assert fake.message(result.id).deleted

            # A server that added the bot works as before: a card, a thread, the server's own allowance
            handle = await fake.slash_command(
                "imagine", user=world.alice, channel=world.home_channel, options={"prompt": "a wombat"}
            )
            await wait_for_card(handle)
            thread = await fake.wait_for(lambda: next(iter(fake.threads(world.home_channel)), None), timeout=10)
            await fake.wait_for(lambda: any(m.attachments for m in fake.bot_messages(thread)), timeout=15)
            assert handle.followups == [] and await personal_used(bot, world.alice) == 4
            assert await bot.services.ledger.used(world.home.id, world.alice.id) == 1


async def test_personal_use_off_is_a_polite_refusal_and_charges_nothing(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        async with running_bot(fake, world.settings(tmp_path, personal=0)) as bot:
            handle = await world.imagine(world.lounge)
            answer = await handle.wait_for_response()
            assert answer.flags & 64 and "Personal use is turned off" in answer.content
            assert handle.original is None or handle.original.flags & 64  # no public card
            assert await bot.engine.jobs.recent_for(world.alice.id, None) == []
            assert await personal_used(bot, world.alice) == 0


class Clock:
    """The bot's wall clock, moved on by the test (the fake's own clock moves with ``fake.advance_clock``)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def long_job(fake: FakeDiscord, bot: SeedreamBot, world: World, clock: Clock) -> InteractionHandle:
    """/imagine in the server without the bot, still generating when its token reaches its end."""
    bot.sink.wall_clock = clock
    bot.sink.personal.poll_seconds = 0.02
    handle = await world.imagine(world.lounge, "slow")
    await wait_for_card(handle)
    clock.offset += 14 * 60 - 20  # inside the last half minute the bot uses the token
    card = await handle.wait_for_response(lambda m: str(STILL_WORKING) in (m.embeds[0].get("description") or ""))
    assert card.id == handle.record.original_message_id  # said on the card, while the token still works
    clock.offset += 120
    fake.advance_clock(16 * 60)
    return handle


async def test_a_job_outliving_the_token_is_delivered_by_dm(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        async with running_bot(fake, world.settings(tmp_path, delay=1.0)) as bot:
            handle = await long_job(fake, bot, world, Clock())
            dm = fake.dm_channel(world.alice)
            posted = await fake.wait_for(lambda: [m for m in fake.bot_messages(dm) if m.attachments], timeout=15)
            assert "longer than Discord lets me answer" in posted[0].embeds[0]["description"]
            assert [m for m in handle.followups if m.attachments] == []
            (job,) = await ended_jobs(bot, world.alice, 1)
            assert job.state == JobState.DONE and job.delivery.dm_channel_id == dm.id
            assert await personal_used(bot, world.alice) == 1


async def test_a_job_outliving_the_token_is_refunded_where_dms_are_closed(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        world.alice.allows_dms = False
        async with running_bot(fake, world.settings(tmp_path, delay=1.0)) as bot:
            handle = await long_job(fake, bot, world, Clock())
            (job,) = await ended_jobs(bot, world.alice, 1)
            assert job.state == JobState.FAILED
            assert await personal_used(bot, world.alice) == 0  # made, never delivered: nothing charged
            assert fake.bot_messages(fake.dm_channel(world.alice)) == []
            assert [m for m in handle.followups if m.attachments] == []


async def test_a_restart_carries_on_through_the_same_interaction(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        async with running_bot(fake, world.settings(tmp_path, delay=1.0)) as bot:
            handle = await world.imagine(world.lounge)
            await wait_for_card(handle)
            await kill(bot)  # mid-generation
        assert [m for m in handle.followups if m.attachments] == []
        async with running_bot(fake, world.settings(tmp_path)) as bot:
            (result,) = await results(handle)  # the saved delivery says: through this interaction's follow-ups
            (job,) = await ended_jobs(bot, world.alice, 1)
            assert job.state == JobState.DONE and job.delivery.via_interaction
            assert job.delivery.dm_channel_id is None and result.channel_id == world.lounge.id
            assert bot_token_posts(fake, world.lounge) == []


async def test_when_discord_refuses_more_follow_ups_the_rest_goes_by_dm(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        world = await World().build(fake)
        async with running_bot(fake, world.settings(tmp_path)) as bot:
            # as if the interaction's follow-ups were used up (the count lost to a crash, say)
            fake.inject_error("POST /webhooks/{webhook_id}/{webhook_token}", status=400, code=40094)
            handle = await world.imagine(world.lounge)
            dm = fake.dm_channel(world.alice)
            posted = await fake.wait_for(lambda: [m for m in fake.bot_messages(dm) if m.attachments], timeout=15)
            assert len(posted) == 1 and [m for m in handle.followups if m.attachments] == []
            (job,) = await ended_jobs(bot, world.alice, 1)
            assert job.state == JobState.DONE and job.delivery.dm_channel_id == dm.id
