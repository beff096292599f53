"""The daily allowance ends at midnight in the server's own time zone, not in UTC and not 24 hours after use.

The services and the job engine are built as the bot builds them (``Services.open``), on one hand-moved clock,
against real SQLite; nothing sleeps. A member in a
server whose window is set to America/New_York (through the moderators' window setting, or the config's
``[quota] timezone``) spends the allowance at 23:59 local time, is refused at 23:59:30 with the reset time
being that local midnight, and is allowed again at 00:00:01, also on the days the clocks change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.config import Settings
from bot.jobs import Job
from bot.jobs.sink import RecordMessage
from bot.providers.base import GenerationRequest
from bot.quota import AllowanceExceeded
from bot.services import Services

NEW_YORK = ZoneInfo("America/New_York")
GUILD, MEMBER, MODERATOR, LIMIT = 10, 20, 30, 3


class Clock:
    """Wall-clock time the test sets by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def set(self, year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
        """Move to this local time in New York; returns it."""
        when = datetime(year, month, day, hour, minute, second, tzinfo=NEW_YORK)
        self.now = when.timestamp()
        return when


class NoSink:
    async def progress(self, job: Job, position: int) -> None:
        return None

    async def deliver(self, job: Job, record_message: RecordMessage) -> None:
        return None

    async def finished(self, job: Job) -> None:
        return None

    async def failed(self, job: Job, message: str) -> None:
        return None

    async def alert(self, job: Job, message: str) -> None:
        return None


class Server:
    """The services and the engine as the bot builds them (the engine never started: the jobs only need to be
    admitted), every part on the one clock given to ``Services.open``."""

    def __init__(self, services: Services, clock: Clock) -> None:
        self.services = services
        self.clock = clock
        self.ledger = services.ledger
        self.engine = services.make_engine(NoSink())

    async def imagine(self, count: int = 1) -> Job:
        job, _ = await self.engine.enqueue(
            kind="imagine",
            requester_id=MEMBER,
            guild_id=GUILD,
            channel_id=1,
            provider_name=None,
            request=GenerationRequest(prompt="a koala", count=count, resolution="1K"),
            quota_limit=LIMIT,
        )
        return job

    async def refused(self) -> datetime:
        """Asking for one more image is refused; returns the reset time the member is told."""
        with pytest.raises(AllowanceExceeded, match=f"you have 0 of {LIMIT} left") as refusal:
            await self.imagine()
        resets = refusal.value.resets_at
        assert f"<t:{int(resets.timestamp())}:R>" in refusal.value.user_message
        balance = await self.ledger.balance(GUILD, MEMBER, LIMIT)
        assert (balance.used, balance.left, balance.resets_at) == (LIMIT, 0, resets)  # what /quota shows
        return resets


@asynccontextmanager
async def open_server(tmp_path: Path, timezone: str) -> AsyncIterator[Server]:
    settings = Settings.model_validate(
        {
            "storage": {"database": str(tmp_path / "bot.sqlite3"), "data_dir": str(tmp_path / "data")},
            "quota": {"default_limit": LIMIT, "timezone": timezone, "max_queued_per_user": 100},
            "generation": {"workers": 1, "per_user_in_flight": 1},
            "providers": {"local": {"kind": "local"}},
        }
    )
    clock = Clock()
    async with await Services.open(settings, clock=clock) as services:
        yield Server(services, clock)


@pytest.fixture
async def new_york(tmp_path: Path) -> AsyncIterator[Server]:
    """The config says UTC; the server's moderators chose New York for their window."""
    async with open_server(tmp_path, "UTC") as server:
        await server.services.moderation.set_window(GUILD, MODERATOR, kind="daily", timezone="america/new_york")
        yield server


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def test_every_part_reads_the_one_clock_given_to_the_services(tmp_path: Path) -> None:
    async with open_server(tmp_path, "UTC") as server:
        services, engine = server.services, server.engine
        clocks = {
            "ledger": services.ledger.clock,
            "window": services.ledger.window.clock,
            "policy": services.policy.clock,
            "moderation": services.moderation.clock,
            "usage": services.usage.clock,
            "engine": engine.clock,
            "provider health": engine.health.clock,
        }
        assert {name: clock is server.clock for name, clock in clocks.items()} == dict.fromkeys(clocks, True)


async def test_the_allowance_comes_back_at_midnight_in_the_servers_time_zone(new_york: Server) -> None:
    server = new_york
    server.clock.set(2025, 6, 2, 23, 59)  # 03:59 UTC on June 3: already "tomorrow" in UTC
    await server.imagine(count=LIMIT)
    server.clock.set(2025, 6, 2, 23, 59, 30)
    assert await server.refused() == utc(2025, 6, 3, 4)  # midnight in New York (EDT, UTC-4)
    server.clock.set(2025, 6, 3, 0, 0, 1)
    await server.imagine(count=LIMIT)  # a whole new allowance
    assert await server.refused() == utc(2025, 6, 4, 4)


async def test_the_config_time_zone_applies_where_the_server_chose_none(tmp_path: Path) -> None:
    async with open_server(tmp_path, "America/New_York") as server:
        server.clock.set(2025, 1, 15, 23, 59)
        await server.imagine(count=LIMIT)
        server.clock.set(2025, 1, 15, 23, 59, 30)
        assert await server.refused() == utc(2025, 1, 16, 5)  # midnight in New York (EST, UTC-5)
        server.clock.set(2025, 1, 16, 0, 0, 1)
        await server.imagine()


async def test_the_day_the_clocks_go_forward_lasts_23_hours(new_york: Server) -> None:
    """Sunday 9 March 2025: 02:00 EST becomes 03:00 EDT."""
    server = new_york
    server.clock.set(2025, 3, 8, 23, 59)
    await server.imagine(count=LIMIT)
    server.clock.set(2025, 3, 8, 23, 59, 30)
    assert await server.refused() == utc(2025, 3, 9, 5)  # the night before the change: EST
    used_at = server.clock.set(2025, 3, 9, 0, 0, 1)
    await server.imagine(count=LIMIT)
    server.clock.set(2025, 3, 9, 23, 59, 30)
    assert await server.refused() == utc(2025, 3, 10, 4)  # the next midnight is in EDT
    server.clock.set(2025, 3, 10, 0, 0, 1)
    assert server.clock.now - used_at.timestamp() == 23 * 3600  # less than a day later, a new day
    await server.imagine(count=LIMIT)


async def test_the_day_the_clocks_go_back_lasts_25_hours(new_york: Server) -> None:
    """Sunday 2 November 2025: 02:00 EDT becomes 01:00 EST."""
    server = new_york
    used_at = server.clock.set(2025, 11, 2, 0, 0, 1)
    await server.imagine(count=LIMIT)
    server.clock.now = used_at.timestamp() + 24 * 3600  # a full day later it is 23:00:01 local, the same day
    assert datetime.fromtimestamp(server.clock.now, NEW_YORK).hour == 23
    assert await server.refused() == utc(2025, 11, 3, 5)  # midnight in EST
    server.clock.set(2025, 11, 2, 23, 59, 30)
    assert await server.refused() == utc(2025, 11, 3, 5)
    server.clock.set(2025, 11, 3, 0, 0, 1)
    await server.imagine(count=LIMIT)
