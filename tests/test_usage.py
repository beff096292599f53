"""Usage reports from real jobs: totals per member, role and model; a PNG chart; a CSV; the audit trail."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from bot.config import Settings
from bot.jobs import Job
from bot.moderation import MemberContext
from bot.providers.base import GenerationRequest
from bot.services import Services
from bot.usage import MANUAL_REFUND, UsageReport, UsageRow, UsageService, render_audit_csv
from tests import pg
from tests.test_jobs import RecordingSink
from tests.test_quota import FakeClock, at

GUILD, MOD = 100, 900
ARTISTS, VIP = 11, 12
ANNA, BORIS = 5, 6
LOCAL, PRO = "local (placeholder)", "pro (placeholder-pro)"


class Bot:
    """The core of the bot as the Discord layer drives it (built by ``Services.open`` on one fake clock):
    policy check, then enqueue, then run."""

    def __init__(self, services: Services, clock: FakeClock) -> None:
        self.clock = clock
        self.engine = services.make_engine(RecordingSink())
        self.policy = services.policy
        self.mod = services.moderation
        self.usage = services.usage

    async def imagine(
        self, user: int, roles: tuple[int, ...], provider: str, *, run: bool = True, **options: object
    ) -> Job:
        ctx = MemberContext(guild_id=GUILD, user_id=user, role_ids=roles, channel_id=1)
        request = GenerationRequest.model_validate({"prompt": f"picture by {user}", "resolution": "1K", **options})
        decision = await self.policy.check(ctx, request, provider)
        job, _ = await self.engine.enqueue(
            kind="imagine",
            requester_id=user,
            guild_id=GUILD,
            channel_id=1,
            provider_name=provider,
            request=request,
            quota_limit=decision.quota_limit,
        )
        return await self.engine.run_one(job) if run else job


@pytest.fixture(params=pg.STORE_KINDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """``[storage] database``: a SQLite file, or a throwaway PostgreSQL database (tests/pg.py)."""
    if request.param == "postgres":
        async with pg.throwaway_database(await pg.require_server()) as url:
            yield url
        return
    yield str(tmp_path / "bot.sqlite3")


def settings_for(tmp_path: Path, database: str | None = None) -> Settings:
    return Settings.model_validate(
        {
            "storage": {"database": database or str(tmp_path / "bot.sqlite3"), "data_dir": str(tmp_path / "data")},
            "quota": {"default_limit": 50, "timezone": "Europe/Berlin", "max_queued_per_user": 10},
            "generation": {"workers": 2, "per_user_in_flight": 2},
            "providers": {
                "local": {"kind": "local"},
                "pro": {"kind": "local", "model": "placeholder-pro", "cost_weight": 2},
            },
        }
    )


@pytest.fixture
async def bot(tmp_path: Path, database: str) -> AsyncIterator[Bot]:
    """Two days of use in June 2025 (Berlin time), one cancelled job and one moderator refund, on either store."""
    clock = FakeClock(at(2025, 6, 2, 10))
    async with await Services.open(settings_for(tmp_path, database), clock=clock) as services:
        assert services.usage.model_labels == {"local": LOCAL, "pro": PRO}
        yield await used(Bot(services, clock))


async def used(bot: Bot) -> Bot:
    await bot.imagine(ANNA, (ARTISTS,), "local", count=2)  # 2 units
    await bot.imagine(BORIS, (ARTISTS, VIP), "pro", resolution="4K")  # weight 2 × 4K 2 = 4 units
    bot.clock.now = at(2025, 6, 3, 9).timestamp()
    await bot.imagine(ANNA, (ARTISTS,), "pro")  # 2 units
    cancelled = await bot.imagine(BORIS, (ARTISTS, VIP), "local", run=False)
    await bot.engine.cancel(cancelled.id)  # refunded: 0 units, no image
    await bot.mod.refund(GUILD, MOD, ANNA, 1, "one picture came out blank")
    return bot


def rows(report_rows: list[UsageRow]) -> dict[int | str, tuple[int, int, int]]:
    return {row.key: (row.units, row.images, row.jobs) for row in report_rows}


async def test_totals_per_member_role_and_model(bot: Bot) -> None:
    report = await bot.usage.report(GUILD, "month")
    assert rows(report.members) == {ANNA: (3, 3, 2), BORIS: (4, 1, 2)}
    assert rows(report.models) == {PRO: (6, 2, 2), LOCAL: (2, 2, 2), MANUAL_REFUND: (-1, 0, 0)}
    assert rows(report.roles) == {ARTISTS: (7, 4, 4), VIP: (4, 1, 2)}  # Boris counts for both his roles
    assert [row.key for row in report.members] == [BORIS, ANNA]  # biggest spender first
    assert report.days == {"2025-06-02": {LOCAL: 2, PRO: 4}, "2025-06-03": {PRO: 2, LOCAL: 0, MANUAL_REFUND: -1}}
    assert (report.total_units, report.total_images) == (7, 4)


async def test_a_period_follows_the_guilds_calendar(bot: Bot) -> None:
    today = await bot.usage.report(GUILD, "day")  # June 3 in Berlin
    assert rows(today.members) == {ANNA: (1, 1, 1), BORIS: (0, 0, 1)}
    start, end = await bot.usage.period_bounds(GUILD, "week")
    assert (start, end) == (at(2025, 6, 2, 0).timestamp(), at(2025, 6, 9, 0).timestamp())
    bot.clock.now = at(2025, 7, 1, 9).timestamp()
    assert (await bot.usage.report(GUILD, "month")).members == []
    assert rows((await bot.usage.report(GUILD, "all")).members) == {ANNA: (3, 3, 2), BORIS: (4, 1, 2)}
    assert (await bot.usage.report(GUILD + 1, "all")).members == []  # other guilds never leak in


async def test_the_report_carries_the_moderators_actions(bot: Bot) -> None:
    report = await bot.usage.report(GUILD, "month")
    assert [(e.action, e.actor_id, e.target, e.reason) for e in report.audit] == [
        ("quota.refund", MOD, f"user:{ANNA}", "one picture came out blank")
    ]
    table = list(csv.DictReader(io.StringIO(render_audit_csv(report.audit, report.timezone).decode())))
    assert table[0]["action"] == "quota.refund" and table[0]["when"] == "2025-06-03T09:00:00+02:00"
    assert [e.action for e in await bot.usage.recent_audit(GUILD)] == ["quota.refund"]


def decode_png(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_the_chart_is_a_png_of_a_sensible_size_with_something_drawn(bot: Bot) -> None:
    report = await bot.usage.report(GUILD, "month")
    image = decode_png(await bot.usage.chart_png(report, {ANNA: "Anna $x$ ^_^", BORIS: "Boris"}))
    assert image.format == "PNG" and image.size == (1100, 480)
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or ()) > 20  # bars, text and a legend


async def test_an_empty_period_still_gets_a_chart(bot: Bot) -> None:
    image = decode_png(await bot.usage.chart_png(UsageReport(GUILD, 0.0, 1.0, "UTC")))
    assert image.size == (1100, 480)


async def test_the_csv_parses_and_names_members_safely(bot: Bot) -> None:
    report = await bot.usage.report(GUILD, "month")
    data = UsageService.csv_bytes(report, {ANNA: "=HYPERLINK(evil)", BORIS: "Boris"})
    table = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    members = {r["id"]: r for r in table if r["section"] == "member"}
    assert members[str(BORIS)]["name"] == "Boris" and members[str(BORIS)]["units"] == "4"
    assert members[str(ANNA)]["name"] == "'=HYPERLINK(evil)"  # never a formula in a spreadsheet
    models = {r["name"]: int(r["units"]) for r in table if r["section"] == "model"}
    assert models == {PRO: 6, LOCAL: 2, MANUAL_REFUND: -1}
    assert {r["section"] for r in table} == {"member", "role", "model", "day"}
