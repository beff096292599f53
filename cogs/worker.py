"""``seedream-bot worker``: runs jobs and posts their results with the bot token, without a gateway connection.

Any number of workers and ``run`` processes share one PostgreSQL database (README "Scaling out"). A worker
answers no command: ``run`` processes hold the gateway (its shards) and queue jobs; every process with a job
engine claims queued jobs, so a worker adds generating and posting capacity only. Everything it needs from
Discord is REST: the card is edited through the interaction token the job saved (until 14 minutes) and with
the bot token after; the job's thread and channel are fetched by their saved ids.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

import aiohttp
import discord

from bot.config import Settings
from bot.jobs.engine import JobEngine
from bot.services import Services
from cogs.ackfirst import AckFirst
from cogs.app import quiet_voice_warnings, reach_discord, start_error
from cogs.delivery import DiscordSink
from cogs.endpoints import use_api_base

log = logging.getLogger(__name__)
HTTP_CONNECTIONS = 32


class WorkerClient(discord.Client):
    """A discord.py client that logs in (REST) and never connects to the gateway; it runs the job engine."""

    def __init__(self, services: Services) -> None:
        super().__init__(
            intents=discord.Intents.none(),
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


async def run_worker(
    settings: Settings,
    token: str,
    *,
    on_start: Callable[[WorkerClient], None] | None = None,
    handle_signals: bool = True,
) -> int:
    """Log in, run jobs until SIGTERM/SIGINT; returns the process exit code (as ``run_bot`` does)."""
    use_api_base(settings.discord.api_base)
    quiet_voice_warnings()
    async with await Services.open(settings) as services:
        client = WorkerClient(services)
        if on_start is not None:
            on_start(client)
        if handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, client.stopping.set)
        async with client:
            try:
                await reach_discord(settings.discord.api_base, settings.discord.login_timeout_seconds)
                await client.login(token)
            except Exception as exc:
                code = start_error(exc, settings)
                if code is None:
                    raise
                return code
            await client.engine.start()
            log.info("worker %s running jobs as %s (no gateway connection)", client.engine.owner, client.user)
            await client.stopping.wait()
            grace = settings.discord.shutdown_grace_seconds
            log.info("worker stopping: running jobs get %.0f s to reach a saved state", grace)
    return 0
