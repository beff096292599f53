"""The quota ledger against real SQLite and PostgreSQL (each ``db`` test runs on both): windows in a time
zone, refunds, caps, and no overspend under load.

Run as ``python -m tests.test_quota worker DB USER COUNT LIMIT`` it is also the second process of the
cross-process concurrency test.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.config import QuotaSection
from bot.errors import InvalidRequest, QuotaExceeded, TooManyJobs
from bot.images import StoredImage
from bot.jobs.models import Job, JobState
from bot.jobs.repository import JobRepository
from bot.moderation import ModeratorActions
from bot.providers.base import GenerationRequest
from bot.quota import AllowanceExceeded, Ledger, Window
from bot.storage import Database, Store
from tests import pg

GUILD = 1
BERLIN = ZoneInfo("Europe/Berlin")
ROOT = Path(__file__).resolve().parent.parent
_ids = itertools.count()


@pytest.fixture(params=pg.STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every ``db`` test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def at(year: int, month: int, day: int, hour: int = 12, minute: int = 0, zone: ZoneInfo = BERLIN) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone)


async def reserve_job(
    db: Database,
    ledger: Ledger,
    *,
    user: int,
    units: int,
    limit: int | None = None,
    guild: int | None = GUILD,
    provider: str = "local",
    references: tuple[StoredImage, ...] = (),
    queued_cap: int | None = None,
) -> str:
    """Write a job and reserve its units in one statement, as the engine does."""
    now = ledger.clock()
    job = Job(
        id=f"t{os.getpid()}-{next(_ids)}",
        kind="imagine",
        requester_id=user,
        guild_id=guild,
        channel_id=None,
        provider=provider,
        request=GenerationRequest(prompt="a koala", references=list(references)),
        state=JobState.QUEUED,
        cost_units=units,
        created_at=now,
        updated_at=now,
    )
    jobs = JobRepository(db)
    await ledger.admit(
        lambda admission: jobs.admit(job, admission),
        guild_id=guild,
        user_id=user,
        units=units,
        limit=limit,
        queued_cap=queued_cap,
    )
    return job.id


async def settle(db: Database, ledger: Ledger, job_id: str, generated: int) -> None:
    async with db.transaction() as conn:
        await ledger.settle(conn, job_id, generated, note="test")


async def ledger_sum(db: Database, user: int) -> int:
    row = await db.fetchone(
        "SELECT SUM(CASE entry WHEN 'reserve' THEN units WHEN 'refund' THEN -units ELSE 0 END) FROM quota_ledger"
        " WHERE user_id = ?",
        (user,),
    )
    return int(row[0] or 0) if row else 0


async def count(db: Database, sql: str, params: tuple[object, ...] = ()) -> int:
    row = await db.fetchone(sql, params)
    return int(row[0]) if row else 0


def make_ledger(db: Database, clock: FakeClock, **quota: object) -> Ledger:
    return Ledger(db, QuotaSection.model_validate(quota), clock)


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


# -- weights and settling --------------------------------------------------------------------------
async def test_a_4k_image_costs_two_units_and_weights_multiply(db: Database) -> None:
    ledger = make_ledger(db, FakeClock(at(2025, 6, 2)))
    assert ledger.units_for(1, "2K", 1) == 1
    assert ledger.units_for(1, "4K", 1) == 2
    assert ledger.units_for(3, "4K", 2) == 12


async def test_settle_commits_what_was_generated_and_refunds_the_rest(db: Database) -> None:
    ledger = make_ledger(db, FakeClock(at(2025, 6, 2)))
    job = await reserve_job(db, ledger, user=5, units=4)
    assert await ledger.used(GUILD, 5) == 4
    await settle(db, ledger, job, 3)
    await settle(db, ledger, job, 3)  # settling twice changes nothing
    rows = await db.fetchall("SELECT entry, units FROM quota_ledger WHERE job_id = ? ORDER BY id", (job,))
    assert [(r[0], r[1]) for r in rows] == [("reserve", 4), ("commit", 3), ("refund", 1)]
    assert await ledger.used(GUILD, 5) == 3 == await ledger_sum(db, 5)


async def test_a_failed_job_gives_every_unit_back(db: Database) -> None:
    ledger = make_ledger(db, FakeClock(at(2025, 6, 2)), default_limit=10)
    job = await reserve_job(db, ledger, user=5, units=6, limit=10)
    await settle(db, ledger, job, 0)
    assert await ledger.used(GUILD, 5) == 0
    await reserve_job(db, ledger, user=5, units=10, limit=10)  # the whole allowance is there again


async def test_over_the_limit_is_refused_with_the_reset_time_and_nothing_is_written(db: Database) -> None:
    clock = FakeClock(at(2025, 6, 2, 15))
    ledger = make_ledger(db, clock, timezone="Europe/Berlin")
    await reserve_job(db, ledger, user=5, units=3, limit=4)
    with pytest.raises(AllowanceExceeded, match="you have 1 of 4 left") as refused:
        await reserve_job(db, ledger, user=5, units=2, limit=4)
    assert refused.value.resets_at == at(2025, 6, 3, 0)
    assert f"<t:{int(at(2025, 6, 3, 0).timestamp())}:R>" in refused.value.user_message
    assert await count(db, "SELECT COUNT(*) FROM jobs") == 1  # the refused job was rolled back too


async def test_an_edit_refused_for_quota_leaves_neither_job_nor_reference_rows(db: Database) -> None:
    ledger = make_ledger(db, FakeClock(at(2025, 6, 2)))
    image = StoredImage(path=Path("ref.png"), sha256="0" * 64, size_bytes=10, width=8, height=8, mime="image/png")
    kept = await reserve_job(db, ledger, user=5, units=3, limit=4, references=(image,))
    with pytest.raises(AllowanceExceeded, match="you have 1 of 4 left"):
        await reserve_job(db, ledger, user=5, units=2, limit=4, references=(image, image))
    assert await count(db, "SELECT COUNT(*) FROM job_images") == 1
    assert await count(db, "SELECT COUNT(*) FROM quota_ledger WHERE job_id != ?", (kept,)) == 0


# -- manual refunds ----------------------------------------------------------------------------------
async def test_a_moderator_refund_restores_the_balance_exactly(db: Database) -> None:
    ledger = make_ledger(db, FakeClock(at(2025, 6, 2)))
    actions = ModeratorActions(db, ledger)
    job = await reserve_job(db, ledger, user=5, units=7, limit=10)
    await settle(db, ledger, job, 7)
    assert await actions.refund(GUILD, actor_id=99, user_id=5, units=4, reason="bad outputs") == 3
    assert await ledger.used(GUILD, 5) == 3 == await ledger_sum(db, 5)
    await reserve_job(db, ledger, user=5, units=7, limit=10)  # exactly 7 left, not 6, not 8
    with pytest.raises(QuotaExceeded):
        await reserve_job(db, ledger, user=5, units=1, limit=10)


async def test_a_refund_cannot_exceed_what_was_charged_or_touch_running_jobs(db: Database) -> None:
    ledger = make_ledger(db, FakeClock(at(2025, 6, 2)))
    actions = ModeratorActions(db, ledger)
    done = await reserve_job(db, ledger, user=5, units=2)
    await settle(db, ledger, done, 2)
    running = await reserve_job(db, ledger, user=5, units=5)
    with pytest.raises(InvalidRequest, match="at most 2 can be refunded"):
        await actions.refund(GUILD, actor_id=99, user_id=5, units=3, reason="too generous")
    await settle(db, ledger, running, 0)  # the running job failed and refunded itself
    assert await ledger.used(GUILD, 5) == 2
    assert await count(db, "SELECT COUNT(*) FROM audit_log") == 0  # refused actions leave no trace


async def test_two_moderators_refunding_at_once_cannot_hand_back_more_than_was_charged(
    db: Store, another_store: Callable[[], Awaitable[Store]]
) -> None:
    """Each refund reads what is refundable, then writes: on PostgreSQL two at once (two pools) used to both read
    5 and both refund it; the member's quota lock makes the second read the first's refund."""
    clock = FakeClock(at(2025, 6, 2))
    ledger = make_ledger(db, clock)
    await settle(db, ledger, await reserve_job(db, ledger, user=5, units=5), 5)
    other = await another_store()
    moderators = [ModeratorActions(store, make_ledger(store, clock)) for store in (db, other)]
    outcomes = await asyncio.gather(
        *(m.refund(GUILD, actor_id=90 + i, user_id=5, units=5, reason="broken") for i, m in enumerate(moderators)),
        return_exceptions=True,
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["InvalidRequest", "int"]
    assert await ledger_sum(db, 5) == 0 == await ledger.used(GUILD, 5)


# -- windows -----------------------------------------------------------------------------------------
def window_at(kind: str, when: datetime, zone: str = "Europe/Berlin") -> tuple[datetime, datetime]:
    window = Window(QuotaSection.model_validate({"window": kind, "timezone": zone}), FakeClock(when))
    start, _ = window.bounds()
    return utc(start), window.resets_at()


def test_a_daily_window_on_the_spring_dst_day_lasts_23_hours_in_berlin() -> None:
    start, end = window_at("daily", at(2025, 3, 30, 12))
    assert start == at(2025, 3, 30, 0) and end == at(2025, 3, 31, 0)
    assert (end - start).total_seconds() == 23 * 3600
    assert end == datetime(2025, 3, 30, 22, tzinfo=UTC)  # midnight in Berlin, not in UTC


def test_a_daily_window_on_the_autumn_dst_day_lasts_25_hours() -> None:
    start, end = window_at("daily", at(2025, 10, 26, 12))
    assert (end - start).total_seconds() == 25 * 3600


def test_a_weekly_window_starts_on_monday_midnight_local_and_spans_the_dst_change() -> None:
    start, end = window_at("weekly", at(2025, 3, 26, 10))  # a Wednesday, before the change
    assert start == at(2025, 3, 24, 0) and end == at(2025, 3, 31, 0)
    assert start.utcoffset() is not None and (end - start).total_seconds() == 7 * 24 * 3600 - 3600


def test_a_monthly_window_runs_from_the_first_to_the_first() -> None:
    start, end = window_at("monthly", at(2025, 10, 15))
    assert start == at(2025, 10, 1, 0) and end == at(2025, 11, 1, 0)
    assert utc(end.timestamp()) == datetime(2025, 10, 31, 23, tzinfo=UTC)
    start, end = window_at("monthly", at(2025, 12, 31, 23, 30))
    assert end == at(2026, 1, 1, 0)


async def test_usage_resets_at_local_midnight_not_utc_midnight(db: Database) -> None:
    clock = FakeClock(at(2025, 6, 2, 23, 30))  # 21:30 UTC
    ledger = make_ledger(db, clock)
    await ModeratorActions(db, ledger).set_window(GUILD, actor_id=99, kind="daily", timezone="Europe/Berlin")
    await reserve_job(db, ledger, user=5, units=3)
    assert await ledger.used(GUILD, 5) == 3
    clock.now = at(2025, 6, 3, 0, 30).timestamp()  # 22:30 UTC: still the same UTC day
    assert await ledger.used(GUILD, 5) == 0
    assert await ledger.used(2, 5) == 0  # another guild keeps its own (UTC) window and ledger


async def test_a_late_refund_of_yesterdays_job_counts_for_yesterday(db: Database) -> None:
    clock = FakeClock(at(2025, 6, 2, 23, 50))
    ledger = make_ledger(db, clock, timezone="Europe/Berlin")
    slow = await reserve_job(db, ledger, user=5, units=5, limit=10)
    clock.now = at(2025, 6, 3, 0, 10).timestamp()
    await reserve_job(db, ledger, user=5, units=3, limit=10)
    clock.now = at(2025, 6, 3, 0, 30).timestamp()
    await settle(db, ledger, slow, 0)  # yesterday's job fails after midnight
    assert await ledger.used(GUILD, 5) == 3  # today's usage is untouched: no surprise credit
    with pytest.raises(QuotaExceeded, match="you have 7 of 10 left"):
        await reserve_job(db, ledger, user=5, units=8, limit=10)


async def test_a_rolling_window_frees_units_as_old_reservations_age_out(db: Database) -> None:
    clock = FakeClock(at(2025, 6, 2, 8))
    ledger = make_ledger(db, clock, window="rolling", rolling_hours=24)
    start = clock.now
    await reserve_job(db, ledger, user=5, units=3, limit=5)
    clock.advance(3600)
    await reserve_job(db, ledger, user=5, units=2, limit=5)
    clock.advance(3600)
    with pytest.raises(AllowanceExceeded) as refused:
        await reserve_job(db, ledger, user=5, units=1, limit=5)
    assert refused.value.resets_at == utc(start + 24 * 3600)  # when the first 3 units come back
    balance = await ledger.balance(GUILD, 5, 5)
    assert (balance.used, balance.left, balance.window) == (5, 0, "rolling 24 h")
    clock.now = start + 24 * 3600 + 1
    assert await ledger.used(GUILD, 5) == 2
    await reserve_job(db, ledger, user=5, units=3, limit=5)


# -- the global cap ----------------------------------------------------------------------------------
async def test_the_global_daily_cap_stops_every_guild_until_the_next_day(db: Database) -> None:
    clock = FakeClock(at(2025, 6, 2, 20, zone=ZoneInfo("UTC")))
    ledger = make_ledger(db, clock, global_daily_cap=10)
    await reserve_job(db, ledger, user=1, units=6, guild=1)
    failed = await reserve_job(db, ledger, user=2, units=4, guild=2)
    with pytest.raises(AllowanceExceeded, match="daily image budget") as refused:
        await reserve_job(db, ledger, user=3, units=1, guild=3, limit=None)  # even unlimited members
    assert refused.value.resets_at == datetime(2025, 6, 3, tzinfo=UTC)
    await settle(db, ledger, failed, 0)  # refunded units go back into the bot's budget
    await reserve_job(db, ledger, user=3, units=4, guild=3)
    clock.now = datetime(2025, 6, 3, 0, 1, tzinfo=UTC).timestamp()
    await reserve_job(db, ledger, user=3, units=10, guild=3)


# -- concurrency -------------------------------------------------------------------------------------
async def _fire(db: Database, ledger: Ledger, user: int, count: int, limit: int) -> int:
    outcomes = await asyncio.gather(
        *(reserve_job(db, ledger, user=user, units=1, limit=limit) for _ in range(count)), return_exceptions=True
    )
    unexpected = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, QuotaExceeded)]
    assert not unexpected, unexpected[:3]
    return sum(isinstance(o, str) for o in outcomes)


async def test_hundreds_of_reservations_over_several_connections_never_overspend(
    db: Store, another_store: Callable[[], Awaitable[Store]]
) -> None:
    """Three connections to one database (three pools on PostgreSQL), as three processes have, race 300
    reservations against a limit of 40: exactly 40 are granted, on either store."""
    clock = FakeClock(at(2025, 6, 2))
    connections = [db, await another_store(), await another_store()]
    accepted = await asyncio.gather(*(_fire(c, make_ledger(c, clock), 7, 100, 40) for c in connections))
    assert sum(accepted) == 40
    assert await make_ledger(db, clock).used(GUILD, 7) == 40 == await ledger_sum(db, 7)


async def test_a_servers_jobs_in_flight_and_the_daily_cap_hold_across_connections(
    db: Store, another_store: Callable[[], Awaitable[Store]]
) -> None:
    """A server's max_in_flight and the bot's daily cap are the store's rule too: two connections racing
    admissions never get past either, and the refusals say which limit."""
    clock = FakeClock(at(2025, 6, 2, 12, zone=ZoneInfo("UTC")))
    other = await another_store()
    await ModeratorActions(db, make_ledger(db, clock)).set_max_in_flight(GUILD, 99, 3)
    ledgers = [make_ledger(c, clock, global_daily_cap=12) for c in (db, other)]

    async def burst(user: int) -> list[object]:
        return await asyncio.gather(
            *(reserve_job(c, ledgers[i % 2], user=user, units=1) for i, c in enumerate([db, other] * 10)),
            return_exceptions=True,
        )

    outcomes = await burst(5)
    assert sum(isinstance(o, str) for o in outcomes) == 3  # the server's cap, not the allowance of 10
    refusals = {str(o) for o in outcomes if isinstance(o, TooManyJobs)}
    assert refusals == {
        "You already have 3 picture jobs in progress here (the limit is 3); please wait for one to finish."
    }
    for user in (6, 7, 8, 9, 10):
        await burst(user)
    assert await count(db, "SELECT SUM(units) FROM quota_ledger WHERE entry = 'reserve'") == 12  # the daily cap
    assert await count(db, "SELECT COUNT(*) FROM jobs") == 12


async def test_a_second_process_reserving_at_the_same_time_cannot_overspend_either(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    async with Database(path) as db:
        await db.migrate()
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.test_quota",
            "worker",
            str(path),
            "8",
            "150",
            "200",
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdin is not None and child.stdout is not None
        assert (await asyncio.wait_for(child.stdout.readline(), 20)).strip() == b"ready"
        child.stdin.write(b"go\n")
        await child.stdin.drain()
        ours = await _fire(db, make_ledger(db, FakeClock(at(2025, 6, 2))), 8, 150, 200)
        out, _ = await asyncio.wait_for(child.communicate(), 30)
        assert child.returncode == 0
        theirs = json.loads(out)["accepted"]
        assert ours + theirs == 200 and theirs >= 50 and ours >= 50  # neither could take it all alone
        assert await ledger_sum(db, 8) == 200


async def _worker(path: str, user: int, count: int, limit: int) -> None:
    async with Database(path) as db:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        accepted = await _fire(db, make_ledger(db, FakeClock(at(2025, 6, 2))), user, count, limit)
    print(json.dumps({"accepted": accepted}), flush=True)


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    asyncio.run(_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
