"""The Discord application: a ``commands.Bot`` that owns the core ``Services`` and loads the cogs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import discord
import yarl
from discord.ext import commands, tasks

from bot.config import Settings
from bot.generation import GenerationService
from bot.health import HEARTBEAT_SECONDS, beat
from bot.jobs.engine import JobEngine
from bot.retention import remove_old_images
from bot.services import Services
from bot.storage.meta import get_meta, set_meta
from cogs import EXTENSIONS
from cogs.ackfirst import AckFirst
from cogs.cards import CardStarter
from cogs.delivery import DiscordSink
from cogs.endpoints import adopt_gateway, use_api_base
from cogs.errors import SeedreamTree
from cogs.locales import CatalogTranslator
from cogs.worker import WorkerClient

log = logging.getLogger(__name__)
HTTP_CONNECTIONS = 32
PORTAL = "https://discord.com/developers/applications"
#: One try to reach Discord at start-up waits at most this long for an answer.
ATTEMPT_TIMEOUT_SECONDS = 15.0
#: Backoff between tries: 1, 2, 4 ... seconds, at most this.
MAX_BACKOFF_SECONDS = 30.0
#: Advisory-lock key of the bot-wide chores (one process at a time does them; docs/scaling.md).
MAINTENANCE_LOCK = 0
RETENTION_KEY = "maintenance:retention_at"
#: With several processes, a command acknowledged this long ago without a job belongs to a process that died
#: (a live one writes the job within seconds, or within a reference download's timeout).
LEFT_BEHIND_SECONDS = 180.0


def plural(count: int, word: str) -> str:
    """``1 guild``, ``2 guilds``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def quiet_voice_warnings() -> None:
    """This bot has no voice features: discord.py's "PyNaCl/davey is not installed" warnings would only alarm."""
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False


class DiscordUnreachable(Exception):
    """Discord could not be reached for ``discord.login_timeout_seconds``."""


