"""HighwayAPI provider against the Novita-shaped fake in Highway mode (image objects in the answer)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.config import HighwayConfig
from bot.errors import (
    BadApiKey,
    ContentBlocked,
    InvalidRequest,
    OutOfCredit,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ResultExpired,
)
from bot.images import ImageStore
from bot.providers.base import GenerationRequest, Submission
from bot.providers.highway import HighwayProvider
from tests.fakeproviders.common import Fault, png_bytes
from tests.fakeproviders.novita import FakeNovitaServer
from tests.provider_helpers import KEY_ENV, decode_data_uri, reference, run_cli

MakeProvider = Callable[..., HighwayProvider]


@pytest.fixture
async def fake() -> AsyncIterator[FakeNovitaServer]:
    server = FakeNovitaServer(object_items="url")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_provider(
    fake: FakeNovitaServer, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MakeProvider]:
    monkeypatch.setenv(KEY_ENV, fake.api_key)
    made: list[HighwayProvider] = []

    def make(**overrides: Any) -> HighwayProvider:
        config = HighwayConfig(base_url=overrides.pop("base_url", fake.base_url), api_key_env=KEY_ENV, **overrides)
        provider = HighwayProvider("highway", config, store, retry_base_seconds=0.001)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


def creates(fake: FakeNovitaServer) -> list[Any]:
    return [call.body for call in fake.calls_to("POST", "/v3/")]


async def test_text_to_image_with_count_and_aspect(fake: FakeNovitaServer, make_provider: MakeProvider) -> None:
    result = await make_provider().generate(
        GenerationRequest(prompt="a harbour at dusk", aspect_ratio="2:3", resolution="2K", count=2)
    )

    assert [(image.width, image.height) for image in result.images] == [(1664, 2496)] * 2
    assert fake.calls[0].path == "/v3/seedream-4.5"
    assert fake.calls[0].headers["Authorization"] == f"Bearer {fake.api_key}"
    (body,) = creates(fake)
    assert body["size"] == "1664x2496" and body["watermark"] is False
    assert body["sequential_image_generation"] == "auto"
    assert body["sequential_image_generation_options"] == {"max_images": 2}


@pytest.mark.parametrize("object_items", [None, "url", "image_url"])
async def test_answers_with_links_or_image_objects_are_both_read(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch, object_items: str | None
) -> None:
    monkeypatch.setenv(KEY_ENV, "test-key")
    async with FakeNovitaServer(object_items=object_items) as server:
        provider = HighwayProvider(
            "highway", HighwayConfig(base_url=server.base_url, api_key_env=KEY_ENV), store, retry_base_seconds=0.001
        )
        try:
            result = await provider.generate(GenerationRequest(prompt="a cat", count=3))
        finally:
            await provider.close()

    assert len(result.images) == 3


async def test_edit_with_references_sends_bytes_not_links(
    fake: FakeNovitaServer, make_provider: MakeProvider, store: ImageStore
) -> None:
    refs = [await reference(store, 500, 500), await reference(store, 640, 480, fmt="WEBP")]

    result = await make_provider().generate(
        GenerationRequest(prompt="the two dogs together", aspect_ratio="1:1", resolution="4K", references=refs)
    )

    (body,) = creates(fake)
    assert [decode_data_uri(uri) for uri in body["image"]] == [("image/png", (500, 500)), ("image/webp", (640, 480))]
    assert [(i.width, i.height) for i in result.images] == [(4096, 4096)]


async def test_seedream_40_on_highway(fake: FakeNovitaServer, make_provider: MakeProvider, store: ImageStore) -> None:
    ref = await reference(store, 200, 200, fmt="WEBP")  # 4.0 takes jpeg/png only: re-encoded

    result = await make_provider(model="seedream-4.0").generate(
        GenerationRequest(prompt="a kite", aspect_ratio="1:1", resolution="1K", count=2, references=[ref])
    )

    (body,) = creates(fake)
    assert fake.calls[0].path == "/v3/seedream-4.0"
    assert body["size"] == "1024x1024" and body["max_images"] == 2
    assert decode_data_uri(body["images"][0])[0] == "image/png"
    assert len(result.images) == 2


async def test_unservable_requests_are_refused_before_any_call(
    fake: FakeNovitaServer, make_provider: MakeProvider, store: ImageStore
) -> None:
    with pytest.raises(InvalidRequest, match=re.escape("choose one of 2K, 4K")):
        await make_provider().submit(GenerationRequest(prompt="a cat", resolution="1K"))
    refs = [await reference(store, 32, 32)] * 11
    with pytest.raises(InvalidRequest, match="at most 10 reference images"):
        await make_provider(model="seedream-4.0").submit(GenerationRequest(prompt="a cat", references=refs))
    assert fake.calls == []


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(400, {"code": 400, "reason": "ILLEGAL_PROMPT", "message": "no"}), ContentBlocked),
        (Fault(400, {"code": 400, "reason": "BILLING_BALANCE_NOT_ENOUGH", "message": "no"}), OutOfCredit),
        (Fault(400, {"error": {"code": "InvalidParameter", "message": "size is bad", "type": "x"}}), ProviderRejected),
        (Fault(403, {"error": {"message": "overdue", "type": "AccountOverdueError"}}), OutOfCredit),
        (Fault(400, {"error": {"code": "OutputImageSensitiveContentDetected", "message": "x"}}), ContentBlocked),
        (Fault(401, {"message": "Unauthorized"}), BadApiKey),
        (Fault(500, {"oops": 1}), ProviderUnavailable),
        (Fault(200, {"images": [{"nothing": "here"}]}), ProviderUnavailable),
    ],
)
async def test_create_errors_map_to_our_taxonomy_and_are_not_retried(
    fake: FakeNovitaServer, make_provider: MakeProvider, fault: Fault, error: type[Exception]
) -> None:
    fake.inject("create", fault, times=4)

    with pytest.raises(error) as caught:
        await make_provider().generate(GenerationRequest(prompt="a cat"))

    assert type(caught.value) is error
    assert len(creates(fake)) == 1


async def test_unknown_error_body_is_logged(
    fake: FakeNovitaServer, make_provider: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    fake.inject("create", Fault(500, {"oops": 1}))

    with caplog.at_level(logging.WARNING), pytest.raises(ProviderUnavailable):
        await make_provider().generate(GenerationRequest(prompt="a cat"))

    assert 'highway: unrecognised error body (HTTP 500): {"oops": 1}' in caplog.text


async def test_real_refusals_from_the_fake(
    fake: FakeNovitaServer, make_provider: MakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ContentBlocked):
        await make_provider().generate(GenerationRequest(prompt="forbidden things"))
    fake.credit = 0
    with pytest.raises(OutOfCredit):
        await make_provider().generate(GenerationRequest(prompt="a cat"))
    monkeypatch.setenv(KEY_ENV, "not-the-key")
    with pytest.raises(BadApiKey):
        await make_provider().generate(GenerationRequest(prompt="a cat"))
    assert fake.billed == []


async def test_rate_limit_is_retried_honouring_retry_after_without_double_billing(
    fake: FakeNovitaServer, make_provider: MakeProvider
) -> None:
    limited = Fault(429, {"code": 429, "reason": "RATE_LIMIT_EXCEEDED", "message": "slow"}, {"Retry-After": "0.01"})
    fake.inject("create", limited)

    result = await make_provider().generate(GenerationRequest(prompt="a cat"))

    assert len(result.images) == 1 and len(creates(fake)) == 2 and len(fake.billed) == 1
    fake.inject("create", limited, times=3)
    with pytest.raises(RateLimited) as caught:
        await make_provider(max_attempts=3).generate(GenerationRequest(prompt="a cat"))
    assert caught.value.retry_after == pytest.approx(0.01) and len(fake.billed) == 1


async def test_unreachable_host_is_reported_unavailable(make_provider: MakeProvider, fake: FakeNovitaServer) -> None:
    await fake.stop()

    with pytest.raises(ProviderUnavailable) as caught:
        await make_provider(max_attempts=2).generate(GenerationRequest(prompt="a cat"))

    assert caught.value.user_message == "The image provider cannot be reached right now."


async def test_create_timeout_fails_without_creating_again(fake: FakeNovitaServer, make_provider: MakeProvider) -> None:
    fake.inject("create", Fault(hang_seconds=0.5))

    with pytest.raises(ProviderTimeout):
        await make_provider(timeout_seconds=0.1).generate(GenerationRequest(prompt="a cat"))

    assert len(creates(fake)) == 1


async def test_restart_between_submit_and_collect(fake: FakeNovitaServer, make_provider: MakeProvider) -> None:
    request = GenerationRequest(prompt="a cat", count=2)
    saved = (await make_provider().submit(request)).model_dump_json()

    result = await make_provider().collect(request, Submission.model_validate_json(saved))

    assert len(result.images) == 2 and len(creates(fake)) == 1
    fake.expire_all()
    with pytest.raises(ResultExpired):
        await make_provider().collect(request, Submission.model_validate_json(saved))


async def test_cli_generate(fake: FakeNovitaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, fake.api_key)
    monkeypatch.chdir(tmp_path)
    ref = tmp_path / "ref.jpg"
    ref.write_bytes(png_bytes(300, 300))

    code, files = await run_cli(
        tmp_path,
        f'kind = "highway"\nbase_url = "{fake.base_url}"',
        ["a lighthouse", "--aspect", "16:9", "--resolution", "2K", "--image", str(ref)],
    )

    assert code == 0
    assert [Image.open(f).size for f in files] == [(2560, 1440)]
    assert len(fake.billed) == 1
