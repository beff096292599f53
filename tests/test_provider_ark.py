"""Ark (BytePlus ModelArk / Volcengine) provider against a strict fake of ``/api/v3/images/generations``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.config import ArkConfig
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
from bot.providers.ark import ArkProvider
from bot.providers.base import GenerationRequest, Submission
from tests.fakeproviders.ark import FakeArkServer, error_body
from tests.fakeproviders.common import Fault, png_bytes
from tests.provider_helpers import KEY_ENV, decode_data_uri, reference, run_cli

MakeProvider = Callable[..., ArkProvider]
BYTEPLUS_45 = "seedream-4-5-251128"
VOLCENGINE_40 = "doubao-seedream-4-0-250828"


@pytest.fixture
async def fake() -> AsyncIterator[FakeArkServer]:
    server = FakeArkServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_provider(
    fake: FakeArkServer, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MakeProvider]:
    monkeypatch.setenv(KEY_ENV, fake.api_key)
    made: list[ArkProvider] = []

    def make(**overrides: Any) -> ArkProvider:
        config = ArkConfig(base_url=f"{fake.base_url}/api/v3", api_key_env=KEY_ENV, **overrides)
        provider = ArkProvider("ark", config, store, retry_base_seconds=0.001)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


def creates(fake: FakeArkServer) -> list[Any]:
    return [call.body for call in fake.calls_to("POST", "/api/v3/images/generations")]


def ark_error(status: int, code: str, message: str = "Something is wrong.") -> Fault:
    return Fault(status=status, body=error_body(code, message))


async def test_text_to_image_with_count_and_aspect(fake: FakeArkServer, make_provider: MakeProvider) -> None:
    result = await make_provider(model=BYTEPLUS_45).generate(
        GenerationRequest(prompt="a lantern festival", aspect_ratio="4:3", resolution="2K", count=3)
    )

    assert [(image.width, image.height) for image in result.images] == [(2304, 1728)] * 3
    assert result.notices == []
    (body,) = creates(fake)
    assert "3 separate images" in body.pop("prompt")
    assert body == {
        "model": BYTEPLUS_45,
        "size": "2304x1728",
        "watermark": False,
        "sequential_image_generation": "auto",
        "sequential_image_generation_options": {"max_images": 3},
        "response_format": "url",
    }


async def test_edit_on_volcengine_40_with_1k_and_references(
    fake: FakeArkServer, make_provider: MakeProvider, store: ImageStore
) -> None:
    refs = [await reference(store, 900, 1600, fmt="JPEG"), await reference(store, 400, 300)]

    result = await make_provider(model=VOLCENGINE_40).generate(
        GenerationRequest(prompt="merge them", aspect_ratio="auto", resolution="1K", references=refs, enhance=True)
    )

    (body,) = creates(fake)
    assert body["model"] == VOLCENGINE_40 and body["optimize_prompt_options"] == {"mode": "standard"}
    assert [decode_data_uri(uri)[1] for uri in body["image"]] == [(900, 1600), (400, 300)]
    assert all(uri.startswith(("data:image/jpeg;base64,", "data:image/png;base64,")) for uri in body["image"])
    # "auto" follows the first (9:16) reference; 1K is allowed on 4.0 and 720×1280 is within its range.
    assert body["size"] == "720x1280" and [(i.width, i.height) for i in result.images] == [(720, 1280)]


async def test_blocked_images_in_a_set_become_a_notice(fake: FakeArkServer, make_provider: MakeProvider) -> None:
    fake.blocked_outputs = {1}

    result = await make_provider().generate(GenerationRequest(prompt="three pictures", count=3))

    assert len(result.images) == 2
    assert result.notices == ["You get 2 of the 3 images you asked for (1 blocked by the provider's moderation)."]


async def test_model_making_fewer_images_gives_a_notice(fake: FakeArkServer, make_provider: MakeProvider) -> None:
    fake.set_size = 1

    result = await make_provider().generate(GenerationRequest(prompt="a cat", count=2))

    assert len(result.images) == 1 and "made fewer" in result.notices[0]


@pytest.mark.parametrize("count", [1, 2])
async def test_every_output_blocked_is_content_blocked(
    fake: FakeArkServer, make_provider: MakeProvider, count: int
) -> None:
    fake.blocked_outputs = {0, 1}

    with pytest.raises(ContentBlocked) as caught:
        await make_provider().generate(GenerationRequest(prompt="a cat", count=count))

    assert caught.value.user_message == "The provider's moderation blocked the generated image."


async def test_endpoint_ids_get_the_rules_both_models_accept(fake: FakeArkServer, make_provider: MakeProvider) -> None:
    provider = make_provider(model="ep-20250101-abcde")

    with pytest.raises(InvalidRequest, match=re.escape("choose one of 2K, 4K")):
        await provider.submit(GenerationRequest(prompt="a cat", resolution="1K"))
    assert fake.calls == []
    with pytest.raises(BadApiKey):  # this fake knows no endpoint ids: 404 InvalidEndpointOrModel.NotFound
        await provider.submit(GenerationRequest(prompt="a cat"))


@pytest.mark.parametrize(
    ("model", "request_fields", "references", "says"),
    [
        (BYTEPLUS_45, {"resolution": "1K"}, 0, "Resolution 1K is not available on ark (seedream-4-5-251128)"),
        (VOLCENGINE_40, {"seed": 42}, 0, "does not accept a seed"),
        (BYTEPLUS_45, {}, 15, "at most 14 reference images"),
        (VOLCENGINE_40, {"count": 2}, 14, "must be at most 15; you asked for 14 + 2"),
    ],
)
async def test_unservable_requests_are_refused_before_any_call(
    fake: FakeArkServer,
    make_provider: MakeProvider,
    store: ImageStore,
    model: str,
    request_fields: dict[str, Any],
    references: int,
    says: str,
) -> None:
    refs = [await reference(store, 32, 32)] * references

    with pytest.raises(InvalidRequest, match=re.escape(says)):
        await make_provider(model=model).submit(GenerationRequest(prompt="a cat", references=refs, **request_fields))
    assert fake.calls == []


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (ark_error(400, "InvalidParameter"), ProviderRejected),
        (ark_error(400, "InputImageSensitiveContentDetected"), ContentBlocked),
        (ark_error(400, "SensitiveContentDetected.Violence"), ContentBlocked),
        (ark_error(400, "InvalidEndpoint.ClosedEndpoint"), ProviderUnavailable),
        (ark_error(403, "AccessDenied"), BadApiKey),
        (ark_error(429, "SetLimitExceeded"), OutOfCredit),
        (ark_error(429, "ModelQuotaExhausted"), OutOfCredit),
        (ark_error(500, "InternalServiceError"), ProviderUnavailable),
        (Fault(502, {"Code": "BadGateway"}), ProviderUnavailable),
        (Fault(malformed=True), ProviderUnavailable),
        (Fault(200, {"data": [], "usage": {"generated_images": 0}}), ProviderUnavailable),
    ],
)
async def test_create_errors_map_to_our_taxonomy_and_are_not_retried(
    fake: FakeArkServer, make_provider: MakeProvider, fault: Fault, error: type[Exception]
) -> None:
    fake.inject("create", fault, times=4)

    with pytest.raises(error) as caught:
        await make_provider().generate(GenerationRequest(prompt="a cat"))

    assert type(caught.value) is error
    assert len(creates(fake)) == 1


async def test_invalid_parameter_says_why(fake: FakeArkServer, make_provider: MakeProvider) -> None:
    message = "The parameter `size` specified in the request is not valid: image size must be at least 3686400 pixels."
    fake.inject("create", ark_error(400, "InvalidParameter", message))

    with pytest.raises(InvalidRequest) as caught:
        await make_provider().generate(GenerationRequest(prompt="a cat"))

    assert caught.value.user_message == (
        f"The image provider refused the request as invalid ({message.rstrip('.')}). "
        "Choose another aspect ratio or resolution; the same request would be refused again."
    )
    assert isinstance(caught.value, ProviderRejected) and "try again" not in caught.value.user_message
    assert len(creates(fake)) == 1


async def test_real_refusals_from_the_fake(
    fake: FakeArkServer, make_provider: MakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ContentBlocked, match="InputTextSensitiveContentDetected"):
        await make_provider().generate(GenerationRequest(prompt="forbidden words"))
    fake.credit = 0
    with pytest.raises(OutOfCredit, match="AccountOverdueError"):
        await make_provider().generate(GenerationRequest(prompt="a cat"))
    fake.credit, fake.activated = None, set()
    with pytest.raises(BadApiKey, match="ModelNotOpen"):
        await make_provider().generate(GenerationRequest(prompt="a cat"))
    monkeypatch.setenv(KEY_ENV, "wrong")
    with pytest.raises(BadApiKey, match="AuthenticationError"):
        await make_provider().generate(GenerationRequest(prompt="a cat"))
    assert fake.billed == []


@pytest.mark.parametrize("code", ["RateLimitExceeded.EndpointRPMExceeded", "ServerOverloaded"])
async def test_busy_answers_are_retried_without_double_billing(
    fake: FakeArkServer, make_provider: MakeProvider, code: str
) -> None:
    fault = ark_error(429, code)
    fault.headers = {"Retry-After": "0.01"}
    fake.inject("create", fault, times=2)

    result = await make_provider().generate(GenerationRequest(prompt="a cat"))

    assert len(result.images) == 1 and len(creates(fake)) == 3 and len(fake.billed) == 1


async def test_rate_limit_that_persists_reports_retry_after(fake: FakeArkServer, make_provider: MakeProvider) -> None:
    fault = ark_error(429, "RateLimitExceeded")
    fault.headers = {"Retry-After": "0.03"}
    fake.inject("create", fault, times=2)

    with pytest.raises(RateLimited) as caught:
        await make_provider(max_attempts=2).generate(GenerationRequest(prompt="a cat"))

    assert caught.value.retry_after == pytest.approx(0.03) and fake.billed == []


async def test_create_timeout_fails_without_creating_again(fake: FakeArkServer, make_provider: MakeProvider) -> None:
    fake.inject("create", Fault(hang_seconds=0.5))

    with pytest.raises(ProviderTimeout):
        await make_provider(timeout_seconds=0.1).generate(GenerationRequest(prompt="a cat"))

    assert len(creates(fake)) == 1


async def test_restart_between_submit_and_collect(fake: FakeArkServer, make_provider: MakeProvider) -> None:
    fake.blocked_outputs = {0}
    request = GenerationRequest(prompt="a cat", count=2)
    saved = (await make_provider().submit(request)).model_dump_json()

    result = await make_provider().collect(request, Submission.model_validate_json(saved))

    assert len(result.images) == 1 and len(creates(fake)) == 1
    assert result.notices == ["You get 1 of the 2 images you asked for (1 blocked by the provider's moderation)."]
    fake.expire_all()
    with pytest.raises(ResultExpired):
        await make_provider().collect(request, Submission.model_validate_json(saved))


async def test_cli_generate_on_volcengine(fake: FakeArkServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, fake.api_key)
    monkeypatch.chdir(tmp_path)
    ref = tmp_path / "ref.png"
    ref.write_bytes(png_bytes(256, 256))
    provider_toml = f'kind = "ark"\nbase_url = "{fake.base_url}/api/v3"\nmodel = "{VOLCENGINE_40}"'

    code, files = await run_cli(
        tmp_path, provider_toml, ["a lighthouse", "--aspect", "21:9", "--resolution", "1K", "--image", str(ref)]
    )

    assert code == 0
    assert [Image.open(f).size for f in files] == [(1512, 648)]
    (body,) = creates(fake)
    assert body["model"] == VOLCENGINE_40 and decode_data_uri(body["image"][0])[1] == (256, 256)
