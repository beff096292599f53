"""Leonardo provider against the strict fake: sizes, references (uploaded and GENERATED), errors, retries, CLI."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl
from PIL import Image

from bot.config import LeonardoConfig
from bot.errors import (
    BadApiKey,
    ContentBlocked,
    InvalidRequest,
    OutOfCredit,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ResultExpired,
    SeedreamError,
)
from bot.images import ImageStore
from bot.providers.base import GenerationRequest, Submission
from bot.providers.leonardo import LeonardoProvider, leonardo_error
from tests.fakeproviders.common import Fault, png_bytes
from tests.fakeproviders.leonardo import MODERATION_MESSAGE, NSFW_MARKER, FakeLeonardo

KEY_ENV = "LEONARDO_TEST_KEY"
MakeProvider = Callable[..., LeonardoProvider]


@pytest.fixture
async def fake() -> AsyncIterator[FakeLeonardo]:
    server = FakeLeonardo()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "data", max_pixels=50_000_000, max_bytes=60 * 1024 * 1024)


@pytest.fixture
async def make_provider(
    fake: FakeLeonardo, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MakeProvider]:
    monkeypatch.setenv(KEY_ENV, fake.api_key)
    made: list[LeonardoProvider] = []

    def make(name: str = "leo", max_wait_seconds: float = 30.0, **config: Any) -> LeonardoProvider:
        settings = {"timeout_seconds": 5.0, "poll_interval_seconds": 0.01, "max_attempts": 3, **config}
        cfg = LeonardoConfig(base_url=fake.base_url, api_key_env=KEY_ENV, **settings)
        provider = LeonardoProvider(name, cfg, store, retry_base_seconds=0.01, max_wait_seconds=max_wait_seconds)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


@contextlib.contextmanager
def raises_telling(error: type[SeedreamError], text: str) -> Iterator[None]:
    """Expect ``error`` and check what the member is told (not the log detail)."""
    with pytest.raises(error) as caught:
        yield
    assert text in caught.value.user_message, caught.value.user_message


def create_bodies(fake: FakeLeonardo) -> list[dict[str, Any]]:
    return [call.body for call in fake.calls_to("POST", "/v2/generations")]


def webp_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="WEBP")
    return buffer.getvalue()


async def test_text_to_image_with_count_and_aspect(fake: FakeLeonardo, make_provider: MakeProvider) -> None:
    fake.pending_polls = 2
    provider = make_provider()
    request = GenerationRequest(prompt="a koala on a skateboard", aspect_ratio="16:9", resolution="2K", count=2)

    result = await provider.generate(request)

    assert [(img.width, img.height) for img in result.images] == [(2560, 1440), (2560, 1440)]
    assert all(img.path.is_file() and img.provider == "leo" for img in result.images)
    generation = next(iter(fake.generations.values()))
    assert {img.provider_image_id for img in result.images} == {i["id"] for i in generation.images}
    assert create_bodies(fake) == [
        {
            "model": "seedream-4.5",
            "public": False,
            "parameters": {
                "prompt": "a koala on a skateboard",
                "width": 2560,
                "height": 1440,
                "quantity": 2,
                "prompt_enhance": "OFF",
            },
        }
    ]
    assert len(fake.calls_to("GET", "/v1/generations/")) == 3  # PENDING, PENDING, COMPLETE
    assert fake.calls_to("POST", "/v2/generations")[0].headers["Authorization"] == "Bearer test-key"


async def test_style_seed_enhance_and_flat_create_answer(fake: FakeLeonardo, make_provider: MakeProvider) -> None:
    fake.flat_create_response = True
    provider = make_provider(model="seedream-4.0")
    request = GenerationRequest(
        prompt="fox portrait", aspect_ratio="1:1", resolution="1K", seed=2_147_483_638, style="Cinematic", enhance=True
    )

    result = await provider.generate(request)

    assert [(img.width, img.height) for img in result.images] == [(1024, 1024)]
    params = create_bodies(fake)[0]["parameters"]
    assert params["style_ids"] == ["a5632c7c-ddbb-4e2f-ba34-8456ab3ac436"]
    assert params["seed"] == 2_147_483_638
    assert params["prompt_enhance"] == "ON"
    assert create_bodies(fake)[0]["model"] == "seedream-4.0"


@pytest.mark.parametrize(
    ("model", "request_fields", "says"),
    [
        ("seedream-4.5", {"resolution": "1K"}, "choose one of 2K, 4K"),
        ("seedream-4.5", {"count": 9}, "1 to 8 images"),
        ("seedream-4.0", {"seed": 2_147_483_639}, "between 0 and 2147483638"),
        ("seedream-4.0", {"style": "Anime"}, "Cinematic, Creative, Dynamic"),
        ("seedream-4.5", {"aspect_ratio": "auto"}, "needs at least one image"),
    ],
)
async def test_unservable_requests_are_refused_before_any_call(
    fake: FakeLeonardo, make_provider: MakeProvider, model: str, request_fields: dict[str, Any], says: str
) -> None:
    provider = make_provider(model=model)
    with raises_telling(InvalidRequest, says):
        await provider.generate(GenerationRequest(prompt="x", **request_fields))
    assert fake.calls == []


async def test_seven_references_refused_before_any_upload(
    fake: FakeLeonardo, make_provider: MakeProvider, store: ImageStore
) -> None:
    refs = [await store.save_bytes(png_bytes(64, 64)) for _ in range(7)]
    with raises_telling(InvalidRequest, "at most 6 reference images"):
        await make_provider().generate(GenerationRequest(prompt="x", references=refs))
    assert fake.calls == []


async def test_every_size_we_map_is_accepted_by_the_fake(fake: FakeLeonardo, make_provider: MakeProvider) -> None:
    """Each aspect × resolution tier of each model lands inside the window the fake enforces."""
    for model, resolutions in (("seedream-4.0", ("1K", "2K", "4K")), ("seedream-4.5", ("2K", "4K"))):
        provider = make_provider(model=model)
        for aspect in ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9", "9:21"):
            for resolution in resolutions:
                request = GenerationRequest(prompt="size", aspect_ratio=aspect, resolution=resolution)
                await provider.submit(request)
    assert fake.accepted_creates == 9 * 5


async def test_edit_uploads_new_references_and_reuses_generated_ones(
    fake: FakeLeonardo, make_provider: MakeProvider, store: ImageStore
) -> None:
    provider = make_provider(reference_strength="HIGH")
    earlier = (await provider.generate(GenerationRequest(prompt="first picture"))).images[0]
    png_ref = await store.save_bytes(png_bytes(640, 480))
    webp_ref = await store.save_bytes(webp_bytes(300, 500))
    request = GenerationRequest(prompt="combine them", aspect_ratio="auto", references=[png_ref, webp_ref, earlier])

    result = await provider.generate(request)

    assert (result.images[0].width, result.images[0].height) == (2304, 1728)  # auto follows the 4:3 first ref
    refs = create_bodies(fake)[1]["parameters"]["guidances"]["image_reference"]
    uploaded = fake.uploaded_images()
    assert [(r["image"]["type"], r["strength"]) for r in refs] == [
        ("UPLOADED", "HIGH"),
        ("UPLOADED", "HIGH"),
        ("GENERATED", "HIGH"),
    ]
    assert {r["image"]["id"] for r in refs[:2]} == {i.id for i in uploaded}
    assert refs[2]["image"]["id"] == earlier.provider_image_id
    assert sorted(i.extension for i in uploaded) == ["png", "png"]  # the WebP was re-encoded
    assert len(fake.calls_to("POST", "/v1/init-image")) == 2
    s3_calls = fake.calls_to("POST", "/s3/upload")
    assert len(s3_calls) == 2 and all("Authorization" not in c.headers for c in s3_calls)


async def test_generated_reference_from_another_account_falls_back_to_upload(
    fake: FakeLeonardo, make_provider: MakeProvider, store: ImageStore
) -> None:
    foreign = await store.save_bytes(png_bytes(512, 512))
    foreign = foreign.model_copy(update={"provider": "leo", "provider_image_id": "not-known-to-this-account"})

    result = await make_provider().generate(GenerationRequest(prompt="edit", references=[foreign]))

    assert len(result.images) == 1
    assert [b["parameters"]["guidances"]["image_reference"][0]["image"]["type"] for b in create_bodies(fake)] == [
        "GENERATED",
        "UPLOADED",
    ]
    assert fake.accepted_creates == 1


async def test_presigned_upload_is_retried_on_s3_5xx(
    fake: FakeLeonardo, make_provider: MakeProvider, store: ImageStore
) -> None:
    fake.inject("s3", Fault(status=500))
    ref = await store.save_bytes(png_bytes(200, 200))
    result = await make_provider().generate(GenerationRequest(prompt="edit", references=[ref]))
    assert len(result.images) == 1 and len(fake.calls_to("POST", "/s3/upload")) == 2


async def test_fake_s3_refuses_the_auth_header_and_missing_fields(fake: FakeLeonardo) -> None:
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fake.base_url}/v1/init-image", json={"extension": "png"}, headers=headers) as r:
            slot = (await r.json())["uploadInitImage"]
        fields = json.loads(slot["fields"])

        def form(skip: str = "") -> aiohttp.FormData:
            data = aiohttp.FormData()
            for key, value in fields.items():
                if key != skip:
                    data.add_field(key, value)
            data.add_field("file", png_bytes(8, 8), filename="x.png", content_type="image/png")
            return data

        upload = yarl.URL(slot["url"], encoded=True)  # the presigned link exactly as given
        async with session.post(upload, data=form(), headers=headers) as r:
            assert r.status == 403
        async with session.post(upload, data=form(skip="Policy")) as r:
            assert r.status == 403
        async with session.post(slot["url"], data=form()) as r:  # re-quoted by aiohttp: signature broken
            assert r.status == 403 and "SignatureDoesNotMatch" in await r.text()
        async with session.post(upload, data=form()) as r:
            assert r.status == 204


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(401, {"error": "Authentication hook unauthorized this request", "code": "access-denied"}), BadApiKey),
        (Fault(400, {"error": "Service Error", "path": "$", "code": "unexpected"}), ProviderUnavailable),
        (Fault(500), ProviderUnavailable),
    ],
)
async def test_create_errors_are_not_retried(
    fake: FakeLeonardo, make_provider: MakeProvider, fault: Fault, error: type[Exception]
) -> None:
    fake.inject("create", fault, times=3)
    with pytest.raises(error):
        await make_provider().generate(GenerationRequest(prompt="x"))
    assert len(fake.calls_to("POST", "/v2/generations")) == 1


async def test_bad_key_from_the_real_handler(
    fake: FakeLeonardo, make_provider: MakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "wrong-key")
    with pytest.raises(BadApiKey) as caught:
        await make_provider().generate(GenerationRequest(prompt="x"))
    assert "wrong-key" not in caught.value.user_message


async def test_moderation_refusal_is_content_blocked(fake: FakeLeonardo, make_provider: MakeProvider) -> None:
    with raises_telling(ContentBlocked, MODERATION_MESSAGE):
        await make_provider().generate(GenerationRequest(prompt="lots of gore"))
    assert fake.accepted_creates == 0


async def test_out_of_credit(fake: FakeLeonardo, make_provider: MakeProvider) -> None:
    fake.credits = 27
    with pytest.raises(OutOfCredit):
        await make_provider().generate(GenerationRequest(prompt="x"))


async def test_too_many_references_answer_maps_to_invalid_request(
    fake: FakeLeonardo, make_provider: MakeProvider, store: ImageStore
) -> None:
    """If capabilities were bypassed, Leonardo's own 'Too many images' still tells the user the limit."""
    refs = [await store.save_bytes(png_bytes(32, 32)) for _ in range(7)]
    provider = make_provider()
    with raises_telling(InvalidRequest, "at most 6 reference images"):
        await provider._create(GenerationRequest(prompt="x", references=refs), 2048, 2048, reuse_generated=True)
    assert fake.accepted_creates == 0


