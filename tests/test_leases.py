"""Several job engines on one store, as several processes would be (each test runs on SQLite and PostgreSQL):
a lapsed lease is taken over from the saved provider state, the process that lost it can write nothing more,
Cancel reaches the process running the job, and a provider's ``max_concurrent`` holds across processes."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.images import ImageStore
from bot.jobs import JobState
from bot.jobs.engine import JobEngine
from bot.jobs.repository import JobRepository
from bot.storage import Store
from tests import pg
from tests.test_jobs import CountingProvider, RecordingSink, balance, enqueue, make_engine, wait_state


@pytest.fixture(params=pg.STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Clock:
    """Real time plus a skew a test moves forward, so leases lapse without waiting."""

    def __init__(self) -> None:
        self.skew = 0.0

    def __call__(self) -> float:
        return time.time() + self.skew


def process(
    db: Store, provider: CountingProvider, sink: RecordingSink, clock: Clock, *, poll: float = 3600.0
) -> JobEngine:
    """One engine as one of several processes (not the store's only one), renewing every ``poll`` seconds."""
    return make_engine(db, provider, sink, clock=clock, lease_seconds=30, poll_seconds=poll, exclusive=False)


def limited(store: ImageStore, slots: int, stall: asyncio.Event | None = None) -> CountingProvider:
    provider = CountingProvider(store, stall=stall)
    provider.max_concurrent = slots
    provider.slots = asyncio.Semaphore(slots)
    return provider


async def test_a_lapsed_lease_is_taken_over_and_the_old_holder_can_write_nothing(db: Store, store: ImageStore) -> None:
    clock = Clock()
    paused = asyncio.Event()
    first_provider, first_sink = CountingProvider(store, stall=paused), RecordingSink()
    first = process(db, first_provider, first_sink, clock)  # never renews: a process that froze
    await first.start()
    job = await enqueue(first, user=7)
    await wait_state(db, job.id, JobState.SUBMITTED)

    clock.skew = 31  # the lease has lapsed
    second_provider, second_sink = CountingProvider(store), RecordingSink()
    second = process(db, second_provider, second_sink, clock)
    await second.start()
    done = await wait_state(db, job.id, JobState.DONE)
    assert (second_provider.submits, second_provider.collects) == (0, 1)  # the saved task, never a new one

    paused.set()  # the first process wakes up with its images: its lease is gone, so it writes nothing
    async with asyncio.timeout(10):
        while first.running_count:
            await asyncio.sleep(0.01)
    await first.stop()
    await second.stop()
    after = await JobRepository(db).get(job.id)
    assert after is not None and after.state == JobState.DONE and after.results == done.results
    assert first_sink.delivered == [] and first_sink.failures == []
    assert second_sink.delivered == [job.id]
    assert await balance(db, job.id) == {"reserve": 1, "commit": 1}  # charged once


async def test_cancel_pressed_in_another_process_stops_the_job_where_it_runs(db: Store, store: ImageStore) -> None:
    clock = Clock()
    runner_sink = RecordingSink()
    runner = process(db, CountingProvider(store, stall=asyncio.Event()), runner_sink, clock, poll=0.05)
    await runner.start()
    job = await enqueue(runner, user=8)
    await wait_state(db, job.id, JobState.SUBMITTED)

    other = process(db, CountingProvider(store), RecordingSink(), clock)  # the process where Cancel is pressed
    cancelled = await other.cancel(job.id)
    await runner.stop()
    assert cancelled.state == JobState.CANCELLED
    assert [job_id for job_id, _ in runner_sink.failures] == [job.id]  # the runner showed it on the card
    assert await balance(db, job.id) == {"reserve": 1, "refund": 1}


async def test_a_providers_max_concurrent_holds_across_processes(db: Store, store: ImageStore) -> None:
    clock = Clock()
    stall = asyncio.Event()
    engines = [process(db, limited(store, 1, stall), RecordingSink(), clock, poll=0.05) for _ in range(2)]
    for engine in engines:
        await engine.start()
    jobs = [await enqueue(engines[0], user=10 + i) for i in range(3)]
    for engine in engines:
        engine.wake()
    await wait_state(db, jobs[0].id, JobState.SUBMITTED)
    await asyncio.sleep(0.3)  # several keeper rounds: neither process may start a second job
    states = [(await JobRepository(db).get(j.id)).state for j in jobs]  # type: ignore[union-attr]
    assert sorted(states) == [JobState.QUEUED, JobState.QUEUED, JobState.SUBMITTED]
    stall.set()
    for job in jobs:
        await wait_state(db, job.id, JobState.DONE)
    for engine in engines:
        await engine.stop()
