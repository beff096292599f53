"""Discord misbehaving while jobs run: every job ends done or refunded, exactly once, and the member is told."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosqlite

from tests.botrunner import bot_settings, is_card, running_bot, wait_for_card
from tests.fakediscord import ErrorCode, FakeDiscord, FakeMessage

POST_MESSAGE = "POST /channels/{channel_id}/messages"
EDIT_MESSAGE = "PATCH /channels/{channel_id}/messages/{message_id}"
EDIT_WITH_TOKEN = "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"


class Room:
    async def build(self, fake: FakeDiscord) -> Room:
        self.fake = fake
        self.guild = await fake.add_guild("Faults")
        self.channel = await fake.add_channel(self.guild, "art")
        self.user = fake.add_user("alice")
        await fake.add_member(self.guild, self.user)
        return self

    async def imagine(self, **options: object) -> FakeMessage:
        handle = await self.fake.slash_command(
            "imagine", user=self.user, channel=self.channel, options={"prompt": "a koala", **options}
        )
        return await wait_for_card(handle)

    def results(self) -> list[FakeMessage]:
        return [m for t in self.fake.threads(self.channel) for m in self.fake.bot_messages(t) if m.attachments]


async def final_states(tmp_path: Path, expected: int, timeout: float = 20.0) -> list[str]:
    async with asyncio.timeout(timeout):
        while True:
            async with (
                aiosqlite.connect(tmp_path / "bot.sqlite3") as conn,
                conn.execute("SELECT state FROM jobs") as cur,
            ):
                states = [row[0] for row in await cur.fetchall()]
            if len(states) == expected and all(s in ("done", "failed", "cancelled") for s in states):
                return states
            await asyncio.sleep(0.05)


async def balance(tmp_path: Path) -> dict[str, int]:
    query = "SELECT entry, SUM(units) FROM quota_ledger GROUP BY entry"
    async with aiosqlite.connect(tmp_path / "bot.sqlite3") as conn, conn.execute(query) as cursor:
        return {row[0]: row[1] for row in await cursor.fetchall()}


async def test_rate_limits_per_route_and_global_are_waited_out(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        room = await Room().build(fake)
        async with running_bot(fake, bot_settings(fake, room.guild, tmp_path)):
            fake.inject_rate_limit(POST_MESSAGE, times=3, retry_after=0.1)
            fake.inject_rate_limit(None, times=1, retry_after=0.1, global_=True)
            assert is_card(await room.imagine(count=2))
            assert await final_states(tmp_path, 1) == ["done"]
            assert len(room.results()) == 1
            assert len(fake.calls(status=429)) == 4


async def test_discord_5xx_while_posting_is_retried_without_duplicates(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        room = await Room().build(fake)
        async with running_bot(fake, bot_settings(fake, room.guild, tmp_path)) as bot:
            assert is_card(await room.imagine())
            thread = await fake.wait_for(lambda: next(iter(fake.threads(room.channel)), None), timeout=5)
            fake.inject_error(f"POST /channels/{thread.id}/messages", status=503, times=1)
            assert await final_states(tmp_path, 1) == ["done"]
            assert len(room.results()) == 1
            assert bot.is_ready()


async def test_gateway_drop_while_jobs_run_loses_nothing(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        room = await Room().build(fake)
        slow = bot_settings(fake, room.guild, tmp_path, providers={"local": {"kind": "local", "delay_seconds": 0.5}})
        async with running_bot(fake, slow):
            assert is_card(await room.imagine())
            await fake.drop_gateway()
            assert await final_states(tmp_path, 1) == ["done"]
            await fake.wait_for(lambda: fake.received_ops(6) or None, timeout=10)  # RESUME
            assert is_card(await room.imagine())  # commands still arrive after the resume
            assert await final_states(tmp_path, 2) == ["done", "done"]


async def test_status_message_deleted_under_us_does_not_stop_the_job(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        room = await Room().build(fake)
        async with running_bot(fake, bot_settings(fake, room.guild, tmp_path)):
            card = await room.imagine()
            fake.inject_error(EDIT_WITH_TOKEN, status=404, code=ErrorCode.UNKNOWN_MESSAGE, times=50)
            fake.inject_error(EDIT_MESSAGE, status=404, code=ErrorCode.UNKNOWN_MESSAGE, times=50)
            assert is_card(card)
            assert await final_states(tmp_path, 1) == ["done"]
            assert len(room.results()) == 1


async def test_channel_deleted_before_posting_refunds_everything(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        room = await Room().build(fake)
        slow = bot_settings(fake, room.guild, tmp_path, providers={"local": {"kind": "local", "delay_seconds": 0.3}})
        async with running_bot(fake, slow):
            assert is_card(await room.imagine(count=2))
            thread = await fake.wait_for(lambda: next(iter(fake.threads(room.channel)), None), timeout=5)
            fake.inject_error(
                f"POST /channels/{thread.id}/messages", status=404, code=ErrorCode.UNKNOWN_CHANNEL, times=50
            )
            assert await final_states(tmp_path, 1) == ["failed"]
            assert await balance(tmp_path) == {"reserve": 2, "commit": 2, "refund": 2}
            status = fake.bot_messages(room.channel)[0]
            assert "refunded" in status.embeds[0]["description"]


async def test_an_expired_interaction_token_does_not_lose_the_job(tmp_path: Path) -> None:
    async with FakeDiscord(interaction_token_ttl=0.0) as fake:
        room = await Room().build(fake)
        async with running_bot(fake, bot_settings(fake, room.guild, tmp_path)):
            handle = await fake.slash_command("imagine", user=room.user, channel=room.channel, options={"prompt": "x"})
            await handle.wait_for_callback()
            assert await final_states(tmp_path, 1) == ["done"]  # the follow-up failed (50027); results did not
            assert len(room.results()) == 1


async def test_a_late_interaction_queues_and_charges_nothing(tmp_path: Path) -> None:
    async with FakeDiscord(interaction_ack_timeout=0.0) as fake:
        room = await Room().build(fake)
        async with running_bot(fake, bot_settings(fake, room.guild, tmp_path)) as bot:
            handle = await fake.slash_command("imagine", user=room.user, channel=room.channel, options={"prompt": "x"})
            await fake.wait_for(lambda: handle.attempts or None, timeout=5)
            assert handle.attempts[0].code == ErrorCode.UNKNOWN_INTERACTION
            await asyncio.sleep(0.3)
            assert await balance(tmp_path) == {}
            fake.config.interaction_ack_timeout = 3.0
            assert is_card(await room.imagine())  # the bot is fine afterwards
            assert bot.is_ready()