def _why_unreachable(exc: BaseException, url: yarl.URL, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"{url.host} did not answer within {timeout:.0f} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, socket.gaierror):
            return f"the name {url.host} could not be resolved ({exc.os_error.strerror or exc.os_error}): check DNS"
        reason = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
        return f"cannot connect to {url.host}:{url.port} ({reason})"
    return f"{type(exc).__name__}: {exc}"


async def reach_discord(api_base: str, give_up_after: float) -> None:
    """Wait until Discord's API answers at all, retrying with backoff; ``DiscordUnreachable`` after ``give_up_after``.

    One unauthenticated ``GET /gateway`` per try, each bounded by a timeout, so a missing network, a DNS
    failure, a refused connection and a server that never answers all end in a clear line per try instead
    of a traceback or a silent hang. Any HTTP answer below 500 means Discord is there.
    """
    url = yarl.URL(f"{api_base}/gateway")
    started = time.monotonic()
    delay, attempt = 1.0, 0
    async with aiohttp.ClientSession() as session:
        while True:
            attempt += 1
            left = give_up_after - (time.monotonic() - started)
            timeout = max(0.5, min(ATTEMPT_TIMEOUT_SECONDS, left))
            try:
                async with asyncio.timeout(timeout), session.get(url, allow_redirects=False) as response:
                    if response.status < 500:
                        if attempt > 1:
                            log.info("reached Discord at %s after %s", api_base, plural(attempt, "attempt"))
                        return
                    reason = f"{url.host} answered HTTP {response.status}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                reason = _why_unreachable(exc, url, timeout)
            elapsed = time.monotonic() - started
            if elapsed + 0.01 >= give_up_after:
                raise DiscordUnreachable(
                    f"could not reach Discord at {api_base} for {elapsed:.0f} s ({plural(attempt, 'attempt')}):"
                    f" {reason}. Check this machine's network, DNS and firewall, then start the bot again"
                    " (discord.login_timeout_seconds sets how long to try)"
                )
            wait = min(delay, give_up_after - elapsed)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
            log.warning(
                "cannot reach Discord (attempt %d): %s; trying again in %.0f s (giving up after %.0f s)",
                attempt,
                reason,
                wait,
                give_up_after,
            )
            await asyncio.sleep(wait)


def start_error(exc: BaseException, settings: Settings) -> int | None:
    """Log one line for an error that stops the bot at start-up and return the exit code (None: not ours)."""
    discord_settings = settings.discord
    if isinstance(exc, DiscordUnreachable):
        log.error("%s", exc)
        return 1
    if isinstance(exc, discord.LoginFailure):
        log.error(
            "Discord refused the bot token: check %s (Bot tab -> Reset Token at %s)", discord_settings.token_env, PORTAL
        )
        return 2
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        log.error(
            "Discord refused the Message Content intent that [discord] message_content_intent = true asks for:"
            " switch on Bot -> Privileged Gateway Intents -> MESSAGE CONTENT INTENT at %s, or set"
            " message_content_intent = false (SEEDREAM_DISCORD__MESSAGE_CONTENT_INTENT=false)",
            PORTAL,
        )
        return 2
    if isinstance(exc, discord.ConnectionClosed):
        log.error(
            "Discord closed the gateway connection (code %s: %s); check the token and intents at %s",
            exc.code,
            exc.reason or "no reason given",
            PORTAL,
        )
        return 1
    if isinstance(exc, discord.HTTPException):
        log.error("Discord answered HTTP %s while the bot was starting: %s; try again later", exc.status, exc.text)
        return 1
    if isinstance(exc, discord.GatewayNotFound | TimeoutError | aiohttp.ClientError | OSError):
        log.error(
            "lost the connection to Discord while starting (%s: %s); check the network and start the bot again",
            type(exc).__name__,
            exc,
        )
        return 1
    return None


class SeedreamBot(commands.Bot):
    def __init__(self, services: Services, **options: Any) -> None:
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
            # Every card is a public message, so a burst brings as many MESSAGE_CREATE/UPDATE events; nothing
            # reads discord.py's message cache (replies are resolved from the event or fetched), so keep none.
            max_messages=None,
            **options,
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
        self._recovery: asyncio.Task[None] | None = None

    def dispatch(self, event_name: str, /, *args: Any, **kwargs: Any) -> None:
        # discord.py parses INTERACTION_CREATE and dispatches "interaction" before any command code runs.
        if event_name == "interaction" and args and isinstance(args[0], discord.Interaction):
            self.ack_first.received(args[0])
        super().dispatch(event_name, *args, **kwargs)

    async def load_commands(self) -> None:
        """The cogs, and the translator that gives their commands every language we have."""
        await self.tree.set_translator(CatalogTranslator())
        for extension in EXTENSIONS:
            await self.load_extension(extension)

    async def setup_hook(self) -> None:
        await adopt_gateway(self, self.settings.discord.api_base)
        await self.load_commands()
        await self.sync_commands()
        await self.engine.start()
        if self.settings.metrics.enabled:
            self.services.metrics.serve(self.settings.metrics.host, self.settings.metrics.port)
        self.maintenance.start()
        if self.engine.exclusive:  # the only process: whatever is left was left by its previous run
            # commands the last run acknowledged but never queued are answered in the background once up
            self._recovery = asyncio.create_task(self.starter.recover(), name="answer-left-behind")

    @tasks.loop(seconds=HEARTBEAT_SECONDS)
    async def maintenance(self) -> None:
        """Every minute: write the heartbeat (``seedream-bot health``), refresh the metrics gauges, and the
        bot-wide chores in whichever one process holds the maintenance lock (``_chores``)."""
        try:
            await beat(self.services.db, gateway_connected=self.gateway_connected, workers_running=self.working)
            self.services.metrics.set_states(await self.engine.counts_by_state())
            async with self.services.db.leading(MAINTENANCE_LOCK) as leader:
                if leader:
                    await self._chores()
        except Exception:
            log.exception("maintenance failed; trying again later")

    async def _chores(self) -> None:
        """Once bot-wide: remove images past their retention (daily; the data folder is shared by every process,
        README "Scaling out") and, with several processes, answer commands a dead process left "thinking…"."""
        db, now = self.services.db, time.time()
        if now - float(await get_meta(db, RETENTION_KEY) or 0) >= 86400:
            await set_meta(db, RETENTION_KEY, str(now))
            await remove_old_images(self.settings.data_dir, self.settings.storage.retention_days)
        if not self.engine.exclusive:
            await self.starter.recover(before=now - LEFT_BEHIND_SECONDS)

    @property
    def gateway_connected(self) -> bool:
        return self.is_ready() and not self.is_closed() and self.ws is not None and self.ws.open

    @property
    def working(self) -> bool:
        """The job engine's dispatcher is running (it starts jobs and resumes them after a restart)."""
        return self.engine.dispatching

    async def close(self) -> None:
        """Stop taking work, let running jobs reach a saved state, then disconnect."""
        self.maintenance.cancel()
        if self._recovery is not None:
            self._recovery.cancel()
        await self.engine.stop(self.settings.discord.shutdown_grace_seconds)
        await self.sink.drain(min(5.0, self.settings.discord.shutdown_grace_seconds))
        await super().close()

    async def sync_commands(self, *, force: bool = False) -> None:
        """Register the command tree with Discord, only where it changed since the last sync (or ``force``).

        Guild sync (``command_guilds``) shows at once in those servers; global sync can take up to an hour to
        show. Discord rate-limits syncing, so the hash of what was last synced to each place is kept in the
        ``meta`` table and a restart with the same commands syncs nothing; ``seedream-bot sync`` forces it.
        """
        guild_ids = self.settings.discord.command_guilds
        scopes: list[discord.Object | None] = [discord.Object(id=g) for g in guild_ids] if guild_ids else [None]
        for guild in scopes:
            if guild is not None:
                self.tree.copy_global_to(guild=guild)
            where = f"guild {guild.id}" if guild is not None else "every server (global)"
            key = f"commands:{self.settings.discord.api_base}:{self.application_id}:{guild.id if guild else 'global'}"
            digest = await self._command_digest(guild)
            if not force and await get_meta(self.services.db, key) == digest:
                log.info(
                    "commands for %s unchanged since the last sync; not syncing (seedream-bot sync forces it)", where
                )
                continue
            synced = await self.tree.sync(guild=guild)
            await set_meta(self.services.db, key, digest)
            log.info("synced %s to %s", plural(len(synced), "command"), where)

    async def _command_digest(self, guild: discord.Object | None) -> str:
        """sha256 of the payload ``tree.sync`` would send for ``guild`` (None: global), the same way it builds it."""
        commands_ = self.tree.get_commands(guild=guild)
        translator = self.tree.translator
        if translator:
            payload = [await command.get_translated_payload(self.tree, translator) for command in commands_]
        else:
            payload = [command.to_dict(self.tree) for command in commands_]
        payload.sort(key=lambda c: (c.get("type", 1), c["name"]))
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    async def on_ready(self) -> None:
        try:  # at once, so `seedream-bot health` need not wait for the next minute to see the gateway
            await beat(self.services.db, gateway_connected=self.gateway_connected, workers_running=self.working)
        except Exception as exc:
            log.warning("could not write the heartbeat: %s", exc)
        log.info(
            "connected as %s (%s) to %s", self.user, getattr(self.user, "id", "?"), plural(len(self.guilds), "guild")
        )


class ShardedSeedreamBot(SeedreamBot, commands.AutoShardedBot):
    """``[discord] shard_count`` set: discord.py's sharded client, running ``shard_ids`` (or every shard) of
    ``shard_count`` (0: the count Discord recommends). Several ``run`` processes split the gateway this way."""

    def __init__(self, services: Services) -> None:
        shards = services.settings.discord
        super().__init__(services, shard_count=shards.shard_count or None, shard_ids=shards.shard_ids or None)

    @property
    def gateway_connected(self) -> bool:
        return self.is_ready() and not self.is_closed() and all(not s.is_closed() for s in self.shards.values())


def bot_class(settings: Settings) -> type[SeedreamBot]:
    """The sharded bot unless ``[discord] shard_count`` is 1 (the default: one gateway connection)."""
    return ShardedSeedreamBot if settings.discord.shard_count != 1 else SeedreamBot


class CommandSyncer(SeedreamBot):
    """``seedream-bot sync``: log in, build the command tree, sync it everywhere it belongs, and stop.

    No gateway connection, no job engine: only what the tree needs.
    """

    async def setup_hook(self) -> None:
        await self.load_commands()
        await self.sync_commands(force=True)


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
    quiet_voice_warnings()
    async with await Services.open(settings) as services:
        bot = bot_class(settings)(services)
        if on_start is not None:
            on_start(bot)
        probe = asyncio.create_task(
            reach_discord(settings.discord.api_base, settings.discord.login_timeout_seconds), name="reach-discord"
        )

        closing: list[asyncio.Future[None]] = []

        def stop() -> None:
            probe.cancel()  # a stop while Discord is still being retried ends the retries at once
            closing.append(asyncio.ensure_future(bot.close()))

        if handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop)
        async with bot:
            try:
                try:
                    await probe
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if not probe.cancelled() or (current is not None and current.cancelling()):
                        raise  # we are being cancelled ourselves
                    log.info("stopped before Discord could be reached")
                    return 0
                if not bot.is_closed():
                    await bot.start(token)
            except Exception as exc:
                code = start_error(exc, settings)
                if code is None:
                    raise
                return code
    return 0


