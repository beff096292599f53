"""Everything the bot and the CLI share, built once from Settings and closed in reverse order.

One clock (``time.time`` unless a test passes its own) is handed to every part that reads the time when it
is built: the ledger and its window, policy, moderation, usage, the provider health and the job engine.

One aiohttp session serves every request the bot makes outside Discord (provider APIs, result downloads,
attachment fetches); the fetcher and the providers borrow it, and it is closed last. The Discord client
keeps its own (discord.py owns it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from bot.config import Settings
from bot.fetch import ImageFetcher
from bot.images import ImageStore
from bot.jobs.engine import Clock, JobEngine
from bot.jobs.sink import ResultSink
from bot.metrics import Metrics
from bot.moderation import ModeratorActions, PolicyService
from bot.provider_health import ProviderHealth
from bot.providers.links import client_session
from bot.providers.registry import ProviderRegistry
from bot.quota import Ledger
from bot.storage import Store, open_store
from bot.usage import UsageService


@dataclass
class Services:
    settings: Settings
    db: Store
    store: ImageStore
    fetcher: ImageFetcher
    providers: ProviderRegistry
    ledger: Ledger
    policy: PolicyService
    moderation: ModeratorActions
    usage: UsageService
    metrics: Metrics
    #: The process's one session for everything outside Discord.
    http: aiohttp.ClientSession
    clock: Clock = time.time

    @classmethod
    async def open(cls, settings: Settings, *, clock: Clock = time.time) -> Services:
        gen = settings.generation
        store = ImageStore(settings.data_dir, max_pixels=gen.max_image_pixels, max_bytes=gen.max_result_bytes)
        http = client_session(workers=gen.workers)
        fetcher = ImageFetcher(
            store,
            settings.discord.attachment_hosts,
            timeout_seconds=gen.download_timeout_seconds,
            max_bytes=gen.max_reference_bytes,
            session=http,
        )
        try:
            db = await open_store(settings.storage.database)  # SQLite file or postgresql:// URL
        except BaseException:
            await http.close()
            raise
        try:
            await db.migrate()
            providers = ProviderRegistry.from_settings(settings, store, http)
        except BaseException:
            await db.close()
            await http.close()
            raise
        ledger = Ledger(db, settings.quota, clock)
        return cls(
            settings=settings,
            db=db,
            store=store,
            fetcher=fetcher,
            providers=providers,
            ledger=ledger,
            policy=PolicyService.for_settings(db, ledger, settings),  # the ledger's clock
            moderation=ModeratorActions(db, ledger, provider_names=settings.providers.keys(), clock=clock),
            usage=UsageService(db, ledger, model_labels=UsageService.labels_for(settings), clock=clock),
            metrics=Metrics(settings.metrics.enabled),
            http=http,
            clock=clock,
        )

    def make_engine(self, sink: ResultSink) -> JobEngine:
        """The job engine for this process, posting through ``sink``, on the services' clock."""
        gen = self.settings.generation
        health = ProviderHealth(
            {name: cfg.credit_cooldown_minutes * 60 for name, cfg in self.settings.providers.items()},
            self.clock,
        )
        return JobEngine(
            self.db,
            self.providers,
            self.ledger,
            sink,
            workers=gen.workers,
            delivery_workers=gen.delivery_workers,
            per_user_in_flight=gen.per_user_in_flight,
            max_queued_per_user=self.settings.quota.max_queued_per_user,
            health=health,
            metrics=self.metrics,
            clock=self.clock,
            lease_seconds=gen.lease_seconds,
            poll_seconds=gen.lease_poll_seconds,
        )

    async def close(self) -> None:
        try:
            self.metrics.close()
            await self.providers.close()
            await self.fetcher.close()
            await self.db.close()
        finally:
            await self.http.close()  # last: the providers and the fetcher borrow it

    async def __aenter__(self) -> Services:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
