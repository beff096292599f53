"""The Discord application: a ``commands.Bot`` that owns the core ``Services`` and loads the cogs."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from bot.config import Settings
from bot.generation import GenerationService
from bot.jobs.engine import JobEngine
from bot.retention import remove_old_images
from bot.services import Services
from cogs import EXTENSIONS
from cogs.ackfirst import AckFirst
from cogs.cards import CardStarter
from cogs.delivery import DiscordSink
from cogs.endpoints import adopt_gateway, use_api_base
from cogs.errors import SeedreamTree

log = logging.getLogger(__name__)
HTTP_CONNECTIONS = 32


class SeedreamBot(commands.Bot):
    def __init__(self, services: Services) -> None:
        settings = services.settings
        intents = discord.Intents.default()
        intents.message_content = settings.discord.message_content_intent
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            tree_cls=SeedreamTree,
            guild_ready_timeout=settings.discord.guild_ready_timeout,
            # A bounded keep-alive pool: a burst of interaction callbacks reuses warm connections instead of
            # opening one socket (and one TLS handshake) each, as discord.py's default limit=0 does.
            connector=aiohttp.TCPConnector(limit=HTTP_CONNECTIONS),
        )
        self.services = services
        self.settings = settings
        self.sink = DiscordSink(self, edit_interval=settings.discord.status_edit_seconds)
        self.ack_first = AckFirst()
        self.engine: JobEngine = services.make_engine(self.sink)
        self.generation = GenerationService(
            settings, services.providers, services.policy, services.fetcher, self.engine, services.metrics
        )
        self.starter = CardStarter(self)
        self._maintenance: asyncio.Task[None] | None = None

    def dispatch(self, event_name: str, /, *args: Any, **kwargs: Any) -> None:
        # discord.py parses INTERACTION_CREATE and dispatches "interaction" before any command code runs.
        if event_name == "interaction" and args and isinstance(args[0], discord.Interaction):
            self.ack_first.received(args[0])
        super().dispatch(event_name, *args, **kwargs)

    async def setup_hook(self) -> None:
        await adopt_gateway(self, self.settings.discord.api_base)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        await self.sync_commands()
        await self.engine.start()
        if self.settings.metrics.enabled:
            self.services.metrics.serve(self.settings.metrics.host, self.settings.metrics.port)
        self._maintenance = asyncio.create_task(self._maintain(), name="maintenance")

    async def _maintain(self) -> None:
        """Every minute: refresh the metrics gauges; every day: remove images past their retention."""
        last_cleanup = 0.0
        while True:
            try:
                self.services.metrics.set_states(await self.engine.counts_by_state())
                if time.monotonic() - last_cleanup >= 86400 or not last_cleanup:
                    last_cleanup = time.monotonic()
                    await remove_old_images(self.settings.data_dir, self.settings.storage.retention_days)
            except Exception:
                log.exception("maintenance failed; trying again later")
            await asyncio.sleep(60)

    async def close(self) -> None:
        """Stop taking work, let running jobs reach a saved state, then disconnect."""
        if self._maintenance is not None:
            self._maintenance.cancel()
        await self.engine.stop(self.settings.discord.shutdown_grace_seconds)
        await self.sink.drain(min(5.0, self.settings.discord.shutdown_grace_seconds))
        await super().close()

    async def sync_commands(self) -> None:
        """Guild sync is instant (for configured guilds); global sync can take up to an hour to show."""
        guild_ids = self.settings.discord.command_guilds
        if guild_ids:
            for guild_id in guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("synced %d commands to guild %s", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global commands", len(synced))

    async def on_ready(self) -> None:
        log.info("connected as %s (%s) to %d guilds", self.user, getattr(self.user, "id", "?"), len(self.guilds))


async def run_bot(
    settings: Settings,
    token: str,
    *,
    on_start: Callable[[SeedreamBot], None] | None = None,
    handle_signals: bool = True,
) -> int:
    """Start the bot and keep it running until SIGTERM/SIGINT; returns the process exit code.

    ``on_start`` receives the bot before it logs in (tests use it to stop the bot they started).
    """
    use_api_base(settings.discord.api_base)
    async with await Services.open(settings) as services:
        bot = SeedreamBot(services)
        if on_start is not None:
            on_start(bot)
        if handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, lambda: asyncio.ensure_future(bot.close()))
        async with bot:
            try:
                await bot.start(token)
            except discord.LoginFailure:
                log.error("Discord refused the bot token: check %s", settings.discord.token_env)
                return 2
    return 0
