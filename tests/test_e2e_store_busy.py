"""Another process holds the database's write lock: commands are still acknowledged at once, a member is told
the bot is busy (not an incident), and nothing is charged (real bot, fake Discord, real SQLite)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.botrunner import bot_settings, is_card, running_bot, wait_for_card
from tests.fakediscord import CallbackType, FakeDiscord


async def test_a_locked_database_gets_a_polite_busy_answer_and_charges_nothing(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        guild = await fake.add_guild("Busy")
        channel = await fake.add_channel(guild, "art")
        alice = fake.add_user("alice")
        await fake.add_member(guild, alice)
        async with running_bot(fake, bot_settings(fake, guild, tmp_path)) as bot:
            holder = sqlite3.connect(tmp_path / "bot.sqlite3", isolation_level=None)
            try:
                holder.execute("BEGIN IMMEDIATE")  # e.g. a backup or a second bot process writing
                handle = await fake.slash_command("imagine", user=alice, channel=channel, options={"prompt": "x"})
                await handle.wait_for_callback()
                assert handle.ack_latency is not None and handle.ack_latency < 3.0
                assert handle.callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
                quota = await fake.slash_command("quota", user=alice, channel=channel)
                await quota.wait_for_callback()  # acknowledged before any database work
                assert quota.ack_latency is not None and quota.ack_latency < 3.0
                answer = await handle.wait_for_response(lambda m: bool(m.flags & 64) and bool(m.content), timeout=15)
                assert "busy" in answer.content and "Nothing was charged" in answer.content
                assert "incident" not in answer.content
                assert fake.bot_messages(channel) == []  # the public "thinking…" was withdrawn: no card
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert await bot.engine.jobs.recent_for(alice.id, guild.id) == []
            again = await fake.slash_command("imagine", user=alice, channel=channel, options={"prompt": "x"})
            assert is_card(await wait_for_card(again))  # fine again once the lock is gone
