"""``seedream-bot worker`` (``cogs.app.run_worker``): runs jobs and posts results with the bot token, no gateway.

Any number of workers and ``run`` processes share one PostgreSQL database (README "Scaling out"). A worker
answers no command: ``run`` processes hold the gateway (its shards) and queue jobs; every process with a job
engine claims queued jobs, so a worker adds generating and posting capacity only. Everything it needs from
Discord is REST: the card is edited through the interaction token the job saved (until 14 minutes) and with
the bot token after; the job's thread and channel are fetched by their saved ids.
"""

from __future__ import annotations

import asyncio

import aiohttp
import discord

from bot.jobs.engine import JobEngine
from bot.services import Services
from cogs.ackfirst import AckFirst
from cogs.delivery import DiscordSink

HTTP_CONNECTIONS = 32


class WorkerClient(discord.Client):
    """A discord.py client that logs in (REST) and never connects to the gateway; it runs the job engine."""

    def __init__(self, services: Services) -> None:
        super().__init__(
            intents=discord.Intents.default(),  # never sent (no gateway); none would make discord.py warn
            allowed_mentions=discord.AllowedMentions.none(),
            connector=aiohttp.TCPConnector(limit=HTTP_CONNECTIONS),
            max_messages=None,
        )
        self.services = services
        self.settings = services.settings
        self.sink = DiscordSink(self, edit_interval=services.settings.discord.status_edit_seconds)
        self.ack_first = AckFirst()  # no interactions here: nothing ever waits on it
        self.engine: JobEngine = services.make_engine(self.sink)
        self.stopping = asyncio.Event()  # set by SIGTERM/SIGINT (or a test): the worker closes

    async def close(self) -> None:
        """Stop taking work, let running jobs reach a saved state (their leases are released), then log out."""
        await self.engine.stop(self.settings.discord.shutdown_grace_seconds)
        await self.sink.drain(min(5.0, self.settings.discord.shutdown_grace_seconds))
        await super().close()