async def sync_now(settings: Settings, token: str) -> int:
    """``seedream-bot sync``: force a command sync now (see ``SeedreamBot.sync_commands``); the exit code."""
    use_api_base(settings.discord.api_base)
    quiet_voice_warnings()
    async with await Services.open(settings) as services, CommandSyncer(services) as bot:
        failed = await log_in(bot, settings, token)
    return failed or 0


async def log_in(client: discord.Client, settings: Settings, token: str) -> int | None:
    """Reach Discord (retrying) and log in over REST, no gateway; None, or the exit code of a start error."""
    try:
        await reach_discord(settings.discord.api_base, settings.discord.login_timeout_seconds)
        await client.login(token)
    except Exception as exc:
        code = start_error(exc, settings)
        if code is None:
            raise
        return code
    return None


async def run_worker(
    settings: Settings,
    token: str,
    *,
    on_start: Callable[[WorkerClient], None] | None = None,
    handle_signals: bool = True,
) -> int:
    """``seedream-bot worker``: log in (REST only), run jobs until SIGTERM/SIGINT; the process exit code."""
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
            failed = await log_in(client, settings, token)
            if failed is not None:
                return failed
            await client.engine.start()
            log.info("worker %s running jobs as %s (no gateway connection)", client.engine.owner, client.user)
            await client.stopping.wait()
            grace = settings.discord.shutdown_grace_seconds
            log.info("worker stopping: running jobs get %.0f s to reach a saved state", grace)
    return 0
