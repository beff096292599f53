"""Retention cleanup, Prometheus metrics and log hygiene."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import urllib.request

import pytest

from bot.config import QuotaSection
from bot.images import ImageStore
from bot.jobs import JobState
from bot.jobs.engine import JobEngine
from bot.logging_setup import RedactSecrets
from bot.metrics import Metrics
from bot.providers.registry import ProviderRegistry
from bot.quota import Ledger
from bot.retention import remove_old_images
from bot.storage import Database
from tests.test_jobs import CountingProvider, RecordingSink, enqueue, wait_state


async def test_retention_removes_only_old_files(store: ImageStore) -> None:
    old = await store.save_bytes(_png())
    new = await store.save_bytes(_png())
    month_ago = time.time() - 31 * 86400
    os.utime(old.path, (month_ago, month_ago))
    removed = await remove_old_images(store.root.parent, retention_days=30)
    assert removed == 1
    assert not old.path.exists() and new.path.exists()


async def test_retention_keeps_a_fresh_empty_folder_that_a_new_image_is_about_to_use(store: ImageStore) -> None:
    old = await store.save_bytes(_png())
    month_ago = time.time() - 31 * 86400
    os.utime(old.path, (month_ago, month_ago))
    folder = old.path.parent
    assert await remove_old_images(store.root.parent, retention_days=30) == 1
    assert folder.is_dir()  # emptied just now, so not old: the next image of this month goes here
    os.utime(folder, (month_ago, month_ago))
    assert await remove_old_images(store.root.parent, retention_days=30) == 0
    assert not folder.exists()  # empty and old: a past month's folder


async def test_metrics_endpoint_reports_jobs_images_and_queue(db: Database, store: ImageStore) -> None:
    metrics = Metrics(enabled=True)
    port = metrics.serve("127.0.0.1", 0)
    try:
        engine = JobEngine(
            db,
            ProviderRegistry({"local": CountingProvider(store)}, "local"),
            Ledger(db, QuotaSection()),
            RecordingSink(),
            workers=2,
            per_user_in_flight=2,
            max_queued_per_user=10,
            metrics=metrics,
        )
        await engine.start()
        job = await enqueue(engine, user=1, count=2)
        await wait_state(db, job.id, JobState.DONE)
        await engine.stop()
        metrics.set_states(await engine.counts_by_state())
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        )
    finally:
        metrics.close()
    assert 'seedream_jobs_total{state="done"} 1.0' in body
    assert 'seedream_images_total{provider="local"} 2.0' in body
    assert "seedream_queue_depth 0.0" in body
    assert "seedream_provider_seconds_bucket" in body


def test_metrics_off_by_default_costs_nothing() -> None:
    metrics = Metrics()
    metrics.job_ended("done")
    metrics.quota_refused()
    assert metrics.serve("127.0.0.1", 0) == 0


def test_secrets_are_scrubbed_from_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redact")
    logger.addFilter(RedactSecrets(["sk-live-1234567890"]))
    with caplog.at_level(logging.INFO, logger="test.redact"):
        logger.info("calling provider with key %s", "sk-live-1234567890")
    assert "sk-live-1234567890" not in caplog.text and "***" in caplog.text


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    return buffer.getvalue()