async def test_fake_rejects_unknown_fields_with_a_list_body(fake: FakeLeonardo) -> None:
    body = {"model": "seedream-4.5", "parameters": {"prompt": "x", "negative_prompt": "y"}}
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    url = f"{fake.base_url}/v2/generations"
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as response:
        assert response.status == 400
        answer = await response.json()
    assert answer[0]["extensions"]["details"]["message"] == "Unexpected variable negative_prompt"
    error = leonardo_error(400, answer, "", {})
    assert isinstance(error, InvalidRequest) and "Unexpected variable negative_prompt" in error.user_message


async def test_rate_limit_and_503_on_create_are_retried_without_double_billing(
    fake: FakeLeonardo, make_provider: MakeProvider
) -> None:
    fake.inject("create", Fault(429, {"error": "Too Many Requests"}, headers={"Retry-After": "0"}))
    fake.inject("create", Fault(503))
    result = await make_provider().generate(GenerationRequest(prompt="x"))
    assert len(result.images) == 1
    assert len(fake.calls_to("POST", "/v2/generations")) == 3
    assert fake.accepted_creates == 1


async def test_rate_limit_exhausted_reports_retry_after(fake: FakeLeonardo, make_provider: MakeProvider) -> None:
    fake.inject("create", Fault(429, headers={"Retry-After": "0"}), times=3)
    with pytest.raises(RateLimited) as caught:
        await make_provider().generate(GenerationRequest(prompt="x"))
    assert caught.value.retry_after == 0


