"""Seedream 5.x (5.0 Lite, 5.0 Pro, 5.0 Flash, 5.5) on every provider that offers it, against strict fakes.

The fakes know what the provider reference (§10) says each model accepts and refuse the rest the way the
real APIs do: an unknown field, a size outside the pixel window, too many references, and on 5.0 Pro,
Flash and 5.5 the mere presence of ``sequential_image_generation``. Before 5.x support the bot sent any
unknown model with 4.5's rules; the first tests replay what a recording server saw then.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from bot import sizes
from bot.cli import capabilities_table
from bot.config import (
    ArkConfig,
    HighwayConfig,
    LeonardoConfig,
    NovitaConfig,
    QuotaSection,
    TaskApiConfig,
    load_settings,
)
from bot.errors import InvalidRequest, ProviderRejected
from bot.images import ImageStore
from bot.providers.ark import ArkProvider
from bot.providers.base import GenerationRequest, Provider
from bot.providers.highway import HighwayProvider
from bot.providers.leonardo import LeonardoProvider
from bot.providers.novita import NovitaProvider
from bot.providers.registry import ProviderRegistry
from bot.providers.taskapi import TaskApiProvider
from bot.storage import Database
from tests.fakeproviders.ark import FakeArkServer, error_body
from tests.fakeproviders.common import FakeProviderServer, Fault, png_bytes
from tests.fakeproviders.leonardo import FakeLeonardo
from tests.fakeproviders.novita import FakeNovitaServer
from tests.fakeproviders.taskapi import FakeTaskApi
from tests.provider_helpers import KEY_ENV, engine_for, enqueue, reference
from tests.test_jobs import RecordingSink

LITE, PRO, FLASH, V55 = (
    "seedream-5-0-260128",
    "seedream-5-0-pro-260628",
    "seedream-5-0-flash-260915",
    "seedream-5-5-261028",
)
LEO_PRO, LEO_FLASH, LEO_55 = "seedream-5.0-pro", "bytedance/seedream-5.0-flash", "bytedance/seedream-5.5"
NOVITA_LITE = "seedream-5.0-lite"
TASKAPI_LITE = "doubao-seedream-5-0-lite"
#: Every 5.x model of every provider: (kind, model).
EVERY_5X = [
    ("ark", LITE),
    ("ark", PRO),
    ("ark", FLASH),
    ("ark", V55),
    ("novita", NOVITA_LITE),
    ("highway", NOVITA_LITE),
    ("leonardo", LEO_PRO),
    ("leonardo", LEO_FLASH),
    ("leonardo", LEO_55),
    ("taskapi", TASKAPI_LITE),
]
COMMON: dict[str, Any] = {
    "api_key_env": KEY_ENV,
    "timeout_seconds": 5.0,
    "max_attempts": 2,
    "retry_base_seconds": 0.001,
    "poll_interval_seconds": 0.01,
}
Fakes = dict[str, FakeProviderServer]
Make = Callable[[str, str], Provider]


@pytest.fixture
async def fakes(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Fakes]:
    servers: Fakes = {
        "ark": FakeArkServer(),
        "novita": FakeNovitaServer(),
        "highway": FakeNovitaServer(object_items="url"),
        "leonardo": FakeLeonardo(),
        "taskapi": FakeTaskApi(),
    }
    servers["taskapi"].polls_before_done = 1  # type: ignore[attr-defined]
    for server in servers.values():
        await server.start()
    monkeypatch.setenv(KEY_ENV, FakeProviderServer.api_key)
    try:
        yield servers
    finally:
        for server in servers.values():
            await server.stop()


@pytest.fixture
async def make(fakes: Fakes, store: ImageStore) -> AsyncIterator[Make]:
    built: list[Provider] = []

    def build(kind: str, model: str) -> Provider:
        base = fakes[kind].base_url
        provider: Provider
        if kind == "ark":
            provider = ArkProvider(kind, ArkConfig(base_url=f"{base}/api/v3", model=model, **COMMON), store)
        elif kind == "novita":
            provider = NovitaProvider(kind, NovitaConfig(base_url=base, model=model, **COMMON), store)
        elif kind == "highway":
            provider = HighwayProvider(kind, HighwayConfig(base_url=base, model=model, **COMMON), store)
        elif kind == "leonardo":
            provider = LeonardoProvider(kind, LeonardoConfig(base_url=base, model=model, **COMMON), store)
        else:
            provider = TaskApiProvider(kind, TaskApiConfig(base_url=base, model=model, **COMMON), store)
        built.append(provider)
        return provider

    yield build
    for provider in built:
        await provider.close()


#: Where each fake takes a create call.
CREATE_PATHS = ("/api/v3/images/generations", "/v3/", "/v2/generations", "/v1/images/generations")


def creates(fake: FakeProviderServer) -> list[dict[str, Any]]:
    return [call.body for call in fake.calls if call.method == "POST" and call.path.startswith(CREATE_PATHS)]


def sent_size(kind: str, body: dict[str, Any]) -> tuple[int, int]:
    if kind == "leonardo":
        return body["parameters"]["width"], body["parameters"]["height"]
    width, height = body["size"].split("x")
    return int(width), int(height)


async def post(url: str, body: Any, key: str = FakeProviderServer.api_key) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


# -- what the recording server saw before, and what goes out now ------------------------------------------------
@pytest.mark.parametrize(("kind", "model"), [("ark", LITE), ("novita", NOVITA_LITE), ("highway", NOVITA_LITE)])
async def test_a_lite_request_at_4k_is_refused_before_any_call_instead_of_sent_as_4096_squared(
    kind: str, model: str, make: Make, fakes: Fakes
) -> None:
    provider = make(kind, model)
    with pytest.raises(InvalidRequest) as refused:
        await provider.generate(GenerationRequest(prompt="a city at night", resolution="4K"))
    assert refused.value.user_message == (f"Resolution 4K is not available on {kind} ({model}); choose one of 2K, 3K.")
    assert creates(fakes[kind]) == []


@pytest.mark.parametrize(("kind", "model"), [("ark", LITE), ("novita", NOVITA_LITE), ("highway", NOVITA_LITE)])
async def test_lite_renders_3k_inside_its_window(kind: str, make: Make, fakes: Fakes, model: str) -> None:
    result = await make(kind, model).generate(
        GenerationRequest(prompt="a harbour", aspect_ratio="16:9", resolution="3K")
    )

    (body,) = creates(fakes[kind])
    assert body["size"] == "3840x2160"  # 8,294,400 px: within 3,686,400–10,404,496
    assert [(image.width, image.height) for image in result.images] == [(3840, 2160)]


async def test_5_5_renders_1k_and_refuses_4k(make: Make, fakes: Fakes) -> None:
    provider = make("ark", V55)
    result = await provider.generate(GenerationRequest(prompt="a fox", aspect_ratio="16:9", resolution="1K"))
    with pytest.raises(
        InvalidRequest, match="Resolution 4K is not available on ark \\(seedream-5-5-261028\\); choose one of 1K, 2K"
    ):
        await provider.generate(GenerationRequest(prompt="a fox", resolution="4K"))
    with pytest.raises(InvalidRequest, match="Resolution 3K is not available"):
        await provider.generate(GenerationRequest(prompt="a fox", resolution="3K"))

    (body,) = creates(fakes["ark"])
    assert body == {
        "model": V55,
        "prompt": "a fox",
        "size": "1376x768",  # 1280×720 enlarged to the 1,048,576-px minimum, aspect kept
        "watermark": False,
        "response_format": "url",
    }
    assert [(image.width, image.height) for image in result.images] == [(1376, 768)]
    assert result.images[0].mime == "image/png"  # 5.5's default output_format


@pytest.mark.parametrize("model", [PRO, FLASH, V55])
async def test_models_without_image_sets_never_get_the_field_they_refuse(model: str, make: Make, fakes: Fakes) -> None:
    provider = make("ark", model)
    result = await provider.generate(GenerationRequest(prompt="three lanterns", count=3))

    bodies = creates(fakes["ark"])
    assert len(bodies) == 3, "one single-image call per picture"
    for body in bodies:
        assert not {"sequential_image_generation", "sequential_image_generation_options", "stream"} & set(body)
        assert body["prompt"] == "three lanterns", "no 'set of N' wording when each call makes one picture"
    assert len(result.images) == 3 and result.notices == []


async def test_the_fake_refuses_the_set_field_on_those_models_even_disabled(fakes: Fakes) -> None:
    url = f"{fakes['ark'].base_url}/api/v3/images/generations"
    body = {"model": PRO, "prompt": "x", "size": "2048x2048", "sequential_image_generation": "disabled"}
    status, answer = await post(url, body)
    assert status == 400 and answer["error"]["code"] == "InvalidParameter"
    assert "sequential_image_generation is not supported by the current model" in answer["error"]["message"]
    status, answer = await post(url, {"model": FLASH, "prompt": "x", "stream": False})
    assert status == 400 and "stream is not supported" in answer["error"]["message"]


async def test_lite_keeps_model_decided_sets(make: Make, fakes: Fakes) -> None:
    result = await make("ark", LITE).generate(GenerationRequest(prompt="four seasons", count=4))

    (body,) = creates(fakes["ark"])
    assert body["sequential_image_generation"] == "auto"
    assert body["sequential_image_generation_options"] == {"max_images": 4}
    assert "4 separate images" in body["prompt"]
    assert len(result.images) == 4
    assert all(image.mime == "image/jpeg" for image in result.images), "5.0 answers in jpeg by default"


async def test_one_failed_call_of_a_fanned_out_request_becomes_a_notice(make: Make, fakes: Fakes) -> None:
    blocked = error_body("OutputImageSensitiveContentDetected", "The output image may contain sensitive information.")
    fakes["ark"].inject("create", Fault(400, blocked))
    result = await make("ark", V55).generate(GenerationRequest(prompt="three owls", count=3))

    assert len(result.images) == 2
    assert result.notices == ["You get 2 of the 3 images you asked for (1 blocked by the provider's moderation)."]


async def test_every_call_of_a_fanned_out_request_failing_is_the_error(make: Make, fakes: Fakes) -> None:
    refused = error_body("InvalidParameter", "The parameter `prompt` specified in the request is not valid.")
    fakes["ark"].inject("create", Fault(400, refused), times=2)
    with pytest.raises(ProviderRejected):
        await make("ark", FLASH).generate(GenerationRequest(prompt="two owls", count=2))


@pytest.mark.parametrize(("kind", "model"), EVERY_5X)
async def test_every_aspect_and_tier_a_model_lists_is_accepted_by_its_fake(
    kind: str, model: str, make: Make, fakes: Fakes
) -> None:
    provider = make(kind, model)
    caps = provider.capabilities
    asked = 0
    for aspect in (a for a in caps.aspect_ratios if a != "auto"):
        for resolution in caps.resolutions:
            request = GenerationRequest(prompt="size", aspect_ratio=aspect, resolution=resolution)
            await provider.submit(request)  # the fake answers 400 to a size outside the model's window
            asked += 1
            if kind in ("ark", "novita", "highway", "leonardo"):
                width, height = sent_size(kind, creates(fakes[kind])[-1])
                assert (width, height) == caps.dimensions(request)
                low, high = caps.output_pixels or (0, 0)
                assert low <= width * height <= high, (aspect, resolution, width, height)
    assert len(creates(fakes[kind])) == asked


# -- references, seeds, transparency -----------------------------------------------------------------------------
async def test_reference_limits_follow_the_model(make: Make, fakes: Fakes, store: ImageStore) -> None:
    refs = [await reference(store, 64, 64) for _ in range(11)]
    with pytest.raises(InvalidRequest, match="at most 10 reference images; you gave 11"):
        await make("ark", PRO).generate(GenerationRequest(prompt="collage", references=refs))
    assert creates(fakes["ark"]) == []

    result = await make("ark", LITE).generate(GenerationRequest(prompt="collage", references=refs[:1] * 14))
    assert len(result.images) == 1 and len(creates(fakes["ark"])[0]["image"]) == 14


async def test_the_fakes_refuse_too_many_references_and_sizes_outside_the_window(fakes: Fakes) -> None:
    tiny = "data:image/png;base64," + base64.b64encode(png_bytes(32, 32)).decode()
    ark = f"{fakes['ark'].base_url}/api/v3/images/generations"
    status, answer = await post(ark, {"model": FLASH, "prompt": "x", "image": [tiny] * 11})
    assert status == 400 and "1 to 10 images" in answer["error"]["message"]
    status, answer = await post(ark, {"model": LITE, "prompt": "x", "size": "4096x4096"})
    assert status == 400 and "at most 10404496 pixels" in answer["error"]["message"]
    status, answer = await post(ark, {"model": PRO, "prompt": "x", "size": "1280x720"})
    assert status == 400 and "at least 1048576 pixels" in answer["error"]["message"]
    status, answer = await post(ark, {"model": "seedream-4-5-251128", "prompt": "x", "output_format": "png"})
    assert status == 400 and "Unknown parameter" in answer["error"]["message"]

    novita = f"{fakes['novita'].base_url}/v3/{NOVITA_LITE}"
    status, answer = await post(novita, {"prompt": "x", "size": "4096x4096"})
    assert (status, answer["reason"]) == (400, "INVALID_IMAGE_SIZE")
    status, answer = await post(novita, {"prompt": "x", "image": [tiny] * 15})
    assert status == 400 and "at most 14" in answer["message"]
    status, answer = await post(novita, {"prompt": "x", "output_format": "png"})
    assert status == 400 and "unknown field" in answer["message"]

    leonardo = f"{fakes['leonardo'].base_url}/v2/generations"
    status, answer = await post(leonardo, {"model": LEO_FLASH, "parameters": {"prompt": "x", "seed": 5}})
    assert status == 400 and answer[0]["message"] == "Unexpected variable seed"
    status, answer = await post(leonardo, {"model": LEO_PRO, "parameters": {"prompt": "x", "style_ids": []}})
    assert status == 400 and answer[0]["message"] == "Unexpected variable style_ids"
    flash_9mp = {"model": LEO_FLASH, "parameters": {"prompt": "x", "width": 3008, "height": 3008}}
    status, answer = await post(leonardo, flash_9mp)
    assert status == 400 and "pixels" in answer[0]["message"]


async def test_leonardo_5x_sizes_seeds_and_fields(make: Make, fakes: Fakes, store: ImageStore) -> None:
    pro = make("leonardo", LEO_PRO)
    await pro.generate(GenerationRequest(prompt="a koala", aspect_ratio="16:9", resolution="2K", seed=7))
    flash = make("leonardo", LEO_FLASH)
    with pytest.raises(InvalidRequest, match="does not accept a seed"):
        await flash.generate(GenerationRequest(prompt="a koala", seed=7))
    with pytest.raises(InvalidRequest, match="has no style presets"):
        await pro.generate(GenerationRequest(prompt="a koala", style="Cinematic"))
    ref = await reference(store, 96, 64)
    await flash.generate(GenerationRequest(prompt="a koala", resolution="1K", references=[ref]))
    v55 = make("leonardo", LEO_55)
    with pytest.raises(InvalidRequest, match="Aspect ratio 21:9 is not available"):
        await v55.generate(GenerationRequest(prompt="a koala", aspect_ratio="21:9"))
    await v55.generate(GenerationRequest(prompt="a koala", count=2))

    pro_body, flash_body, v55_body = creates(fakes["leonardo"])
    assert pro_body["parameters"] == {
        "prompt": "a koala",
        "width": 2048,  # "2K" at 16:9 shrunk to Pro's 2048-px sides
        "height": 1152,
        "quantity": 1,
        "prompt_enhance": "OFF",
        "seed": 7,
    }
    assert (flash_body["parameters"]["width"], flash_body["parameters"]["height"]) == (1024, 1024)
    (item,) = flash_body["parameters"]["guidances"]["image_reference"]
    assert set(item) == {"image"}, "the Flash guide has no strength"
    assert v55_body == {
        "model": LEO_55,
        "public": False,
        "parameters": {"prompt": "a koala", "width": 2048, "height": 2048, "quantity": 2},
    }


async def test_transparent_background_only_where_offered(make: Make, fakes: Fakes) -> None:
    result = await make("ark", FLASH).generate(GenerationRequest(prompt="a sticker of a cat", transparent=True))
    (body,) = creates(fakes["ark"])
    assert (body["background"], body["output_format"]) == ("transparent", "png")
    assert result.images[0].mime == "image/png"

    for kind, model in (("ark", LITE), ("ark", PRO), ("novita", NOVITA_LITE), ("leonardo", LEO_FLASH)):
        with pytest.raises(InvalidRequest, match="cannot make a transparent background"):
            await make(kind, model).generate(GenerationRequest(prompt="a sticker", transparent=True))
    assert len(creates(fakes["ark"])) == 1

    url = f"{fakes['ark'].base_url}/api/v3/images/generations"
    status, answer = await post(url, {"model": FLASH, "prompt": "x", "background": "transparent"})
    assert status == 400 and "needs `output_format` png" in answer["error"]["message"]


async def test_taskapi_lite_sizes_and_counts(make: Make, fakes: Fakes) -> None:
    provider = make("taskapi", TASKAPI_LITE)
    request = GenerationRequest(prompt="a bridge", aspect_ratio="16:9", resolution="3K")
    (image,) = (await provider.generate(request)).images
    assert (image.width, image.height) == (4096, 2304) == provider.capabilities.dimensions(request)
    for refused, says in (
        ({"aspect_ratio": "9:21"}, "Aspect ratio 9:21 is not available"),
        ({"resolution": "4K"}, "choose one of 2K, 3K"),
        ({"count": 5}, "1 to 4 images"),
    ):
        with pytest.raises(InvalidRequest, match=says):
            await provider.generate(GenerationRequest(prompt="x", **refused))
    (body,) = creates(fakes["taskapi"])
    assert (body["model"], body["size"], body["resolution"]) == (TASKAPI_LITE, "16:9", "3K")


# -- capabilities, registry, config ---------------------------------------------------------------------------
async def test_capabilities_describe_each_model(make: Make) -> None:
    expected = {
        ("ark", LITE): ("5.0 Lite", ("2K", "3K"), 14, True, False, 1),
        ("ark", PRO): ("5.0 Pro", ("1K", "2K"), 10, False, False, 2),
        ("ark", FLASH): ("5.0 Flash", ("1K", "2K"), 10, False, True, 1),
        ("ark", V55): ("5.5", ("1K", "2K"), 10, False, True, 1),
        ("novita", NOVITA_LITE): ("5.0 Lite", ("2K", "3K"), 14, True, False, 1),
        ("leonardo", LEO_PRO): ("5.0 Pro", ("1K", "2K"), 10, False, False, 2),
        ("leonardo", LEO_55): ("5.5", ("1K", "2K"), 10, False, False, 1),
        ("taskapi", TASKAPI_LITE): ("5.0 Lite", ("2K", "3K"), 10, True, False, 1),
    }
    for (kind, model), (family, tiers, refs, sets, transparent, weight) in expected.items():
        caps = make(kind, model).capabilities
        assert (
            caps.family,
            caps.resolutions,
            caps.max_references,
            caps.image_sets,
            caps.transparent_background,
            caps.cost_weight,
        ) == (family, tiers, refs, sets, transparent, weight), (kind, model)
    assert make("ark", V55).capabilities.label == "5.5 — best quality, 1K/2K"
    assert make("ark", "ep-20260101-abcde").capabilities.resolutions == ("2K", "4K"), "unknown endpoint: 4.5's rules"


async def test_registry_lists_the_models_on_offer(make: Make) -> None:
    registry = ProviderRegistry(
        {"lite": make("ark", LITE), "best": make("ark", V55), "leo-pro": make("leonardo", LEO_PRO)}, "best"
    )

    choices = registry.models()
    assert [(c.provider, c.model, c.label, c.cost_weight) for c in choices] == [
        ("best", V55, "5.5 — best quality, 1K/2K", 1),
        ("lite", LITE, "5.0 Lite — image sets, 2K/3K", 1),
        ("leo-pro", LEO_PRO, "5.0 Pro — finest detail, slow, 1K/2K", 2),
    ]
    assert [c.provider for c in registry.models(allowed=["leo-pro", "lite", "gone"])] == ["lite", "leo-pro"]
    assert choices[0].choice_name() == "best: 5.5 — best quality, 1K/2K"
    assert len(choices[2].choice_name(limit=20)) == 20
    assert registry.get(choices[0].provider).capabilities is choices[0].capabilities


def test_config_takes_each_providers_5x_ids_and_refuses_others() -> None:
    for model in (LEO_PRO, LEO_FLASH, LEO_55):
        assert LeonardoConfig(model=model).model == model
    assert NovitaConfig(model=NOVITA_LITE).model == HighwayConfig(model=NOVITA_LITE).model == NOVITA_LITE
    with pytest.raises(ValidationError):
        LeonardoConfig(model="seedream-5.0-lite")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        NovitaConfig(model="seedream-5.5")  # type: ignore[arg-type]
    assert QuotaSection().resolution_weights["3K"] == 2
    assert "3K" in sizes.RESOLUTIONS and sizes.RESOLUTIONS.index("3K") == sizes.RESOLUTIONS.index("2K") + 1


async def test_capabilities_all_lists_the_5x_models(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    table = await capabilities_table(load_settings(None), every_model=True)
    for kind, model in EVERY_5X:
        assert f"| {kind} | {model} |" in table, (kind, model)
    assert "| ark | seedream-5-0-pro-260628 | 5.0 Pro (finest detail, slow) |" in table


@pytest.mark.parametrize("kind", ["ark", "novita", "highway"])
async def test_the_sections_cost_weight_reaches_the_quota_for_every_kind(
    kind: str, fakes: Fakes, store: ImageStore, db: Database
) -> None:
    """The engine charges ``config.cost_weight``; the synchronous providers used to hide their config (charged 1)."""
    base = fakes[kind].base_url
    common = {**COMMON, "cost_weight": 3}
    provider: Provider
    if kind == "ark":
        provider = ArkProvider(kind, ArkConfig(base_url=f"{base}/api/v3", model=PRO, **common), store)
    elif kind == "novita":
        provider = NovitaProvider(kind, NovitaConfig(base_url=base, model=NOVITA_LITE, **common), store)
    else:
        provider = HighwayProvider(kind, HighwayConfig(base_url=base, model=NOVITA_LITE, **common), store)
    engine = engine_for(db, provider, RecordingSink())
    try:
        job = await enqueue(engine, GenerationRequest(prompt="x", resolution="2K", count=2))
    finally:
        await provider.close()
    assert job.cost_units == 2 * 3


@pytest.mark.parametrize(("explicit", "expected"), [({}, 2), ({"cost_weight": 5}, 5)])
async def test_a_models_own_cost_weight_is_charged_unless_the_section_sets_one(
    explicit: dict[str, int], expected: int, fakes: Fakes, store: ImageStore, db: Database
) -> None:
    """5.0 Pro costs two credits an image by default; a section's own ``cost_weight`` wins. The engine's charge
    is the one place it is computed (``ProviderRegistry.cost_weight``)."""
    config = ArkConfig(base_url=f"{fakes['ark'].base_url}/api/v3", model=PRO, **{**COMMON, **explicit})
    provider = ArkProvider("pro", config, store)
    registry = ProviderRegistry({"pro": provider}, "pro")
    assert registry.cost_weight("pro") == expected
    engine = engine_for(db, provider, RecordingSink())
    try:
        job = await enqueue(engine, GenerationRequest(prompt="x", resolution="2K", count=2))
    finally:
        await provider.close()
    assert job.cost_units == 2 * expected
