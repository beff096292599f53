"""Helpers the provider tests share: references, data URIs, the CLI run, every provider against its fake."""

from __future__ import annotations

import asyncio
import base64
import io
import re
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from bot.config import ArkConfig, HighwayConfig, LeonardoConfig, NovitaConfig, QuotaSection, TaskApiConfig
from bot.images import ImageStore, StoredImage
from bot.jobs import Job
from bot.jobs.engine import JobEngine
from bot.jobs.sink import ResultSink
from bot.providers.ark import ArkProvider
from bot.providers.base import GenerationRequest, Provider
from bot.providers.highway import HighwayProvider
from bot.providers.leonardo import LeonardoProvider
from bot.providers.novita import NovitaProvider
from bot.providers.registry import ProviderRegistry
from bot.providers.taskapi import TaskApiProvider
from bot.quota import Ledger
from bot.storage import Database
from tests.fakeproviders.ark import FakeArkServer
from tests.fakeproviders.common import FakeProviderServer
from tests.fakeproviders.leonardo import FakeLeonardo
from tests.fakeproviders.novita import FakeNovitaServer
from tests.fakeproviders.taskapi import FakeTaskApi

KEY_ENV = "TEST_PROVIDER_API_KEY"


async def reference(
    store: ImageStore, width: int, height: int, *, fmt: str = "PNG", colour: tuple[int, int, int] = (200, 80, 40)
) -> StoredImage:
    """A stored reference image, as the bot holds one after downloading and validating it."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format=fmt)
    return await store.save_bytes(buffer.getvalue())


def decode_data_uri(uri: str) -> tuple[str, tuple[int, int]]:
    """(mime, pixel size) of a ``data:image/...;base64,...`` reference as a provider would decode it."""
    match = re.fullmatch(r"data:(image/[a-z]+);base64,(.+)", uri, re.DOTALL)
    assert match, f"not a data URI: {uri[:60]}"
    with Image.open(io.BytesIO(base64.b64decode(match[2]))) as picture:
        assert Image.MIME[picture.format or ""] == match[1], "the data URI's type must match its bytes"
        return match[1], picture.size


async def run_cli(tmp_path: Path, provider_toml: str, argv: list[str]) -> tuple[int, list[Path]]:
    """Run ``seedream-bot generate`` with one configured provider named ``p``; return (exit code, files)."""
    from bot.cli import main

    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[storage]
database = "{tmp_path / "bot.sqlite3"}"
data_dir = "{tmp_path / "data"}"

[generation]
default_provider = "p"

[providers.p]
api_key_env = "{KEY_ENV}"
{provider_toml}
"""
    )
    out = tmp_path / "out"
    # main runs its own event loop; ours keeps serving the fake meanwhile.
    code = await asyncio.to_thread(main, ["generate", *argv, "--config", str(config), "--out", str(out)])
    return code, sorted(out.iterdir()) if out.exists() else []


# -- every remote provider against its fake, for the tests that go through all of them --------------------
REMOTE_KINDS = ("leonardo", "novita", "highway", "ark", "taskapi")


def fake_for(kind: str) -> FakeProviderServer:
    """A fresh (not yet started) fake server for a provider kind."""
    if kind == "leonardo":
        return FakeLeonardo()
    if kind in ("novita", "highway"):
        return FakeNovitaServer()
    if kind == "ark":
        return FakeArkServer()
    if kind == "taskapi":
        fake = FakeTaskApi()
        fake.polls_before_done = 1
        return fake
    raise ValueError(kind)


def provider_for(
    kind: str,
    server: FakeProviderServer,
    store: ImageStore,
    key_env: str = KEY_ENV,
    session: aiohttp.ClientSession | None = None,
) -> Provider:
    """A provider of ``kind`` pointed at its running fake, with quick polls and retries; on ``session`` when
    given (as the bot runs them, on its one shared session), else on a session of its own."""
    common: dict[str, Any] = {
        "api_key_env": key_env,
        "timeout_seconds": 5.0,
        "max_attempts": 3,
        "retry_base_seconds": 0.001,
        "poll_interval_seconds": 0.01,
    }
    if kind == "leonardo":
        return LeonardoProvider(kind, LeonardoConfig(base_url=server.base_url, **common), store, session=session)
    if kind == "novita":
        return NovitaProvider(kind, NovitaConfig(base_url=server.base_url, **common), store, session=session)
    if kind == "highway":
        return HighwayProvider(kind, HighwayConfig(base_url=server.base_url, **common), store, session=session)
    if kind == "ark":
        return ArkProvider(kind, ArkConfig(base_url=f"{server.base_url}/api/v3", **common), store, session=session)
    if kind == "taskapi":
        return TaskApiProvider(kind, TaskApiConfig(base_url=server.base_url, **common), store, session=session)
    raise ValueError(kind)


def engine_for(db: Database, provider: Provider, sink: ResultSink) -> JobEngine:
    """The real job engine, ledger and SQLite around one provider."""
    registry = ProviderRegistry({provider.name: provider}, provider.name)
    return JobEngine(
        db, registry, Ledger(db, QuotaSection()), sink, workers=2, per_user_in_flight=2, max_queued_per_user=10
    )


async def enqueue(engine: JobEngine, request: GenerationRequest, *, user: int = 1, guild: int = 1) -> Job:
    job, _ = await engine.enqueue(
        kind="imagine",
        requester_id=user,
        guild_id=guild,
        channel_id=2,
        provider_name=None,
        request=request,
        quota_limit=None,
    )
    return job