async def test_create_timeout_fails_without_creating_again(fake: FakeLeonardo, make_provider: MakeProvider) -> None:
    fake.inject("create", Fault(hang_seconds=1.0), times=3)
    with pytest.raises(ProviderTimeout) as caught:
        await make_provider(timeout_seconds=0.2).generate(GenerationRequest(prompt="x"))
    assert "not charged twice" in caught.value.user_message and not caught.value.retryable
    assert len(fake.calls_to("POST", "/v2/generations")) == 1


async def test_polls_retry_5xx_and_malformed_json(fake: FakeLeonardo, make_provider: MakeProvider) -> None:
    fake.inject("poll", Fault(502))
    fake.inject("poll", Fault(malformed=True))
    result = await make_provider().generate(GenerationRequest(prompt="x"))
    assert len(result.images) == 1 and fake.accepted_creates == 1


async def test_failed_generation(fake: FakeLeonardo, make_provider: MakeProvider) -> None:
    fake.fail_generations = True
    with raises_telling(ProviderUnavailable, "could not finish"):
        await make_provider().generate(GenerationRequest(prompt="x"))


async def test_generation_that_never_finishes_times_out(fake: FakeLeonardo, make_provider: MakeProvider) -> None:
    fake.pending_polls = 10_000
    with raises_telling(ProviderTimeout, "taking too long"):
        await make_provider(max_wait_seconds=0.05).generate(GenerationRequest(prompt="x"))


