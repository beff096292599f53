"""Acknowledge first: a command's slow work waits while other interactions still wait for their defer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import discord

from cogs.ackfirst import AckFirst
from tests.botrunner import bot_settings, running_bot
from tests.fakediscord import FakeDiscord

CALLBACK = "POST /interactions/{interaction_id}/{token}/callback"
POST_MESSAGE = "POST /channels/{channel_id}/messages"


def arriving(number: int, kind: discord.InteractionType = discord.InteractionType.application_command) -> Any:
    """What AckFirst reads of a parsed interaction: its id, its type and whether it has been answered."""
    answered = {"done": False}
    response = SimpleNamespace(is_done=lambda: answered["done"])
    return SimpleNamespace(id=number, type=kind, response=response, answer=lambda: answered.update(done=True))


async def test_slow_work_waits_until_every_waiting_interaction_is_acknowledged() -> None:
    gate = AckFirst(max_wait=30)
    first, second = arriving(1), arriving(2)
    gate.received(first)
    gate.received(second)
    held = asyncio.create_task(gate.after_ack(first))
    await asyncio.sleep(0.05)
    assert not held.done() and gate.waiting() == 1
    second.answer()
    await gate.after_ack(second)  # the second command reaches its slow work: nobody waits any more
    await asyncio.wait_for(held, 1)


async def test_an_answer_sent_elsewhere_also_releases_the_slow_work() -> None:
    gate = AckFirst(max_wait=30)
    first, button = arriving(1), arriving(2, discord.InteractionType.component)
    gate.received(first)
    gate.received(button)
    held = asyncio.create_task(gate.after_ack(first))
    await asyncio.sleep(0.05)
    assert not held.done()
    button.answer()  # e.g. a button that only defers, never reaching after_ack
    await asyncio.wait_for(held, 1)


async def test_slow_work_is_delayed_never_starved() -> None:
    gate = AckFirst(max_wait=0.05)
    first, stuck = arriving(1), arriving(2)
    gate.received(first)
    gate.received(stuck)
    await asyncio.wait_for(gate.after_ack(first), 1)  # the other is never answered: max_wait bounds the hold
    assert gate.waiting() == 1


async def test_autocomplete_and_lone_commands_never_wait() -> None:
    gate = AckFirst(max_wait=30)
    gate.received(arriving(1, discord.InteractionType.autocomplete))
    alone = arriving(2)
    gate.received(alone)
    await asyncio.wait_for(gate.after_ack(alone), 0.01)


async def test_a_burst_is_acknowledged_before_any_status_message_is_posted(tmp_path: Path) -> None:
    """The first /imagine's defer is refused with a 429 (discord.py retries after 0.3 s); the second,
    acknowledged at once, does not post its status message before the first one is acknowledged too."""
    async with FakeDiscord() as fake:
        guild = await fake.add_guild("Koalas")
        channel = await fake.add_channel(guild, "art")
        users = [fake.add_user(f"member{i}") for i in range(2)]
        for user in users:
            await fake.add_member(guild, user)
        async with running_bot(fake, bot_settings(fake, guild, tmp_path)):
            fake.inject_rate_limit(CALLBACK, times=1, retry_after=0.3)
            slow = await fake.slash_command("imagine", user=users[0], channel=channel, options={"prompt": "a koala"})
            quick = await fake.slash_command("imagine", user=users[1], channel=channel, options={"prompt": "an emu"})
            await quick.wait_for_callback()
            await slow.wait_for_callback()
            await fake.wait_for(lambda: len(fake.calls(route=POST_MESSAGE)) >= 2 or None, timeout=10)
            first_status = min(call.started for call in fake.calls(route=POST_MESSAGE))
            assert quick.callback_at is not None and slow.callback_at is not None
            assert quick.callback_at < slow.callback_at < first_status
