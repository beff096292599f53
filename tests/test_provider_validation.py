"""Provider limits and provider validation, through the real job engine, ledger and each provider's fake.

An over-long prompt is refused before anything is queued or charged, naming the limit; a request the
provider refuses as invalid fails once (no retry), is charged nothing, and tells the member what to
change without suggesting to try again.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.config import QuotaSection
from bot.errors import InvalidRequest, ProviderRejected
from bot.images import ImageStore
from bot.jobs import JobState
from bot.providers.base import Capabilities, GenerationRequest
from bot.providers.leonardo import LeonardoProvider
from bot.providers.taskapi import TaskApiProvider
from bot.quota import Ledger
from bot.storage import Database
from tests.fakeproviders.common import Fault
from tests.fakeproviders.leonardo import PROMPT_TOO_LONG_MESSAGE, FakeLeonardo
from tests.fakeproviders.novita import FakeNovitaServer
from tests.provider_helpers import KEY_ENV, REMOTE_KINDS, engine_for, enqueue, fake_for, provider_for
from tests.test_jobs import RecordingSink, balance, wait_state

#: Where each fake takes a create, and what the provider's documents say a validation refusal looks like.
CREATE_PATH = {
    "leonardo": "/v2/generations",
    "novita": "/v3/",
    "highway": "/v3/",
    "ark": "/api/v3/images/generations",
    "taskapi": "/v1/images/generations",
}
VALIDATION_REFUSALS: dict[str, Fault] = {
    "leonardo": Fault(
        400,
        [
            {
                "message": PROMPT_TOO_LONG_MESSAGE,
                "extensions": {"code": "VALIDATION_ERROR", "details": {"message": PROMPT_TOO_LONG_MESSAGE}},
            }
        ],
    ),
    "novita": Fault(
        400, {"code": 400, "reason": "INVALID_REQUEST_BODY", "message": "prompt is too long", "metadata": {}}
    ),
    "highway": Fault(
        400, {"error": {"code": "InvalidParameter", "message": "the prompt is too long", "type": "BadRequest"}}
    ),
    "ark": Fault(
        400,
        {
            "error": {
                "code": "InvalidParameter",
                "message": "The parameter `prompt` specified in the request is not valid. Request ID: 0217",
                "param": "prompt",
                "type": "BadRequest",
            }
        },
    ),
    "taskapi": Fault(400, {"code": 400, "error": {"message": "prompt is too long", "type": "invalid_request_error"}}),
}


# -- the prompt limit -------------------------------------------------------------------------------------
async def test_over_long_prompt_is_refused_before_anything_is_queued(db: Database, store: ImageStore) -> None:
    async with FakeLeonardo() as leonardo:
        provider = provider_for("leonardo", leonardo, store)
        sink = RecordingSink()
        engine = engine_for(db, provider, sink)
        await engine.start()
        with pytest.raises(InvalidRequest) as caught:
            await enqueue(engine, GenerationRequest(prompt="a" * 10_234))
        await engine.stop()
        await provider.close()

    assert (
        caught.value.user_message == "Your prompt is 10,234 characters; leonardo takes at most 9999. Please shorten it."
    )
    assert not isinstance(caught.value, ProviderRejected)  # our own check, not the provider's answer
    assert leonardo.calls == []
    assert await db.fetchall("SELECT * FROM jobs") == []
    assert await db.fetchall("SELECT * FROM quota_ledger") == []


async def test_the_limit_counts_the_stripped_prompt_and_allows_exactly_the_maximum(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeLeonardo() as leonardo:
        monkeypatch.setenv(KEY_ENV, leonardo.api_key)
        provider = provider_for("leonardo", leonardo, store)
        result = await provider.generate(GenerationRequest(prompt="  " + "b" * 9999 + "\n"))
        with pytest.raises(InvalidRequest, match="10,000 characters; leonardo takes at most 9999"):
            provider.capabilities.check(GenerationRequest(prompt="b" * 10_000))
        await provider.close()
    assert len(result.images) == 1
    assert len(leonardo.generations) == 1


async def test_providers_that_only_recommend_a_length_send_the_prompt_and_say_so(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Novita documents "at most 600 English words" as advice, not a limit: the prompt goes out whole."""
    long_prompt = " ".join(["koala"] * 601)
    async with FakeNovitaServer() as novita:
        monkeypatch.setenv(KEY_ENV, novita.api_key)
        provider = provider_for("novita", novita, store)
        assert provider.capabilities.max_prompt_chars is None
        long_result = await provider.generate(GenerationRequest(prompt=long_prompt))
        short_result = await provider.generate(GenerationRequest(prompt=" ".join(["koala"] * 600)))
        await provider.close()
    assert novita.billed[0]["prompt"] == long_prompt
    assert long_result.notices == [
        "Your prompt is longer than novita recommends (about 600 English words or 300 Chinese characters); "
        "the model may give the rest less weight."
    ]
    assert short_result.notices == []


