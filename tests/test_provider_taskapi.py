"""The ``taskapi`` provider (gccai / APIMart task API, doubao-seedream-4.5) against its strict fake."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.cli import main
from bot.config import TaskApiConfig
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
    SeedreamError,
)
from bot.images import ImageStore, StoredImage
from bot.providers.base import GenerationRequest
from bot.providers.http import NotAccepted
from bot.providers.taskapi import TaskApiProvider
from tests.fakeproviders.common import Fault
from tests.fakeproviders.taskapi import GENERATION_FAILED, OUTPUT_BLOCKED, FakeTaskApi

KEY_ENV = "TASKAPI_TEST_KEY"
Make = Callable[..., TaskApiProvider]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTaskApi]:
    server = FakeTaskApi()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def make(fake: FakeTaskApi, store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Make]:
    """Builds providers pointed at the fake, with tiny poll intervals and retry waits."""
    monkeypatch.setenv(KEY_ENV, FakeTaskApi.api_key)
    built: list[TaskApiProvider] = []

    def build(deadline: float = 30.0, **overrides: Any) -> TaskApiProvider:
        settings = {"base_url": fake.base_url, "api_key_env": KEY_ENV, "poll_interval_seconds": 0.005}
        settings |= {"timeout_seconds": 5.0, "max_attempts": 3} | overrides
        provider = TaskApiProvider(
            "gcc", TaskApiConfig(**settings), store, retry_base_seconds=0.001, task_deadline_seconds=deadline
        )
        built.append(provider)
        return provider

    yield build
    for provider in built:
        await provider.close()


@pytest.fixture
def provider(make: Make) -> TaskApiProvider:
    return make()


async def reference(store: ImageStore, size: tuple[int, int], fmt: str = "PNG") -> StoredImage:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format=fmt)
    return await store.save_bytes(buffer.getvalue())


def pixel_size(image: StoredImage) -> tuple[int, int]:
    with Image.open(image.path) as decoded:
        return decoded.size


def creates(fake: FakeTaskApi) -> list[Any]:
    return [call.body for call in fake.calls_to("POST", "/v1/images/generations")]


# -- generation ---------------------------------------------------------------------------------------
async def test_text_to_image_with_count_fans_out_into_single_image_tasks(
    provider: TaskApiProvider, fake: FakeTaskApi
) -> None:
    request = GenerationRequest(prompt="a koala on a skateboard", aspect_ratio="16:9", count=3)
    submission = await provider.submit(request)
    assert len(submission.task_ids) == 3 and set(submission.task_ids) == set(fake.tasks)
    bodies = creates(fake)
    assert [body["n"] for body in bodies] == [1, 1, 1]
    assert all(type(body["n"]) is int and "image_urls" not in body for body in bodies)
    assert {body["size"] for body in bodies} == {"16:9"} and {body["resolution"] for body in bodies} == {"2K"}
    assert all(body["watermark"] is False and body["optimize_prompt_options"] == {"mode": "fast"} for body in bodies)

    result = await provider.collect(request, submission)
    assert [pixel_size(image) for image in result.images] == [(2560, 1440)] * 3
    assert result.notices == []
    # Polled concurrently: every task was polled before any of them completed.
    polls = [call.path.rsplit("/", 1)[1] for call in fake.calls_to("GET", "/v1/tasks/")]
    assert set(polls[:3]) == set(submission.task_ids)
    assert all(call.query == {"language": "en"} for call in fake.calls_to("GET", "/v1/tasks/"))


@pytest.mark.parametrize(
    ("aspect", "resolution", "expected"),
    [
        ("1:1", "2K", (2048, 2048)),
        ("16:9", "4K", (5404, 3040)),
        ("1:1", "4K", (4096, 4096)),
        ("9:21", "2K", (1296, 3024)),
    ],
)
async def test_result_sizes_follow_the_documented_table(
    provider: TaskApiProvider, aspect: str, resolution: str, expected: tuple[int, int]
) -> None:
    request = GenerationRequest(prompt="a lighthouse", aspect_ratio=aspect, resolution=resolution)
    (image,) = (await provider.generate(request)).images
    assert pixel_size(image) == expected == provider.capabilities.dimensions(request)


async def test_edit_with_references_sends_data_uris_in_one_group_task(
    provider: TaskApiProvider, fake: FakeTaskApi, store: ImageStore
) -> None:
    portrait = await reference(store, (300, 600))
    too_thin = await reference(store, (100, 400), "WEBP")  # webp and ratio 1/4: re-encoded and padded
    request = GenerationRequest(
        prompt="make it blue", aspect_ratio="auto", count=2, enhance=True, references=[portrait, too_thin]
    )
    result = await provider.generate(request)
    (body,) = creates(fake)
    assert body["n"] == 2 and body["size"] == "auto"
    assert body["optimize_prompt_options"] == {"mode": "standard"}
    assert [uri.split(",", 1)[0] for uri in body["image_urls"]] == ["data:image/png;base64"] * 2
    assert "2 separate images" in body["prompt"]
    assert [pixel_size(image) for image in result.images] == [(1440, 2560)] * 2  # 9:16, nearest to the 1:2 ref


async def test_group_shortfall_becomes_a_notice(
    provider: TaskApiProvider, fake: FakeTaskApi, store: ImageStore
) -> None:
    fake.group_shortfall = 1
    ref = await reference(store, (512, 512))
    result = await provider.generate(GenerationRequest(prompt="three cats", count=3, references=[ref]))
    assert len(result.images) == 2
    assert result.notices == [
        "You get 2 of the 3 images you asked for (Seedream decides how many pictures a set needs and made fewer)."
    ]


@pytest.mark.parametrize("style", ["list", "string"])
async def test_result_url_as_string_or_list(
    provider: TaskApiProvider, fake: FakeTaskApi, store: ImageStore, style: str
) -> None:
    fake.url_style = style
    ref = await reference(store, (64, 64), "JPEG")
    result = await provider.generate(GenerationRequest(prompt="two dogs", count=2, references=[ref]))
    assert len({image.sha256 for image in result.images}) == 1 and len(result.images) == 2


async def test_collect_after_a_restart_polls_again_without_a_new_task(
    provider: TaskApiProvider, fake: FakeTaskApi
) -> None:
    request = GenerationRequest(prompt="a fox")
    submission = await provider.submit(request)
    first = await provider.collect(request, submission)
    again = await provider.collect(request, submission.model_validate_json(submission.model_dump_json()))
    assert len(creates(fake)) == 1
    assert [i.sha256 for i in again.images] == [i.sha256 for i in first.images]


# -- capabilities: refused before any quota is spent ----------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"resolution": "1K"}, "choose one of 2K, 4K"),
        ({"aspect_ratio": "auto"}, "needs at least one image"),
        ({"count": 16}, "1 to 15 images"),
        ({"seed": 5}, "does not accept a seed"),
        ({"style": "Cinematic"}, "no style presets"),
        ({"references": 11}, "at most 10 reference images"),
        ({"references": 10, "count": 6}, "at most 15"),
    ],
)
async def test_unservable_requests_are_refused_before_any_call(
    provider: TaskApiProvider, fake: FakeTaskApi, store: ImageStore, changes: dict[str, Any], says: str
) -> None:
    if "references" in changes:
        ref = await reference(store, (32, 32))
        changes = changes | {"references": [ref] * changes["references"]}
    with pytest.raises(InvalidRequest) as caught:
        await provider.generate(GenerationRequest(prompt="x", **changes))
    assert says in caught.value.user_message
    assert fake.calls == []


# -- errors ---------------------------------------------------------------------------------------------
RATE_LIMITED = {"code": 429, "error": {"message": "Rate limit exceeded", "type": "rate_limit_error"}}


async def test_429_exhausted_carries_retry_after(make: Make, fake: FakeTaskApi) -> None:
    fake.inject("create", Fault(429, RATE_LIMITED, {"Retry-After": "7"}))
    with pytest.raises(RateLimited) as caught:
        await make(max_attempts=1).generate(GenerationRequest(prompt="x"))
    assert caught.value.retry_after == 7.0
    assert fake.tasks == {}


async def test_429_is_retried_after_retry_after_and_billed_once(provider: TaskApiProvider, fake: FakeTaskApi) -> None:
    fake.inject("create", Fault(429, RATE_LIMITED, {"Retry-After": "0.2"}), times=2)
    started = time.monotonic()
    result = await provider.generate(GenerationRequest(prompt="x"))
    assert time.monotonic() - started >= 0.4  # waited as told, not the 1 ms backoff
    assert len(result.images) == 1
    assert len(creates(fake)) == 3 and len(fake.tasks) == 1


async def test_500_on_create_is_not_retried(provider: TaskApiProvider, fake: FakeTaskApi) -> None:
    body = {"code": 500, "error": {"message": "Internal server error", "type": "server_error"}}
    fake.inject("create", Fault(500, body), times=3)
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.generate(GenerationRequest(prompt="x"))
    assert not isinstance(caught.value, NotAccepted)
    assert len(creates(fake)) == 1


async def test_503_on_create_is_retried_and_billed_once(provider: TaskApiProvider, fake: FakeTaskApi) -> None:
    fake.inject("create", Fault(503, {"code": 503, "error": {"message": "busy", "type": "server_error"}}), times=2)
    result = await provider.generate(GenerationRequest(prompt="x"))
    assert len(result.images) == 1
    assert len(creates(fake)) == 3 and len(fake.tasks) == 1


async def test_5xx_burst_on_poll_is_retried(provider: TaskApiProvider, fake: FakeTaskApi) -> None:
    fake.inject("poll", Fault(502), times=2)
    result = await provider.generate(GenerationRequest(prompt="x"))
    assert len(result.images) == 1 and len(fake.tasks) == 1


async def test_hang_on_create_times_out_without_a_second_create(make: Make, fake: FakeTaskApi) -> None:
    fake.inject("create", Fault(hang_seconds=1.0))
    with pytest.raises(ProviderTimeout) as caught:
        await make(timeout_seconds=0.2).generate(GenerationRequest(prompt="x"))
    assert "not repeated" in caught.value.user_message
    assert len(creates(fake)) == 1


async def test_hang_on_poll_is_retried(make: Make, fake: FakeTaskApi) -> None:
    fake.inject("poll", Fault(hang_seconds=1.0))
    result = await make(timeout_seconds=0.2).generate(GenerationRequest(prompt="x"))
    assert len(result.images) == 1


async def test_task_that_never_finishes_times_out(make: Make, fake: FakeTaskApi) -> None:
    fake.polls_before_done = 10_000
    with pytest.raises(ProviderTimeout) as caught:
        await make(deadline=0.1).generate(GenerationRequest(prompt="x"))
    assert "took too long" in caught.value.user_message


async def test_malformed_json_on_create_is_not_retried(provider: TaskApiProvider, fake: FakeTaskApi) -> None:
    fake.inject("create", Fault(malformed=True))
    with pytest.raises(ProviderUnavailable, match="malformed"):
        await provider.generate(GenerationRequest(prompt="x"))
    assert len(creates(fake)) == 1


async def test_malformed_json_on_poll_is_retried(provider: TaskApiProvider, fake: FakeTaskApi) -> None:
    fake.inject("poll", Fault(malformed=True), times=2)
    assert len((await provider.generate(GenerationRequest(prompt="x"))).images) == 1


async def test_moderation_at_create(provider: TaskApiProvider, fake: FakeTaskApi) -> None:
    with pytest.raises(ContentBlocked) as caught:
        await provider.generate(GenerationRequest(prompt="something [blocked]"))
    assert "refused the prompt" in caught.value.user_message
    assert fake.tasks == {}


async def test_moderation_of_the_output(provider: TaskApiProvider, fake: FakeTaskApi) -> None:
    fake.task_outcomes.append(OUTPUT_BLOCKED)
    with pytest.raises(ContentBlocked) as caught:
        await provider.generate(GenerationRequest(prompt="x"))
    assert "blocked the generated image" in caught.value.user_message


async def test_failed_task(provider: TaskApiProvider, fake: FakeTaskApi) -> None:
    fake.task_outcomes.append(GENERATION_FAILED)
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.generate(GenerationRequest(prompt="x"))
    assert "could not make this image" in caught.value.user_message
    assert "generation_failed" in str(caught.value.detail)


async def test_fan_out_keeps_the_tasks_that_succeeded(provider: TaskApiProvider, fake: FakeTaskApi) -> None:
    fake.task_outcomes.extend([OUTPUT_BLOCKED, None, GENERATION_FAILED, None])
    result = await provider.generate(GenerationRequest(prompt="x", count=4))
    assert len(result.images) == 2
    (notice,) = result.notices
    assert notice.startswith("You get 2 of the 4 images you asked for")
    assert "moderation blocked the generated image" in notice and "could not make this image" in notice


async def test_fan_out_where_every_task_fails_raises_the_mapped_error(
    provider: TaskApiProvider, fake: FakeTaskApi
) -> None:
    fake.task_outcomes.extend([OUTPUT_BLOCKED] * 2)
    with pytest.raises(ContentBlocked):
        await provider.generate(GenerationRequest(prompt="x", count=2))


async def test_fan_out_with_a_create_that_failed(provider: TaskApiProvider, fake: FakeTaskApi) -> None:
    fake.inject("create", Fault(500, {"code": 500, "error": {"message": "oops", "type": "server_error"}}))
    result = await provider.generate(GenerationRequest(prompt="x", count=3))
    assert len(result.images) == 2 and len(fake.tasks) == 2 and len(creates(fake)) == 3
    assert result.notices == [
        "You get 2 of the 3 images you asked for (The image provider had a problem; please try again later)."
    ]


async def test_out_of_credit(provider: TaskApiProvider, fake: FakeTaskApi) -> None:
    fake.balance = 0
    with pytest.raises(OutOfCredit):
        await provider.generate(GenerationRequest(prompt="x"))
    assert fake.tasks == {}


async def test_bad_key(make: Make, fake: FakeTaskApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "wrong-key")
    with pytest.raises(BadApiKey):
        await make().generate(GenerationRequest(prompt="x"))
    assert len(creates(fake)) == 1


async def test_missing_key_fails_before_any_call(
    make: Make, fake: FakeTaskApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(BadApiKey) as caught:
        await make().generate(GenerationRequest(prompt="x"))
    assert "no API key configured" in caught.value.user_message
    assert fake.calls == []


async def test_expired_result_url(provider: TaskApiProvider, fake: FakeTaskApi) -> None:
    request = GenerationRequest(prompt="x")
    submission = await provider.submit(request)
    await provider.collect(request, submission)
    fake.expire_all()  # a restart a day later: the task still answers, its link is gone
    with pytest.raises(ResultExpired):
        await provider.collect(request, submission)


async def test_unknown_error_body_is_unavailable_and_logged_without_the_key(
    provider: TaskApiProvider, fake: FakeTaskApi, caplog: pytest.LogCaptureFixture
) -> None:
    fake.inject("create", Fault(418, {"weird": f"teapot says {FakeTaskApi.api_key}"}))
    with caplog.at_level(logging.WARNING), pytest.raises(ProviderUnavailable):
        await provider.generate(GenerationRequest(prompt="x"))
    assert "teapot says ***" in caplog.text
    assert FakeTaskApi.api_key not in caplog.text


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            402,
            {"code": 402, "error": {"message": "Insufficient account balance", "type": "insufficient_balance"}},
            OutOfCredit,
        ),
        (403, {"error": "余额不足"}, OutOfCredit),
        (401, {"message": "Unauthorized"}, BadApiKey),
        (400, {"error": {"code": "InputImageSensitiveContentDetected", "message": "image"}}, ContentBlocked),
        (400, {"code": 400, "msg": "content violates our moderation policy"}, ContentBlocked),
        (
            400,
            {"code": 400, "error": {"message": "n must be a number", "type": "invalid_request_error"}},
            ProviderRejected,
        ),
        (429, None, RateLimited),
        (503, "<html>bad gateway</html>", NotAccepted),
        (500, {"code": 500, "error": {"message": "upstream error", "type": "server_error"}}, ProviderUnavailable),
        (404, {"unexpected": ["shape"]}, ProviderUnavailable),
        (400, [1, 2, 3], ProviderUnavailable),
    ],
)
def test_error_bodies_map_onto_the_taxonomy(
    provider: TaskApiProvider, status: int, body: Any, expected: type[SeedreamError]
) -> None:
    error = provider.map_error(status, body, str(body), {"Retry-After": "3"})
    assert type(error) is expected
    assert error.user_message and FakeTaskApi.api_key not in error.user_message


async def test_http_200_envelope_with_an_error_code(provider: TaskApiProvider, fake: FakeTaskApi) -> None:
    fake.inject("create", Fault(200, {"code": 402, "error": {"message": "Insufficient balance", "type": "billing"}}))
    with pytest.raises(OutOfCredit):
        await provider.generate(GenerationRequest(prompt="x"))


# -- the fake itself is strict ----------------------------------------------------------------------------
GOOD = {"model": "doubao-seedream-4-5", "prompt": "a cat", "size": "1:1", "resolution": "2K", "n": 1}


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"n": "1"}, "n must be a number"),
        ({"n": 2}, "cannot generate multiple images"),
        ({"resolution": "1K"}, "does not support 1K"),
        ({"size": "2048x2048"}, "size must be one of"),
        ({"model": "seedream-4-5"}, "not supported"),
        ({"size": "auto"}, "requires image_urls"),
        ({"image_urls": ["https://example.com/a.png"]}, "failed to download"),
        ({"image_urls": ["data:image/webp;base64,AAAA"]}, "data URI"),
        ({"seed": 3}, "Unknown parameter"),
    ],
)
async def test_fake_rejects_what_the_api_rejects(fake: FakeTaskApi, changes: dict[str, Any], says: str) -> None:
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {fake.api_key}"}
        url = f"{fake.base_url}/v1/images/generations"
        async with session.post(url, json=GOOD | changes, headers=headers) as response:
            assert response.status == 400
            assert says in (await response.json())["error"]["message"]
        async with session.post(url, json=GOOD, headers=headers) as response:
            assert response.status == 200


# -- through the CLI ----------------------------------------------------------------------------------------
@contextmanager
def fake_in_thread() -> Iterator[FakeTaskApi]:
    """The CLI runs its own event loop, so the fake serves from another thread's loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = FakeTaskApi()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_cli_generates_text_to_image_and_edits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(KEY_ENV, FakeTaskApi.api_key)
    Image.new("RGB", (600, 300), "red").save(tmp_path / "ref.png")
    with fake_in_thread() as server:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[generation]\ndefault_provider = "gcc"\n[storage]\ndatabase = "db.sqlite3"\ndata_dir = "data"\n'
            f'[providers.gcc]\nkind = "taskapi"\nbase_url = "{server.base_url}"\napi_key_env = "{KEY_ENV}"\n'
            "poll_interval_seconds = 0.005\n"
        )
        assert main(["generate", "a koala", "--count", "2", "--aspect", "16:9", "--config", str(config)]) == 0
        text_files = capsys.readouterr().out.split()
        args = ["generate", "make it blue", "--image", "ref.png", "--aspect", "auto", "--resolution", "4K"]
        assert main([*args, "--count", "2", "--config", str(config), "--out", "edits"]) == 0
        edit_files = capsys.readouterr().out.split()
        bodies = [call.body for call in server.calls_to("POST", "/v1/images/generations")]
    assert [pixel_size_of(tmp_path / name) for name in text_files] == [(2560, 1440)] * 2
    assert [pixel_size_of(tmp_path / name) for name in edit_files] == [(5404, 3040)] * 2  # 16:9, nearest to the 2:1 ref
    assert [body["n"] for body in bodies] == [1, 1, 2]
    assert "image_urls" in bodies[2]


def pixel_size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size
