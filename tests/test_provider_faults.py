"""Provider faults through the whole job pipeline (real engine, real SQLite, strict Novita fake over HTTP):
every job ends done or refunded exactly once, the ledger balances, and the member gets a clear sentence."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from bot.config import NovitaConfig, QuotaSection
from bot.images import ImageStore
from bot.jobs import Job, JobState
from bot.jobs.engine import JobEngine
from bot.providers.base import GenerationRequest
from bot.providers.novita import NovitaProvider
from bot.providers.registry import ProviderRegistry
from bot.quota import Ledger
from bot.storage import Database
from tests.fakeproviders.common import Fault
from tests.fakeproviders.novita import FakeNovitaServer
from tests.test_jobs import RecordingSink, balance, wait_state

KEY_ENV = "FAULTS_NOVITA_KEY"


@pytest.fixture
async def novita(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeNovitaServer]:
    monkeypatch.setenv(KEY_ENV, FakeNovitaServer.api_key)
    async with FakeNovitaServer() as server:
        yield server


def engine_for(
    db: Database, store: ImageStore, server: FakeNovitaServer, sink: RecordingSink, key: str = KEY_ENV
) -> JobEngine:
    config = NovitaConfig(
        base_url=server.base_url, api_key_env=key, timeout_seconds=0.5, max_attempts=2, retry_base_seconds=0.01
    )
    provider = NovitaProvider("novita", config, store)
    return JobEngine(
        db, ProviderRegistry({"novita": provider}, "novita"), Ledger(db, QuotaSection()), sink,
        workers=2, per_user_in_flight=2, max_queued_per_user=10,
    )  # fmt: skip


async def enqueue(engine: JobEngine, user: int) -> Job:
    job, _ = await engine.enqueue(
        kind="imagine",
        requester_id=user,
        guild_id=1,
        channel_id=2,
        provider_name=None,
        request=GenerationRequest(prompt="a koala", resolution="2K"),
        quota_limit=None,
    )
    return job


def novita_error(status: int, reason: str) -> Fault:
    return Fault(status=status, body={"code": status, "reason": reason, "message": reason.lower(), "metadata": {}})


FAULTS: dict[str, tuple[Callable[[FakeNovitaServer], None], str]] = {
    "429-retry-after-exhausted": (
        lambda s: s.inject(
            "create", Fault(429, {"code": 429, "reason": "RATE_LIMIT_EXCEEDED"}, {"Retry-After": "0"}), 5
        ),
        "busy",
    ),
    "5xx-burst": (
        lambda s: s.inject("create", Fault(500, {"code": 500, "reason": "CREATE_TASK_FAILED"}), 5),
        "problem",
    ),
    "hang": (lambda s: s.inject("create", Fault(hang_seconds=2.0), 2), "in time"),
    "malformed-json": (lambda s: s.inject("create", Fault(malformed=True), 2), "could not read"),
    "moderation": (lambda s: s.inject("create", novita_error(400, "ILLEGAL_PROMPT")), "refused"),
    "out-of-credit": (lambda s: setattr(s, "credit", 0), "credit"),
    "expired-result": (lambda s: s.inject("files", Fault(404), 10), "expired"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_provider_fault_refunds_and_explains(
    fault: str, db: Database, store: ImageStore, novita: FakeNovitaServer
) -> None:
    inject, words = FAULTS[fault]
    inject(novita)
    sink = RecordingSink()
    engine = engine_for(db, store, novita, sink)
    await engine.start()
    job = await enqueue(engine, user=1)
    failed = await wait_state(db, job.id, JobState.FAILED, JobState.DONE)
    await engine.stop()
    await engine.providers.close()
    assert failed.state == JobState.FAILED
    assert await balance(db, job.id) == {"reserve": 1, "refund": 1}
    ((failed_id, message),) = sink.failures
    assert failed_id == job.id and words in message.lower()
    assert "http" not in message.lower() and novita.api_key not in message


async def test_bad_key_is_reported_without_leaking_it(
    db: Database, store: ImageStore, novita: FakeNovitaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG_NOVITA_KEY", "sk-wrong-key-123456")
    sink = RecordingSink()
    engine = engine_for(db, store, novita, sink, key="WRONG_NOVITA_KEY")
    await engine.start()
    job = await enqueue(engine, user=1)
    await wait_state(db, job.id, JobState.FAILED)
    await engine.stop()
    await engine.providers.close()
    assert await balance(db, job.id) == {"reserve": 1, "refund": 1}
    assert "key" in sink.failures[0][1] and "sk-wrong-key" not in sink.failures[0][1]
