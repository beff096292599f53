"""The job engine against real SQLite and PostgreSQL (each ``db`` test runs on both) and the real local
provider (plus a test provider that counts calls)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.config import LocalProviderConfig, QuotaSection
from bot.errors import ContentBlocked, QuotaExceeded, TooManyJobs
from bot.images import ImageStore
from bot.jobs import Job, JobState
from bot.jobs.engine import JobEngine
from bot.jobs.repository import JobRepository
from bot.jobs.sink import RecordMessage
from bot.providers.base import GenerationRequest, GenerationResult, Submission
from bot.providers.local import LocalProvider
from bot.providers.registry import ProviderRegistry
from bot.quota import Ledger
from bot.storage import Database
from tests import pg


@pytest.fixture(params=pg.STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every ``db`` test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


class CountingProvider(LocalProvider):
    """The local provider, counting calls and optionally stalling in collect or failing."""

    def __init__(self, store: ImageStore, *, stall: asyncio.Event | None = None, fail: Exception | None = None) -> None:
        super().__init__("local", LocalProviderConfig(max_concurrent=8), store)
        self.submits = 0
        self.collects = 0
        self.stall = stall
        self.fail = fail

    async def submit(self, request: GenerationRequest) -> Submission:
        self.submits += 1
        if self.fail:
            raise self.fail
        return await super().submit(request)

    async def collect(self, request: GenerationRequest, submission: Submission) -> GenerationResult:
        self.collects += 1
        if self.stall is not None:
            await self.stall.wait()
        return await super().collect(request, submission)


class RecordingSink:
    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.failures: list[tuple[str, str]] = []
        self.alerts: list[str] = []
        self.finished_ids: list[str] = []
        self.next_message = 1000
        self.crash_after_first_message = False
        self.discord_slow: asyncio.Event | None = None  # set: posting goes on

    async def progress(self, job: Job, position: int) -> None:
        return None

    async def deliver(self, job: Job, record_message: RecordMessage) -> None:
        if self.discord_slow is not None:
            await self.discord_slow.wait()
        for index in range(len(job.posted_message_ids), len(job.results)):
            self.next_message += 1
            await record_message(self.next_message)
            if self.crash_after_first_message and index == 0:
                raise asyncio.CancelledError  # the process dies mid-posting
        self.delivered.append(job.id)

    async def finished(self, job: Job) -> None:
        self.finished_ids.append(job.id)

    async def failed(self, job: Job, message: object) -> None:
        self.failures.append((job.id, str(message)))  # a Text: what an English-speaking member reads

    async def alert(self, job: Job, message: object) -> None:
        self.alerts.append(str(message))


def make_engine(
    db: Database,
    provider: LocalProvider,
    sink: RecordingSink,
    *,
    workers: int = 4,
    limit_cap: int = 10,
    delivery_workers: int = 8,
    **options: Any,
) -> JobEngine:
    registry = ProviderRegistry({"local": provider}, "local")
    return JobEngine(
        db,
        registry,
        Ledger(db, QuotaSection()),
        sink,
        workers=workers,
        per_user_in_flight=2,
        max_queued_per_user=limit_cap,
        delivery_workers=delivery_workers,
        **options,
    )


async def enqueue(engine: JobEngine, user: int, count: int = 1, limit: int | None = None) -> Job:
    job, _ = await engine.enqueue(
        kind="imagine",
        requester_id=user,
        guild_id=1,
        channel_id=2,
        provider_name=None,
        request=GenerationRequest(prompt=f"job of {user}", count=count, resolution="1K"),
        quota_limit=limit,
    )
    return job


async def balance(db: Database, job_id: str) -> dict[str, int]:
    rows = await db.fetchall("SELECT entry, SUM(units) FROM quota_ledger WHERE job_id = ? GROUP BY entry", (job_id,))
    return {r[0]: r[1] for r in rows}


async def wait_state(db: Database, job_id: str, *states: JobState, timeout: float = 10.0) -> Job:
    repo = JobRepository(db)
    async with asyncio.timeout(timeout):
        while True:
            job = await repo.get(job_id)
            if job is not None and job.state in states:
                return job
            await asyncio.sleep(0.01)


async def test_a_job_runs_to_done_and_commits_its_quota(db: Database, store: ImageStore) -> None:
    sink = RecordingSink()
    engine = make_engine(db, CountingProvider(store), sink)
    await engine.start()
    job = await enqueue(engine, user=7, count=2)
    done = await wait_state(db, job.id, JobState.DONE)
    await engine.stop()
    assert len(done.results) == 2 and all(Path(r.path).exists() for r in done.results)
    assert len(done.posted_message_ids) == 2
    assert await balance(db, job.id) == {"reserve": 2, "commit": 2}
    assert sink.finished_ids == [job.id]


async def test_failure_refunds_everything_and_tells_the_member(db: Database, store: ImageStore) -> None:
    sink = RecordingSink()
    engine = make_engine(db, CountingProvider(store, fail=ContentBlocked("The provider refused this prompt.")), sink)
    await engine.start()
    job = await enqueue(engine, user=7, count=3)
    failed = await wait_state(db, job.id, JobState.FAILED)
    await engine.stop()
    assert failed.error is not None and failed.error.startswith("content_blocked")
    assert await balance(db, job.id) == {"reserve": 3, "refund": 3}
    assert sink.failures == [(job.id, "The provider refused this prompt.")]


async def test_one_members_burst_does_not_starve_others(db: Database, store: ImageStore) -> None:
    gate = asyncio.Event()
    provider = CountingProvider(store, stall=gate)
    sink = RecordingSink()
    engine = make_engine(db, provider, sink, workers=1)
    hog = [await enqueue(engine, user=1) for _ in range(5)]
    other = await enqueue(engine, user=2)
    await engine.start()
    gate.set()
    await wait_state(db, other.id, JobState.DONE)
    await engine.stop()
    finished = sink.finished_ids
    assert finished.index(other.id) <= 1, finished  # served right after the hog's first job
    assert hog[0].id in finished


async def test_a_job_waiting_on_discord_frees_its_worker_for_the_next_job(db: Database, store: ImageStore) -> None:
    sink = RecordingSink()
    sink.discord_slow = asyncio.Event()
    provider = CountingProvider(store)
    engine = make_engine(db, provider, sink, workers=1, delivery_workers=2)
    await engine.start()
    jobs = [await enqueue(engine, user=u) for u in (1, 2, 3, 4)]
    # One worker, two posting slots: three jobs reach Discord while the first still waits to post.
    for job in jobs[:3]:
        await wait_state(db, job.id, JobState.DOWNLOADED)
    await asyncio.sleep(0.1)
    assert (await JobRepository(db).get(jobs[3].id)).state == JobState.QUEUED  # type: ignore[union-attr]
    assert provider.submits == 3
    sink.discord_slow.set()
    for job in jobs:
        await wait_state(db, job.id, JobState.DONE)
    await engine.stop()
    assert sorted(sink.delivered) == sorted(j.id for j in jobs)


async def test_restart_polls_the_saved_task_instead_of_creating_a_new_one(db: Database, store: ImageStore) -> None:
    stall = asyncio.Event()
    first = CountingProvider(store, stall=stall)
    engine = make_engine(db, first, RecordingSink())
    await engine.start()
    job = await enqueue(engine, user=3)
    await wait_state(db, job.id, JobState.SUBMITTED)
    await engine.stop(grace_seconds=0.05)  # the process goes away while the task runs
    assert (await JobRepository(db).get(job.id)).state == JobState.SUBMITTED  # type: ignore[union-attr]

    second = CountingProvider(store)
    sink = RecordingSink()
    engine = make_engine(db, second, sink)
    await engine.start()
    done = await wait_state(db, job.id, JobState.DONE)
    await engine.stop()
    assert (first.submits, second.submits, second.collects) == (1, 0, 1)
    assert sink.finished_ids == [job.id] and len(done.results) == 1
    assert await balance(db, job.id) == {"reserve": 1, "commit": 1}


async def test_restart_mid_posting_posts_only_what_is_missing(db: Database, store: ImageStore) -> None:
    crashing = RecordingSink()
    crashing.crash_after_first_message = True
    engine = make_engine(db, CountingProvider(store), crashing)
    await engine.start()
    job = await enqueue(engine, user=4, count=3)
    await asyncio.sleep(0)
    async with asyncio.timeout(10):
        while len(((await JobRepository(db).get(job.id)) or job).posted_message_ids) < 1:
            await asyncio.sleep(0.01)
    await engine.stop(grace_seconds=0.05)

    provider = CountingProvider(store)
    sink = RecordingSink()
    sink.next_message = 5000
    engine = make_engine(db, provider, sink)
    await engine.start()
    done = await wait_state(db, job.id, JobState.DONE)
    await engine.stop()
    assert provider.submits == 0 and provider.collects == 0  # images were saved: never regenerated
    assert done.posted_message_ids == [1001, 5001, 5002]  # the first part is not posted again


async def test_cancel_a_queued_job_refunds_it(db: Database, store: ImageStore) -> None:
    engine = make_engine(db, CountingProvider(store), RecordingSink())
    job = await enqueue(engine, user=5, count=2)  # the engine is not started: the job stays queued
    cancelled = await engine.cancel(job.id)
    assert cancelled.state == JobState.CANCELLED
    assert await balance(db, job.id) == {"reserve": 2, "refund": 2}


async def test_cancel_a_running_job_refunds_it(db: Database, store: ImageStore) -> None:
    provider = CountingProvider(store, stall=asyncio.Event())
    engine = make_engine(db, provider, RecordingSink())
    await engine.start()
    job = await enqueue(engine, user=5)
    await wait_state(db, job.id, JobState.SUBMITTED)
    cancelled = await engine.cancel(job.id)
    await engine.stop()
    assert cancelled.state == JobState.CANCELLED
    assert await balance(db, job.id) == {"reserve": 1, "refund": 1}


async def test_over_quota_is_refused_and_nothing_is_queued(db: Database, store: ImageStore) -> None:
    engine = make_engine(db, CountingProvider(store), RecordingSink())
    await enqueue(engine, user=6, count=3, limit=4)
    with pytest.raises(QuotaExceeded, match="you have 1 of 4 left"):
        await enqueue(engine, user=6, count=2, limit=4)
    rows = await db.fetchall("SELECT COUNT(*) FROM jobs WHERE requester_id = 6")
    assert rows[0][0] == 1


async def test_too_many_waiting_jobs_are_refused(db: Database, store: ImageStore) -> None:
    engine = make_engine(db, CountingProvider(store), RecordingSink(), limit_cap=2)
    await enqueue(engine, user=8)
    await enqueue(engine, user=8)
    with pytest.raises(TooManyJobs):
        await enqueue(engine, user=8)


async def test_hundreds_of_concurrent_reservations_never_overspend(db: Database, store: ImageStore) -> None:
    engine = make_engine(db, CountingProvider(store), RecordingSink(), limit_cap=1000)
    outcomes = await asyncio.gather(*(enqueue(engine, user=9, limit=50) for _ in range(300)), return_exceptions=True)
    accepted = [o for o in outcomes if isinstance(o, Job)]
    refused = [o for o in outcomes if isinstance(o, QuotaExceeded)]
    assert len(accepted) == 50 and len(refused) == 250
    assert await engine.ledger.used(1, 9) == 50


async def test_restart_during_submit_never_resubmits_a_billing_provider(db: Database, store: ImageStore) -> None:
    class BillingProvider(CountingProvider):
        safe_to_resubmit = False

    engine = make_engine(db, BillingProvider(store), RecordingSink())
    job = await enqueue(engine, user=11, count=2)
    async with db.transaction() as conn:  # the process died after counting the attempt, before saving the task
        await conn.execute("UPDATE jobs SET attempts = 1 WHERE id = ?", (job.id,))
    provider = BillingProvider(store)
    sink = RecordingSink()
    engine = make_engine(db, provider, sink)
    await engine.start()
    failed = await wait_state(db, job.id, JobState.FAILED)
    await engine.stop()
    assert provider.submits == 0
    assert failed.error is not None and failed.error.startswith("interrupted")
    assert await balance(db, job.id) == {"reserve": 2, "refund": 2}
    assert sink.failures and "never charged twice" in sink.failures[0][1]


async def test_out_of_credit_pauses_the_provider_and_tells_moderators_once(db: Database, store: ImageStore) -> None:
    from bot.errors import NotAllowed, OutOfCredit
    from bot.provider_health import ProviderHealth

    now = [1000.0]
    provider = CountingProvider(store, fail=OutOfCredit("The account is out of credit; a moderator has to top it up."))
    sink = RecordingSink()
    registry = ProviderRegistry({"local": provider}, "local")
    health = ProviderHealth({"local": 600.0}, clock=lambda: now[0])
    engine = JobEngine(
        db,
        registry,
        Ledger(db, QuotaSection()),
        sink,
        workers=2,
        per_user_in_flight=2,
        max_queued_per_user=10,
        health=health,
    )
    await engine.start()
    first = await enqueue(engine, user=12)
    await wait_state(db, first.id, JobState.FAILED)
    with pytest.raises(NotAllowed, match="ran out of credit"):
        await enqueue(engine, user=13)  # refused before any quota is reserved
    assert len(sink.alerts) == 1 and "out of credit" in sink.alerts[0]
    assert await balance(db, first.id) == {"reserve": 1, "refund": 1}

    now[0] += 601  # the cool-down passes
    provider.fail = None
    later = await enqueue(engine, user=13)
    await wait_state(db, later.id, JobState.DONE)
    await engine.stop()
    assert len(sink.alerts) == 1


async def test_stop_never_hangs_when_a_wake_up_races_with_it(db: Database, store: ImageStore) -> None:
    """A cancel racing with the dispatcher's wake-up used to be lost inside asyncio.wait_for (Python 3.11)."""
    for attempt in range(50):
        engine = make_engine(db, CountingProvider(store), RecordingSink(), limit_cap=1000)
        await engine.start()
        await asyncio.sleep(0)
        engine.wake()
        async with asyncio.timeout(5):
            await engine.stop(grace_seconds=0.01)
        assert engine._dispatcher is not None and engine._dispatcher.done(), attempt
