"""One aiohttp session per process: ``Services`` opens it, the fetcher and every remote provider borrow it, and
it is closed last. Timeouts stay per request, so one session serves a quick and a patient caller alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config import Settings
from bot.errors import ImageRejected, ProviderTimeout, ProviderUnavailable
from bot.fetch import ImageFetcher
from bot.images import ImageStore
from bot.providers.http import ProviderHttp
from bot.providers.links import client_session
from bot.services import Services
from tests.fakeproviders.common import Fault
from tests.fakeproviders.novita import FakeNovitaServer

REMOTE = {
    "novita": {"kind": "novita"},
    "leo": {"kind": "leonardo"},
    "tasks": {"kind": "taskapi"},
    "ark": {"kind": "ark"},
    "highway": {"kind": "highway"},
}


def settings_for(tmp_path: Path, database: Path | None = None, **generation: Any) -> Settings:
    return Settings.model_validate(
        {
            "storage": {"database": str(database or tmp_path / "bot.sqlite3"), "data_dir": str(tmp_path / "data")},
            "generation": generation,
            "providers": {"local": {"kind": "local"}, **REMOTE},
        }
    )


async def test_the_fetcher_and_every_remote_provider_use_the_one_session(tmp_path: Path) -> None:
    async with await Services.open(settings_for(tmp_path)) as services:
        session = services.http
        assert services.fetcher.session is session
        for name in REMOTE:
            assert services.providers.get(name).http.session is session, name  # type: ignore[attr-defined]
        assert session.requote_redirect_url is False, "redirects are followed as written"
    assert session.closed


async def test_the_connection_pool_grows_with_the_workers(tmp_path: Path) -> None:
    async with await Services.open(settings_for(tmp_path, workers=4)) as services:
        assert services.http.connector is not None and services.http.connector.limit == 100
    async with await Services.open(settings_for(tmp_path, workers=16)) as services:
        assert services.http.connector is not None and services.http.connector.limit == 16 * 16


async def test_the_session_is_closed_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = await Services.open(settings_for(tmp_path))
    open_while: list[str] = []

    def noting(name: str, close: Any) -> Any:
        async def closing() -> None:
            if not services.http.closed:
                open_while.append(name)
            await close()

        return closing

    monkeypatch.setattr(services.providers, "close", noting("providers", services.providers.close))
    monkeypatch.setattr(services.fetcher, "close", noting("fetcher", services.fetcher.close))
    monkeypatch.setattr(services.db, "close", noting("database", services.db.close))
    await services.close()
    assert open_while == ["providers", "fetcher", "database"]
    assert services.http.closed


async def test_the_session_is_closed_when_the_database_cannot_be_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[aiohttp.ClientSession] = []

    def recording(**kwargs: Any) -> aiohttp.ClientSession:
        opened.append(client_session(**kwargs))
        return opened[-1]

    monkeypatch.setattr("bot.services.client_session", recording)
    (tmp_path / "a folder").mkdir()
    with pytest.raises(Exception):  # noqa: B017 - whatever the store raises; the session must not leak
        await Services.open(settings_for(tmp_path, database=tmp_path / "a folder"))
    assert len(opened) == 1 and opened[0].closed


async def test_timeouts_stay_per_request_on_the_shared_session(store: ImageStore) -> None:
    session = client_session()
    try:
        async with FakeNovitaServer() as fake:
            link = fake.host_image(32, 16)
            impatient = ProviderHttp(provider="a", api_key="k", timeout_seconds=0.2, max_attempts=1, session=session)
            patient = ProviderHttp(provider="b", api_key="k", timeout_seconds=5, max_attempts=1, session=session)
            fake.inject("files", Fault(hang_seconds=0.6))
            with pytest.raises(ProviderTimeout):
                await impatient.download(store, link)
            assert (await patient.download(store, link)).width == 32

            fetcher = ImageFetcher(store, [fake.base_url], timeout_seconds=0.2, max_bytes=1024 * 1024, session=session)
            fake.inject("files", Fault(hang_seconds=0.6))
            with pytest.raises(ImageRejected, match="could not be downloaded"):
                await fetcher.fetch(link)
            fake.inject("files", Fault(hang_seconds=0.4))  # slower than the impatient caller, within the patient's
            with pytest.raises(ProviderUnavailable) as waited:
                await patient.download(store, link)
            assert waited.type is ProviderUnavailable, "the patient caller waited for the (failed) answer"
            await impatient.close()
            await fetcher.close()
            assert not session.closed, "a borrower never closes the shared session"
    finally:
        await session.close()