def test_capabilities_refuse_a_size_outside_the_documented_window() -> None:
    caps = Capabilities(
        kind="k",
        model="m",
        aspect_ratios=("1:1", "21:9"),
        resolutions=("1K", "2K"),
        max_count=1,
        max_references=0,
        output_pixels=(2_000_000, 5_000_000),
        output_sides=(32, 3000),
    )
    caps.check(GenerationRequest(prompt="x", resolution="2K"))  # 2048×2048
    with pytest.raises(InvalidRequest, match="1024×1024 is outside what k \\(m\\) renders"):
        caps.check(GenerationRequest(prompt="x", resolution="1K"))
    with pytest.raises(InvalidRequest, match="per side"):
        caps.check(GenerationRequest(prompt="x", resolution="2K", aspect_ratio="21:9"))  # 3024 px wide
    scaling = caps.model_copy(update={"scale_up_to_min_pixels": True})
    assert scaling.dimensions(GenerationRequest(prompt="x", resolution="1K")) == (1424, 1424)
    scaling.check(GenerationRequest(prompt="x", resolution="1K"))


# -- the provider's own validation ---------------------------------------------------------------------------
async def test_leonardo_validation_error_from_the_fake_is_provider_rejected(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past our check (as if the limit changed), Leonardo's own VALIDATION_ERROR answer is said plainly."""
    async with FakeLeonardo() as leonardo:
        monkeypatch.setenv(KEY_ENV, leonardo.api_key)
        provider = provider_for("leonardo", leonardo, store)
        assert isinstance(provider, LeonardoProvider)
        with pytest.raises(ProviderRejected) as caught:
            await provider._create(GenerationRequest(prompt="c" * 10_000), 2048, 2048, reuse_generated=True)
        await provider.close()
    message = caught.value.user_message
    assert message.startswith("Leonardo refused the request as invalid (")
    assert "at most 9999 character" in message and "Change the prompt" in message
    assert "try again" not in message.lower()
    assert len(leonardo.calls_to("POST", "/v2/generations")) == 1 and leonardo.accepted_creates == 0


@pytest.mark.parametrize("kind", REMOTE_KINDS)
async def test_a_provider_validation_refusal_fails_once_says_what_to_change_and_charges_nothing(
    kind: str, db: Database, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = RecordingSink()
    ledger = Ledger(db, QuotaSection())
    async with fake_for(kind) as fake:
        monkeypatch.setenv(KEY_ENV, fake.api_key)
        fake.inject("create", VALIDATION_REFUSALS[kind], times=5)
        provider = provider_for(kind, fake, store)
        engine = engine_for(db, provider, sink)
        await engine.start()
        job = await enqueue(engine, GenerationRequest(prompt="a koala", resolution="2K"), user=5, guild=9)
        failed = await wait_state(db, job.id, JobState.FAILED, JobState.DONE)
        await engine.stop()
        await provider.close()

    assert failed.state == JobState.FAILED
    assert (failed.error or "").startswith("provider_rejected:")
    assert await balance(db, job.id) == {"reserve": job.cost_units, "refund": job.cost_units}
    assert await ledger.used(9, 5) == 0, "the member is charged nothing"
    ((_, message),) = sink.failures
    assert "refused the request as invalid" in message and "the same request would be refused again" in message
    assert "try again" not in message.lower() and "http" not in message.lower()
    assert len([c for c in fake.calls if c.method == "POST" and c.path.startswith(CREATE_PATH[kind])]) == 1


async def test_a_validation_refusal_while_polling_is_not_retried(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polls are retried on transient faults; a refusal as invalid is not one of them."""
    async with fake_for("taskapi") as taskapi:
        monkeypatch.setenv(KEY_ENV, taskapi.api_key)
        provider = provider_for("taskapi", taskapi, store)
        assert isinstance(provider, TaskApiProvider)
        taskapi.inject("poll", VALIDATION_REFUSALS["taskapi"], times=3)
        submission = await provider.submit(GenerationRequest(prompt="x"))
        with pytest.raises(ProviderRejected):
            await provider.collect(GenerationRequest(prompt="x"), submission)
        await provider.close()
    assert len(taskapi.calls_to("GET", "/v1/tasks/")) == 1


@pytest.mark.parametrize(("status", "reason"), [(413, "too large"), (422, "could not process")])
async def test_unrecognised_413_and_422_answers_are_refusals_of_the_request(
    status: int, reason: str, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    body: Any = {"unexpected": "shape"}
    async with FakeNovitaServer() as novita:
        monkeypatch.setenv(KEY_ENV, novita.api_key)
        novita.inject("create", Fault(status, body), times=3)
        provider = provider_for("novita", novita, store)
        try:
            with pytest.raises(ProviderRejected) as caught:
                await provider.generate(GenerationRequest(prompt="x"))
        finally:
            await provider.close()
    assert reason in caught.value.user_message and "try again" not in caught.value.user_message
    assert len(novita.calls_to("POST", "/v3/")) == 1
