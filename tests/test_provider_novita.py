"""Novita provider against a strict fake of ``/v3/seedream-4.5`` and ``/v3/seedream-4.0``."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot import sizes
from bot.config import NovitaConfig
from bot.errors import (
    BadApiKey,
    ContentBlocked,
    ImageRejected,
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
from bot.providers.novita import V3_MODEL_RULES, NovitaProvider
from bot.providers.seedream_v3 import capabilities_for, size_for
from tests.fakeproviders.common import Fault, png_bytes
from tests.fakeproviders.novita import FakeNovitaServer
from tests.provider_helpers import KEY_ENV, decode_data_uri, reference, run_cli

MakeProvider = Callable[..., NovitaProvider]


@pytest.fixture
async def fake() -> AsyncIterator[FakeNovitaServer]:
    server = FakeNovitaServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_provider(
    fake: FakeNovitaServer, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MakeProvider]:
    monkeypatch.setenv(KEY_ENV, fake.api_key)
    made: list[NovitaProvider] = []

    def make(**overrides: Any) -> NovitaProvider:
        config = NovitaConfig(base_url=fake.base_url, api_key_env=KEY_ENV, **overrides)
        provider = NovitaProvider("novita", config, store, retry_base_seconds=0.001)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


def creates(fake: FakeNovitaServer) -> list[Any]:
    return [call.body for call in fake.calls_to("POST", "/v3/")]


def novita_error(status: int, reason: str, message: str = "something is wrong") -> Fault:
    return Fault(status=status, body={"code": status, "reason": reason, "message": message, "metadata": {}})


async def test_text_to_image_with_count_and_aspect(fake: FakeNovitaServer, make_provider: MakeProvider) -> None:
    result = await make_provider().generate(
        GenerationRequest(prompt="a red fox in snow", aspect_ratio="16:9", resolution="2K", count=3)
    )

    assert [(image.width, image.height) for image in result.images] == [(2560, 1440)] * 3
    assert all(image.path.is_file() and image.mime == "image/png" for image in result.images)
    assert result.notices == []
    (body,) = creates(fake)
    assert body["prompt"].startswith("a red fox in snow") and "3 separate images" in body["prompt"]
    assert {key: value for key, value in body.items() if key != "prompt"} == {
        "size": "2560x1440",
        "watermark": False,
        "sequential_image_generation": "auto",
        "sequential_image_generation_options": {"max_images": 3},
    }


async def test_single_image_leaves_group_mode_at_its_default_off(
    fake: FakeNovitaServer, make_provider: MakeProvider
) -> None:
    result = await make_provider().generate(GenerationRequest(prompt="a tower", aspect_ratio="3:4", resolution="4K"))

    assert [(image.width, image.height) for image in result.images] == [(3456, 4608)]
    (body,) = creates(fake)
    assert body == {
        "prompt": "a tower",
        "size": "3456x4608",
        "watermark": False,
    }  # "disabled" is the documented default; 5.0 Pro/Flash/5.5 refuse the field itself


async def test_fewer_images_than_asked_are_delivered_with_a_notice(
    fake: FakeNovitaServer, make_provider: MakeProvider
) -> None:
    fake.set_size = 2

    result = await make_provider().generate(GenerationRequest(prompt="four seasons of a tree", count=4))

    assert len(result.images) == 2
    assert result.notices == [
        "You get 2 of the 4 images you asked for (Seedream decides how many pictures a set needs and made fewer)."
    ]


async def test_edit_sends_references_as_data_uris_within_limits(
    fake: FakeNovitaServer, make_provider: MakeProvider, store: ImageStore
) -> None:
    wide = await reference(store, 1600, 400, fmt="JPEG")  # 4:1, beyond the documented [1/3, 3]
    small = await reference(store, 64, 64)

    result = await make_provider().generate(
        GenerationRequest(prompt="put the cat on the banner", aspect_ratio="auto", references=[wide, small])
    )

    (body,) = creates(fake)
    decoded = [decode_data_uri(uri) for uri in body["image"]]
    assert decoded[1] == ("image/png", (64, 64))
    _, (width, height) = decoded[0]
    assert width == 1600 and 1 / 3 <= width / height <= 3, "padded to the documented ratio, not cropped"
    # "auto" follows the first reference: 4:1 is nearest to 21:9.
    assert body["size"] == "3024x1296" and [(i.width, i.height) for i in result.images] == [(3024, 1296)]


async def test_watermark_and_prompt_optimisation_follow_config_and_request(
    fake: FakeNovitaServer, make_provider: MakeProvider
) -> None:
    await make_provider(watermark=True).generate(GenerationRequest(prompt="a boat", enhance=True))

    (body,) = creates(fake)
    assert body["watermark"] is True and body["optimize_prompt_options"] == {"mode": "standard"}


async def test_seedream_40_uses_its_own_field_names_and_1k(
    fake: FakeNovitaServer, make_provider: MakeProvider, store: ImageStore
) -> None:
    ref = await reference(store, 300, 200)

    result = await make_provider(model="seedream-4.0").generate(
        GenerationRequest(prompt="a kite", aspect_ratio="16:9", resolution="1K", count=2, references=[ref])
    )

    (body,) = creates(fake)
    assert fake.calls[0].path == "/v3/seedream-4.0"
    assert body["max_images"] == 2 and "sequential_image_generation_options" not in body
    assert [decode_data_uri(uri)[1] for uri in body["images"]] == [(300, 200)] and "image" not in body
    # 1280×720 is below 4.0's 1024×1024-pixel minimum, so the same shape is scaled up.
    assert body["size"] == "1376x768"
    assert [(i.width, i.height) for i in result.images] == [(1376, 768)] * 2


@pytest.mark.parametrize("model", list(V3_MODEL_RULES))
def test_every_size_we_map_is_within_the_documented_range(model: str) -> None:
    rules = V3_MODEL_RULES[model]
    caps = capabilities_for("novita", model, rules)
    for aspect in sizes.ASPECT_RATIOS:
        for resolution in rules.resolutions:
            request = GenerationRequest(prompt="x", aspect_ratio=aspect, resolution=resolution)
            width, height = map(int, size_for(caps, rules, request).split("x"))
            assert rules.min_pixels <= width * height <= 16_777_216, (aspect, resolution)
            assert width / height == pytest.approx(sizes.ratio_value(aspect), rel=0.03), (aspect, resolution)


@pytest.mark.parametrize(
    ("model", "request_fields", "references", "says"),
    [
        (
            "seedream-4.5",
            {"resolution": "1K"},
            0,
            "Resolution 1K is not available on novita (seedream-4.5); choose one of 2K, 4K",
        ),
        ("seedream-4.5", {"seed": 7}, 0, "does not accept a seed"),
        ("seedream-4.5", {"style": "Cinematic"}, 0, "has no style presets"),
        ("seedream-4.0", {"enhance": True}, 0, "cannot enhance prompts"),
        ("seedream-4.0", {}, 11, "at most 10 reference images"),
        ("seedream-4.5", {}, 15, "at most 14 reference images"),
        ("seedream-4.5", {"count": 3}, 13, "must be at most 15; you asked for 13 + 3"),
        ("seedream-4.5", {"aspect_ratio": "auto"}, 0, "needs at least one image"),
    ],
)
async def test_unservable_requests_are_refused_before_any_call(
    fake: FakeNovitaServer,
    make_provider: MakeProvider,
    store: ImageStore,
    model: str,
    request_fields: dict[str, Any],
    references: int,
    says: str,
) -> None:
    refs = [await reference(store, 32, 32)] * references
    request = GenerationRequest(prompt="a cat", references=refs, **request_fields)

    with pytest.raises(InvalidRequest, match=re.escape(says)):
        await make_provider(model=model).submit(request)
    assert fake.calls == []


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (novita_error(400, "ILLEGAL_IMAGE_CONTENT"), ContentBlocked),
        (novita_error(400, "INVALID_REQUEST_BODY", "size is invalid"), ProviderRejected),
        (novita_error(400, "IMAGE_FILE_EXCEEDS_MAX_SIZE"), ImageRejected),
        (novita_error(403, "BILLING_AUTH_FAILED"), OutOfCredit),
        (novita_error(403, "API_NOT_ALLOWED"), BadApiKey),
        (novita_error(500, "CREATE_TASK_FAILED"), ProviderUnavailable),
        (Fault(400, {"error": {"code": "InputImageSensitiveContentDetected", "message": "x"}}), ContentBlocked),
        (Fault(502, {"unexpected": "shape"}), ProviderUnavailable),
        (Fault(malformed=True), ProviderUnavailable),
        (Fault(200, {"images": []}), ProviderUnavailable),
    ],
)
async def test_create_errors_map_to_our_taxonomy_and_are_not_retried(
    fake: FakeNovitaServer, make_provider: MakeProvider, fault: Fault, error: type[Exception]
) -> None:
    fake.inject("create", fault, times=4)

    with pytest.raises(error) as caught:
        await make_provider().generate(GenerationRequest(prompt="a cat"))

    assert type(caught.value) is error
    assert len(creates(fake)) == 1, "a create that may have been billed must not be sent again"


async def test_invalid_request_says_why(fake: FakeNovitaServer, make_provider: MakeProvider) -> None:
    fake.inject("create", novita_error(400, "INVALID_REQUEST_BODY", "prompt too long, see https://x.example/doc?a=1"))

    with pytest.raises(InvalidRequest) as caught:
        await make_provider().generate(GenerationRequest(prompt="a cat"))

    assert caught.value.user_message == (
        "The image provider refused the request as invalid (prompt too long, see <link>). "
        "Change the prompt (shorter or reworded); the same request would be refused again."
    )
    assert isinstance(caught.value, ProviderRejected) and len(creates(fake)) == 1


async def test_unknown_error_body_is_logged_without_the_key(
    fake: FakeNovitaServer, make_provider: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    fake.inject("create", Fault(418, {"teapot": True}))

    with caplog.at_level(logging.WARNING), pytest.raises(ProviderUnavailable):
        await make_provider().generate(GenerationRequest(prompt="a cat"))

    assert "unrecognised error body (HTTP 418)" in caplog.text and fake.api_key not in caplog.text


async def test_moderation_refusal_is_content_blocked(fake: FakeNovitaServer, make_provider: MakeProvider) -> None:
    with pytest.raises(ContentBlocked) as caught:
        await make_provider().generate(GenerationRequest(prompt="something forbidden"))
    assert "refused the prompt" in caught.value.user_message
    assert fake.billed == []


async def test_out_of_credit(fake: FakeNovitaServer, make_provider: MakeProvider) -> None:
    fake.credit = 1

    with pytest.raises(OutOfCredit) as caught:
        await make_provider().generate(GenerationRequest(prompt="two cats", count=2))
    assert "top it up" in caught.value.user_message


async def test_bad_or_missing_key(
    fake: FakeNovitaServer, make_provider: MakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "wrong-key")
    with pytest.raises(BadApiKey):
        await make_provider().generate(GenerationRequest(prompt="a cat"))
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(BadApiKey) as caught:
        await make_provider().generate(GenerationRequest(prompt="a cat"))
    assert "no API key configured" in caught.value.user_message
    assert len(creates(fake)) == 1, "without a key nothing is sent"


@pytest.mark.parametrize(
    "fault",
    [
        novita_error(429, "RATE_LIMIT_EXCEEDED"),
        Fault(429, {"code": 429, "reason": "RATE_LIMIT_EXCEEDED", "message": "slow"}, {"Retry-After": "0.01"}),
        Fault(503),
    ],
)
async def test_not_accepted_answers_are_retried_without_double_billing(
    fake: FakeNovitaServer, make_provider: MakeProvider, fault: Fault
) -> None:
    fake.inject("create", fault, times=2)

    result = await make_provider().generate(GenerationRequest(prompt="a cat"))

    assert len(result.images) == 1
    assert len(creates(fake)) == 3 and len(fake.billed) == 1


async def test_rate_limit_that_persists_reports_retry_after(
    fake: FakeNovitaServer, make_provider: MakeProvider
) -> None:
    limited = novita_error(429, "RATE_LIMIT_EXCEEDED")
    limited.headers = {"Retry-After": "0.02"}
    fake.inject("create", limited, times=2)

    with pytest.raises(RateLimited) as caught:
        await make_provider(max_attempts=2).generate(GenerationRequest(prompt="a cat"))

    assert caught.value.retry_after == pytest.approx(0.02)
    assert len(creates(fake)) == 2 and fake.billed == []


async def test_create_timeout_fails_without_creating_again(fake: FakeNovitaServer, make_provider: MakeProvider) -> None:
    fake.inject("create", Fault(hang_seconds=0.5))

    with pytest.raises(ProviderTimeout) as caught:
        await make_provider(timeout_seconds=0.1).generate(GenerationRequest(prompt="a cat"))

    assert "not repeated because it may already have been charged" in caught.value.user_message
    assert len(creates(fake)) == 1


async def test_collect_after_restart_downloads_without_a_new_create(
    fake: FakeNovitaServer, make_provider: MakeProvider
) -> None:
    request = GenerationRequest(prompt="a cat", aspect_ratio="9:16", count=2)
    saved = (await make_provider().submit(request)).model_dump_json()
    fake.inject("files", Fault(500))  # a transient download fault is retried

    result = await make_provider().collect(request, Submission.model_validate_json(saved))

    assert [(i.width, i.height) for i in result.images] == [(1440, 2560)] * 2
    assert len(creates(fake)) == 1


async def test_expired_result_links(fake: FakeNovitaServer, make_provider: MakeProvider) -> None:
    provider = make_provider()
    request = GenerationRequest(prompt="a cat", count=2)
    submission = await provider.submit(request)
    fake.expired.add(submission.result_urls[0].split("/files/")[1].split("?")[0])

    partial = await provider.collect(request, submission)
    fake.expire_all()

    assert len(partial.images) == 1
    assert partial.notices == ["1 image(s) had expired at the provider before they could be fetched."]
    with pytest.raises(ResultExpired):
        await provider.collect(request, submission)


async def test_cli_generate_with_reference(
    fake: FakeNovitaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, fake.api_key)
    monkeypatch.chdir(tmp_path)
    ref = tmp_path / "ref.png"
    ref.write_bytes(png_bytes(320, 240))
    provider_toml = f'kind = "novita"\nbase_url = "{fake.base_url}"\nmodel = "seedream-4.5"'

    code, files = await run_cli(
        tmp_path, provider_toml, ["a lighthouse", "--aspect", "3:2", "--count", "2", "--image", str(ref)]
    )

    assert code == 0
    assert [Image.open(f).size for f in files] == [(2496, 1664)] * 2
    (body,) = creates(fake)
    assert decode_data_uri(body["image"][0])[1] == (320, 240) and len(fake.billed) == 1
