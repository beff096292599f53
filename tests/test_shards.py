"""``[discord] shard_count`` / ``shard_ids``: several ``run`` processes split the gateway; each answers the
servers of its own shards. ``shard_count = 0`` runs the count Discord recommends."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.botrunner import bot_settings, running_bot, wait_for_card
from tests.fakediscord import FakeDiscord, FakeGuild


async def guilds_on_both_shards(fake: FakeDiscord) -> list[FakeGuild]:
    """One server on shard 0 and one on shard 1 of two (a guild's shard is (id >> 22) % count)."""
    found: dict[int, FakeGuild] = {}
    for n in range(50):
        guild = await fake.add_guild(f"Guild {n}")
        found.setdefault((guild.id >> 22) % 2, guild)
        if len(found) == 2:
            return [found[0], found[1]]
        await asyncio.sleep(0.002)  # the next snowflake gets another millisecond
    raise AssertionError("no guild on shard 1")


async def imagine_in(fake: FakeDiscord, guild: FakeGuild, name: str) -> str:
    channel = await fake.add_channel(guild, "art")
    user = fake.add_user(name)
    await fake.add_member(guild, user)
    handle = await fake.slash_command("imagine", user=user, channel=channel, options={"prompt": f"a {name}"})
    card = await wait_for_card(handle)
    return str(card.embeds[0]["footer"]["text"])


async def test_two_processes_each_answer_the_servers_of_their_shard(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        guilds = await guilds_on_both_shards(fake)
        every = [g.id for g in guilds]
        bots = []
        for shard in (0, 1):
            folder = tmp_path / f"shard{shard}"
            settings = bot_settings(
                fake, guilds[0], folder, discord={"command_guilds": every, "shard_count": 2, "shard_ids": [shard]}
            )
            bots.append(running_bot(fake, settings))
        async with bots[0] as first, bots[1] as second:
            assert (first.shard_count, first.shard_ids, second.shard_ids) == (2, [0], [1])
            # each process sees only its shard's servers: shard 1's never reach shard 0, nor the other way round
            assert {(g.id >> 22) % 2 for g in first.guilds} == {0} and guilds[0].id in {g.id for g in first.guilds}
            assert {(g.id >> 22) % 2 for g in second.guilds} == {1} and guilds[1].id in {g.id for g in second.guilds}
            assert (await imagine_in(fake, guilds[0], "koala")).startswith("job ")
            assert (await imagine_in(fake, guilds[1], "otter")).startswith("job ")


async def test_shard_count_zero_runs_discords_recommended_count(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        fake.config.recommended_shards = 2
        guilds = await guilds_on_both_shards(fake)
        settings = bot_settings(
            fake, guilds[0], tmp_path, discord={"command_guilds": [g.id for g in guilds], "shard_count": 0}
        )
        async with running_bot(fake, settings) as bot:
            assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
            for guild, name in zip(guilds, ("heron", "lynx"), strict=True):
                assert (await imagine_in(fake, guild, name)).startswith("job ")
