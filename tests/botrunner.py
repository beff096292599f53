"""Start the real bot entry point (``cogs.app.run_bot``, what ``seedream-bot run`` calls) against a FakeDiscord."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bot.config import Settings
from cogs.app import SeedreamBot, run_bot
from tests.fakediscord import FakeDiscord, FakeGuild, FakeMessage, InteractionHandle


def bot_settings(fake: FakeDiscord, guild: FakeGuild, tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    """Settings pointing at the fake, with a real SQLite file and data folder under tmp_path."""
    data: dict[str, Any] = {
        "discord": {
            "api_base": fake.api_base,
            "attachment_hosts": [fake.base_url],
            "command_guilds": [guild.id],
            "guild_ready_timeout": 0.05,
            "status_edit_seconds": 0,
            "shutdown_grace_seconds": 2,
        },
        "storage": {"database": str(tmp_path / "bot.sqlite3"), "data_dir": str(tmp_path / "data")},
        "generation": {"default_resolution": "1K"},
        "providers": {"local": {"kind": "local"}},
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return Settings.model_validate(data)


@contextlib.asynccontextmanager
async def running_bot(fake: FakeDiscord, settings: Settings) -> AsyncIterator[SeedreamBot]:
    """The bot, connected, with its commands synced; closed (gracefully) on exit."""
    started: list[SeedreamBot] = []
    task = asyncio.create_task(run_bot(settings, fake.token, on_start=started.append, handle_signals=False))
    try:
        await fake.wait_for(lambda: (bool(started) and started[0].is_ready()) or task.done(), timeout=10)
        if task.done():
            task.result()
            raise AssertionError("the bot stopped during start-up")
        yield started[0]
    finally:
        if started:
            await started[0].close()
        await asyncio.wait_for(task, timeout=15)


async def kill(bot: SeedreamBot) -> None:
    """Stop the bot as abruptly as an in-process test can: no grace, running jobs cut where they are."""
    bot.settings.discord.shutdown_grace_seconds = 0
    await bot.close()


def is_card(message: FakeMessage) -> bool:
    """A job's card: a public message whose embed footer is ``job <id>``."""
    footer = (message.embeds[0].get("footer") or {}).get("text", "") if message.embeds else ""
    return footer.startswith("job ") and " · " not in footer and not message.flags & 64


async def wait_for_card(handle: InteractionHandle, timeout: float = 10.0) -> FakeMessage:
    """The command's own answer once it has become the job's card."""
    return await handle.wait_for_response(is_card, timeout=timeout)