async def test_unknown_generation_is_reported_expired(make_provider: MakeProvider) -> None:
    with pytest.raises(ResultExpired):
        await make_provider().collect(GenerationRequest(prompt="x"), Submission(task_ids=["no-such-generation"]))


async def test_result_link_gone_is_result_expired(fake: FakeLeonardo, make_provider: MakeProvider) -> None:
    fake.inject("files", Fault(404))
    with pytest.raises(ResultExpired):
        await make_provider().generate(GenerationRequest(prompt="x"))


async def test_flagged_outputs_are_withheld_with_a_notice(fake: FakeLeonardo, make_provider: MakeProvider) -> None:
    result = await make_provider().generate(GenerationRequest(prompt=f"two cats {NSFW_MARKER}", count=2))
    assert len(result.images) == 1
    assert result.notices == ["1 of 2 images were flagged by Leonardo and withheld."]
    with pytest.raises(ContentBlocked):
        await make_provider().generate(GenerationRequest(prompt=f"one cat {NSFW_MARKER}"))


async def test_collect_after_restart_resumes_without_a_new_create(
    fake: FakeLeonardo, make_provider: MakeProvider
) -> None:
    request = GenerationRequest(prompt="persisted", aspect_ratio="9:16")
    saved = (await make_provider().submit(request)).model_dump_json()

    result = await make_provider().collect(request, Submission.model_validate_json(saved))

    assert [(i.width, i.height) for i in result.images] == [(1440, 2560)]
    assert fake.accepted_creates == 1


async def test_cli_generate_with_reference(fake: FakeLeonardo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.cli import main

    monkeypatch.setenv(KEY_ENV, fake.api_key)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[storage]
database = "{tmp_path / "bot.sqlite3"}"
data_dir = "{tmp_path / "data"}"

[generation]
default_provider = "leo"

[providers.leo]
kind = "leonardo"
base_url = "{fake.base_url}"
api_key_env = "{KEY_ENV}"
model = "seedream-4.0"
poll_interval_seconds = 0.01
"""
    )
    reference = tmp_path / "ref.png"
    reference.write_bytes(png_bytes(320, 240))
    out = tmp_path / "out"
    argv = ["generate", "a lighthouse", "--config", str(config), "--aspect", "3:2", "--resolution", "1K"]
    argv += ["--count", "2", "--image", str(reference), "--out", str(out)]

    code = await asyncio.to_thread(main, argv)  # main runs its own loop; ours keeps serving the fake

    assert code == 0
    files = sorted(out.iterdir())
    assert len(files) == 2
    assert all(Image.open(f).size == (1248, 832) for f in files)
    assert len(fake.uploaded_images()) == 1 and fake.accepted_creates == 1
