"""The asynchronous task API of gccai.heqingsong.uk (an APIMart white label) for Seedream 4.5 and 5.0 Lite.

``POST {base}/v1/images/generations`` answers ``{"code": 200, "data": [{"status": "submitted", "task_id": …}]}``;
``GET {base}/v1/tasks/{task_id}?language=en`` reports ``pending|processing|completed|failed|cancelled`` and,
once completed, ``result.images[].url`` (a string or a list of strings) valid for 24 hours, so results
are downloaded as soon as a task completes.

Text-only requests cannot produce several images on this API, so ``count > 1`` without references fans
out into parallel single-image tasks; all task ids go into one ``Submission`` and ``collect`` polls them
concurrently, keeping what succeeded and reporting the rest as notices. With references, one task makes
the whole set (``n``; Seedream's group mode, where the model may make fewer pictures than asked).

Seedream 5.0 Lite (``doubao-seedream-5-0-lite``, provider reference §10.4) takes the same body with
``resolution`` 2K or 3K (no 1K/4K), the aspect enum without ``9:21`` and ``n`` 1–4; its links live 72
hours. Its reference limit is unconfirmed (APIMart's twin page says 10, which is used), and whether a
text-only task can make several images is too, so text-only sets fan out as on 4.5.

The API cannot look a task up without its id, so a create that timed out is never repeated (it may
have been billed): the job fails and the engine refunds. The error body format is undocumented; the
mapping reads APIMart/OpenAI-style bodies and ByteDance codes, and anything else falls back to the
HTTP status (logged, with the key redacted).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import Field

from bot import sizes
from bot.config import TaskApiConfig
from bot.errors import (
    BadApiKey,
    ContentBlocked,
    OutOfCredit,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    SeedreamError,
    redact_links,
)
from bot.i18n import _
from bot.images import ImageStore, StoredImage
from bot.providers.base import Capabilities, GenerationRequest, GenerationResult, Provider, Submission
from bot.providers.http import NotAccepted, ProviderHttp, default_error, retry_after_seconds
from bot.providers.models import family_of
from bot.providers.seedream_v3 import bytedance_code_error, clean_message, data_uri, prompt_for

log = logging.getLogger(__name__)

#: Model names the documentation lists (``doubao-seedance-4-5`` is the docs' own example, sic).
DOCUMENTED_MODELS = frozenset(
    {"doubao-seedance-4-5", "Doubao-Seedream-4.5", "doubao-seedream-4.5", "doubao-seedream-4-5"}
)
#: Seedream 5.0 Lite's names on this API.
LITE_MODELS = frozenset({"doubao-seedream-5-0-lite", "doubao-seedream-5.0-lite", "Doubao-Seedream-5.0-lite"})
MAX_IMAGES = 15
MAX_LITE_IMAGES = 4
MAX_REFERENCES = 10
#: Documented per reference: jpeg/png, ≤ 10 MB, aspect [1/3, 3], sides > 14 px, ≤ 6000×6000 px. We stay
#: under 7.5 MiB so the base64 text is under 10 MiB as well, and under 12 MP so no side exceeds 6000 px.
REFERENCE_MAX_BYTES = 7 * 1024 * 1024 + 512 * 1024
REFERENCE_MAX_PIXELS = 12_000_000
#: 4K sizes: the docs give 1:1 = 4096² and 16:9 = 5404×3040; the others keep ~16.5 MP at each ratio
#: (Seedream 4.5's published 4K presets). 2K follows bot.sizes (1:1 = 2048², 16:9 = 2560×1440, as documented).
SIZES_4K: dict[str, tuple[int, int]] = {
    "1:1": (4096, 4096),
    "4:3": (4704, 3520),
    "3:4": (3520, 4704),
    "16:9": (5404, 3040),
    "9:16": (3040, 5404),
    "3:2": (4992, 3328),
    "2:3": (3328, 4992),
    "21:9": (6198, 2656),
    "9:21": (2656, 6198),
}
#: How long a task may stay pending/processing before we give up on it.
RUNNING = frozenset({"submitted", "queued", "pending", "processing", "running", "in_progress"})
DONE = frozenset({"completed", "succeeded", "success"})
FAILED = frozenset({"failed", "error", "cancelled", "canceled"})

_MODERATION_WORDS = ("sensitive", "moderation", "content policy", "content_policy", "nsfw", "unsafe", "违规", "敏感")
_CREDIT_WORDS = ("insufficient", "balance", "quota", "credit", "recharge", "top up", "billing", "余额")
_AUTH_WORDS = ("api key", "api_key", "apikey", "unauthorized", "authentication", "invalid token", "令牌")
_RATE_WORDS = ("rate limit", "rate_limit", "too many requests", "too frequent")


#: 5.0 Lite's documented sizes (16:9 only: 2848×1600 at 2K, 4096×2304 at 3K); other ratios follow bot.sizes.
SIZES_50_LITE: dict[str, dict[str, tuple[int, int]]] = {
    "2K": {"16:9": (2848, 1600), "9:16": (1600, 2848)},
    "3K": {"16:9": (4096, 2304), "9:16": (2304, 4096)},
}


class TaskApiCapabilities(Capabilities):
    """This API picks the pixels from aspect × resolution, not always as bot.sizes (4.5's 16:9 4K is 5404×3040)."""

    #: resolution -> aspect -> size, where the API's own table differs from bot.sizes.
    size_table: dict[str, dict[str, tuple[int, int]]] = Field(default_factory=dict)

    def dimensions(self, request: GenerationRequest) -> tuple[int, int]:
        size = self.size_table.get(request.resolution, {}).get(self.aspect_for(request))
        return size or super().dimensions(request)


def _error_parts(body: Any) -> tuple[str, str] | None:
    """(code or type, message) from ``{"error": {...}}``, ``{"error": "..."}`` or ``{"message": ...}`` bodies."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        code = error.get("code") if isinstance(error.get("code"), str) else error.get("type")
        message = error.get("message") or error.get("msg")
    elif isinstance(error, str):
        code, message = body.get("type"), error
    else:
        code = body.get("type") if isinstance(body.get("type"), str) else body.get("error_code")
        message = body.get("message") or body.get("msg") or body.get("fail_reason") or body.get("detail")
    code = code if isinstance(code, str) else ""
    message = message if isinstance(message, str) else ""
    return (code, message) if code or message else None


def classify_error(status: int | None, code: str, message: str, headers: Any) -> SeedreamError | None:
    """Our error for a recognised body; ``status`` is None for a task that failed after it was accepted."""
    known = bytedance_code_error(code, message, headers) if code[:1].isupper() else None
    if known is not None:
        return known
    text = f"{code} {message}".lower()
    detail = f"HTTP {status}: {code}: {message[:300]}" if status else f"task: {code}: {message[:300]}"
    if any(word in text for word in _MODERATION_WORDS):
        return ContentBlocked(_("The provider's moderation refused this request; please change it."), detail=detail)
    if status == 402 or any(word in text for word in _CREDIT_WORDS):
        return OutOfCredit(
            _("The bot's account with this image provider has run out of credit; a moderator has to top it up."),
            detail=detail,
        )
    if status in (401, 403) or any(word in text for word in _AUTH_WORDS):
        return BadApiKey(
            _("The bot's key for this image provider was refused; a moderator has to fix the configuration."),
            detail=detail,
        )
    if status == 429 or any(word in text for word in _RATE_WORDS):
        return RateLimited(
            _("The image provider is busy right now; please try again in a minute."),
            retry_after=retry_after_seconds(headers),
            detail=detail,
        )
    if status == 503:
        return NotAccepted(_("The image provider is unavailable right now; please try again later."), detail=detail)
    if status is not None and status >= 500:
        return ProviderUnavailable(_("The image provider had a problem; please try again later."), detail=detail)
    if status in (400, 413, 422) and message:
        return ProviderRejected.because(None, clean_message(message), detail=detail)
    return None


class TaskApiProvider(Provider):
    """Seedream 4.5 through the task API: create, persist the task ids, poll, download at once.

    ``enhance`` → ``optimize_prompt_options.mode``: this API always optimises prompts (there is no
    "off"), so ``enhance`` picks the thorough ``standard`` mode (better images, slower) and no enhance
    picks ``fast``, the lightest rewrite, which stays closest to the prompt as written.
    """

    kind = "taskapi"

    def __init__(
        self,
        name: str,
        config: TaskApiConfig,
        store: ImageStore,
        *,
        retry_base_seconds: float | None = None,
        task_deadline_seconds: float | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(name, config.max_concurrent)
        self.config = config
        self.store = store
        self.task_deadline_seconds = task_deadline_seconds or config.max_wait_seconds
        self._secret = config.api_key()
        lite = config.model in LITE_MODELS
        if config.model not in DOCUMENTED_MODELS | LITE_MODELS:
            log.warning(
                "%s: model %r is not one the API documents (%s)",
                name,
                config.model,
                sorted(DOCUMENTED_MODELS | LITE_MODELS),
            )
        family = family_of(config.model)
        self.http = ProviderHttp(
            provider=name,
            api_key=self._secret,
            timeout_seconds=config.timeout_seconds,
            max_attempts=config.max_attempts,
            map_error=self.map_error,
            retry_base_seconds=retry_base_seconds or config.retry_base_seconds,
            session=session,
        )
        self._capabilities = TaskApiCapabilities(
            kind=self.kind,
            model=config.model,
            aspect_ratios=(*(a for a in sizes.ASPECT_RATIOS if not (lite and a == "9:21")), "auto"),
            resolutions=("2K", "3K") if lite else ("2K", "4K"),
            max_count=MAX_LITE_IMAGES if lite else MAX_IMAGES,
            max_references=MAX_REFERENCES,
            max_total_images=MAX_IMAGES,
            reference_formats=("image/png", "image/jpeg"),
            reference_max_bytes=REFERENCE_MAX_BYTES,
            reference_max_pixels=REFERENCE_MAX_PIXELS,
            reference_ratio_range=(1 / 3, 3.0),
            reference_min_side=15,
            seed_range=None,
            styles=(),
            prompt_enhance=True,
            # The page documents no prompt limit and no recommendation of its own: no bot-side cap.
            max_prompt_chars=None,
            size_table=SIZES_50_LITE if lite else {"4K": SIZES_4K},
            family=family.name if family else None,
            strengths=str(family.strengths) if family else "",
            cost_weight=family.cost_weight if family else 1,
            image_sets=True,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    # -- errors ------------------------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        """The text without our key and without any link's signed query string."""
        text = redact_links(text)
        return text.replace(self._secret, "***") if self._secret else text

    def map_error(self, status: int, body: Any, text: str, headers: Any) -> SeedreamError:
        """HTTP error → our taxonomy; unknown bodies are logged (key redacted) and mapped by status."""
        parts = _error_parts(body)
        mapped = classify_error(status, *parts, headers) if parts else None
        if mapped is not None:
            return mapped
        log.warning("%s: unrecognised error body (HTTP %s): %s", self.name, status, self._redact(text)[:500])
        return default_error(status, body, self._redact(text), headers)

    def _raise_envelope_error(self, body: Any) -> None:
        """Some gateways answer HTTP 200 with ``{"code": 4xx/5xx, "error": …}``."""
        code = body.get("code") if isinstance(body, dict) else None
        if isinstance(code, int) and not isinstance(code, bool) and code >= 400:
            raise self.map_error(code, body, json.dumps(body)[:1000], {})

    def _task_failure(self, task_id: str, data: dict[str, Any], status: str) -> SeedreamError:
        parts = _error_parts({"error": data.get("error")}) or _error_parts(data) or ("", "")
        mapped = classify_error(None, *parts, None)
        if mapped is not None:
            return mapped
        log.warning("%s: task %s %s: %s", self.name, task_id, status, self._redact(str(parts))[:300])
        return ProviderUnavailable(
            _("The image provider could not make this image; please try again later."),
            detail=f"task {task_id} {status}: {parts[0]}: {parts[1][:300]}",
        )

    # -- submit ------------------------------------------------------------------------------------
    async def _reference_uri(self, image: StoredImage) -> str:
        """A reference we hold, re-encoded within the API's limits, as a data URI (never a link that expires)."""
        return data_uri(*await self.encode_reference(image))

    def _body(self, request: GenerationRequest, n: int, references: list[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "prompt": prompt_for(request) if references else request.prompt.strip(),
            "size": request.aspect_ratio,
            "resolution": request.resolution,
            "n": n,  # a JSON number: a quoted "1" is an error on this API
            "watermark": self.config.watermark,
            "optimize_prompt_options": {"mode": "standard" if request.enhance else "fast"},
        }
        if references:
            body["image_urls"] = references
        return body

    async def _create(self, body: dict[str, Any]) -> str:
        url = f"{self.config.base_url}/v1/images/generations"
        answer = await self.http.request_json("POST", url, create=True, json=body)
        self._raise_envelope_error(answer)
        data = answer.get("data") if isinstance(answer, dict) else None
        for item in data if isinstance(data, list) else [data]:
            task_id = (item.get("task_id") or item.get("id")) if isinstance(item, dict) else None
            if isinstance(task_id, str) and task_id:
                return task_id
        log.error("%s: create answered without a task id: %s", self.name, self._redact(str(answer))[:300])
        raise ProviderUnavailable(
            _("The image provider accepted the request but did not say where to find the result."),
            detail="create answer without task_id",
        )

    async def submit(self, request: GenerationRequest) -> Submission:
        """One task with references (``n`` = count), else ``count`` single-image tasks created in parallel."""
        self.capabilities.check(request)
        references = [await self._reference_uri(image) for image in request.references]
        if references or request.count == 1:
            bodies = [self._body(request, request.count, references)]
        else:
            bodies = [self._body(request, 1, []) for _ in range(request.count)]
        outcomes = await asyncio.gather(*(self._create(body) for body in bodies), return_exceptions=True)
        task_ids = [outcome for outcome in outcomes if isinstance(outcome, str)]
        errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        for error in errors:
            if not isinstance(error, SeedreamError):
                raise error
        if not task_ids:
            raise errors[0]
        log.info("%s: created task(s) %s", self.name, ", ".join(task_ids))
        unstarted = [error.user_message for error in errors if isinstance(error, SeedreamError)]
        return Submission(task_ids=task_ids, data={"asked": request.count, "unstarted": unstarted})

    # -- collect -----------------------------------------------------------------------------------
    async def _wait_for(self, task_id: str) -> list[str]:
        """Poll one task until it is done; returns its result links."""
        url = f"{self.config.base_url}/v1/tasks/{quote(task_id, safe='')}"
        deadline = time.monotonic() + self.task_deadline_seconds
        while True:
            await asyncio.sleep(self.config.poll_interval_seconds)
            body = await self.http.request_json("GET", url, params={"language": "en"})
            self._raise_envelope_error(body)
            data = body.get("data") if isinstance(body, dict) else None
            data = data[0] if isinstance(data, list) and data else data
            if not isinstance(data, dict):
                raise ProviderUnavailable(
                    _("The image provider sent a task status we could not read."),
                    detail=f"task {task_id}: {body!r:.200}",
                )
            status = str(data.get("status", "")).lower()
            if status in DONE:
                return _result_urls(task_id, data)
            if status in FAILED:
                raise self._task_failure(task_id, data, status)
            if status not in RUNNING:
                log.warning("%s: task %s has unknown status %r; still waiting", self.name, task_id, status)
            if time.monotonic() > deadline:
                raise ProviderTimeout(
                    _("The image provider took too long to make the image; please try again later."),
                    detail=f"task {task_id} still {status} after {self.task_deadline_seconds:.0f}s",
                )

    async def _run_task(self, task_id: str) -> list[StoredImage]:
        """Wait for one task and download its images at once (links live only 24 hours)."""
        urls = await self._wait_for(task_id)
        outcomes = await asyncio.gather(*(self.http.download(self.store, url) for url in urls), return_exceptions=True)
        images = [outcome for outcome in outcomes if isinstance(outcome, StoredImage)]
        errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if errors:
            for image in images:
                image.path.unlink(missing_ok=True)
            raise errors[0]
        return images

    async def collect(self, request: GenerationRequest, submission: Submission) -> GenerationResult:
        """Poll every task concurrently; keep the images of those that succeeded, report the others."""
        if not submission.task_ids:
            raise ProviderUnavailable(_("The image provider never started this job."), detail="no task ids")
        outcomes = await asyncio.gather(*(self._run_task(t) for t in submission.task_ids), return_exceptions=True)
        images: list[StoredImage] = []
        errors: list[SeedreamError] = []
        for outcome in outcomes:
            if isinstance(outcome, list):
                images.extend(outcome)
            elif isinstance(outcome, SeedreamError):
                errors.append(outcome)
            else:
                raise outcome
        if not images:
            raise (
                errors[0]
                if errors
                else ProviderUnavailable(
                    _("The image provider finished without any image."), detail=f"tasks {submission.task_ids}"
                )
            )
        asked = int(submission.data.get("asked", request.count))
        reasons = [str(message) for message in submission.data.get("unstarted", [])]
        reasons += [error.user_message for error in errors]
        notices = [_shortfall_notice(asked, len(images), reasons)] if len(images) < asked else []
        return GenerationResult(images=images, notices=notices)

    async def close(self) -> None:
        await self.http.close()


def _result_urls(task_id: str, data: dict[str, Any]) -> list[str]:
    """``result.images[].url`` holds a string in one documented example and a list in another."""
    result = data.get("result")
    entries = result.get("images") if isinstance(result, dict) else None
    urls: list[str] = []
    for entry in entries if isinstance(entries, list) else []:
        value = entry.get("url") if isinstance(entry, dict) else entry
        for url in value if isinstance(value, list) else [value]:
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                urls.append(url)
    if not urls:
        raise ProviderUnavailable(
            _("The image provider finished without any image; please try again later."),
            detail=f"task {task_id} completed without result urls",
        )
    return urls


def _shortfall_notice(asked: int, got: int, reasons: list[str]) -> str:
    """One sentence: how many images the member gets and why the others are missing."""
    counted = Counter(reasons)
    parts = [f"{count}× {reason.rstrip('.')}" if count > 1 else reason.rstrip(".") for reason, count in counted.items()]
    if not parts:
        parts = ["Seedream decides how many pictures a set needs and made fewer"]
    return f"You get {got} of the {asked} images you asked for ({'; '.join(parts)})."
