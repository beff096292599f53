"""Leonardo.AI: Seedream 4.x and 5.x through the v2 generations API (create on v2; poll and uploads on v1).

Flow: upload each new reference (``POST /v1/init-image``, then a multipart POST of the bytes to the
presigned S3 URL *without* our auth header) → ``POST /v2/generations`` → poll
``GET /v1/generations/{id}`` until COMPLETE/FAILED → download ``generated_images``. Images Leonardo made
for us earlier are referenced by their GENERATED id, so re-editing a bot output uploads nothing.

Size decision. The guides say width "Supports 256 to 1440", but their own sample asks for 1920×1080,
the v2 OpenAPI schema allows 32–14142 per side with a 2048×2048 default on 4.5, and Seedream 4.5 itself
refuses anything under 3,686,400 pixels, which no size inside 1440×1440 reaches. We therefore follow
the schema per side (32–14142) and Seedream's own pixel window per model: 4.0 921,600–16,777,216
(1K/2K/4K), 4.5 3,686,400–16,777,216 (2K/4K only). Every aspect × resolution of ``bot.sizes`` for
those tiers lies inside; the capabilities declare both windows, so anything that would not is refused
before it is queued (``leonardo_size`` checks again right before the call).

Seedream 5.x (provider reference §10.1). The v2 schema gives ``seedream-5.0-pro`` 768–2048 px a side,
quantity 1–6, a seed of 0–2147483637 and no ``style_ids``; ``bytedance/seedream-5.0-flash`` 1024–3008 a
side, quantity 1–8, neither seed nor ``style_ids``; both take ≤ 10 references and ``prompt_enhance``.
Where Leonardo's range is wider than the model's own (Flash: 3008² is 9 MP, ModelArk caps Flash at
4,624,220 px) the narrower one is used, and sizes are shrunk or enlarged into the window (aspect kept)
so that "2K" at 16:9 on 5.0 Pro is 2048×1152. For ``bytedance/seedream-5.5`` only the guide exists
(≤ 10 references, a 2048² sample with quantity 2): every range is unconfirmed, so the bot uses what
both 5.0 models accept (1024–2048 a side, 1,048,576–4,194,304 px, so no 21:9 / 9:21; quantity ≤ 4) and
sends none of the fields whose existence on 5.5 is unknown (seed, styles, ``prompt_enhance``). The Flash
and 5.5 guides drop the references' ``strength``, so it is sent to 4.x and 5.0 Pro only.

Prompt: the v2 schema takes 1–9999 characters (``MAX_PROMPT_CHARS``), enforced by the capabilities
before anything is queued or charged (5.5 is assumed to share the limit). Should Leonardo refuse a
request anyway (a ``VALIDATION_ERROR`` or one of the documented ``validation-failed`` / ``bad-request``
answers), it becomes ``ProviderRejected``: said plainly, not retried, not charged.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from bot import sizes
from bot.config import LeonardoConfig
from bot.errors import (
    BadApiKey,
    ContentBlocked,
    ImageRejected,
    InvalidRequest,
    OutOfCredit,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    ResultExpired,
    SeedreamError,
    redact_links,
)
from bot.i18n import _
from bot.images import ImageStore, StoredImage
from bot.providers.base import Capabilities, GenerationRequest, GenerationResult, Provider, Submission
from bot.providers.http import ProviderHttp, default_error
from bot.providers.links import exact_url, without_query
from bot.providers.models import family_of

log = logging.getLogger(__name__)

MIN_SIDE, MAX_SIDE = 32, 14142
MAX_PIXELS = 16_777_216
MAX_QUANTITY = 8
MAX_REFERENCES = 6
MAX_SEED = 2_147_483_638
MAX_PROMPT_CHARS = 9999


@dataclass(frozen=True)
class LeonardoModel:
    """What one Seedream model accepts on Leonardo's v2 API (see the module docstring)."""

    resolutions: tuple[str, ...]
    #: Inclusive total-pixel and per-side windows of ``width`` × ``height``.
    pixels: tuple[int, int]
    sides: tuple[int, int] = (MIN_SIDE, MAX_SIDE)
    max_quantity: int = MAX_QUANTITY
    max_references: int = MAX_REFERENCES
    seed_range: tuple[int, int] | None = (0, MAX_SEED)
    styles: bool = True
    prompt_enhance: bool = True
    #: ``strength`` on each ``image_reference`` (dropped by the 5.0 Flash and 5.5 guides).
    reference_strength: bool = True
    aspect_ratios: tuple[str, ...] = (*sizes.ASPECT_RATIOS, "auto")
    #: Shrink / enlarge a tier's size into the window instead of refusing it.
    fit: bool = False


MODELS: dict[str, LeonardoModel] = {
    "seedream-4.5": LeonardoModel(resolutions=("2K", "4K"), pixels=(3_686_400, MAX_PIXELS)),
    "seedream-4.0": LeonardoModel(resolutions=("1K", "2K", "4K"), pixels=(921_600, MAX_PIXELS)),
    "seedream-5.0-pro": LeonardoModel(
        resolutions=("1K", "2K"),
        pixels=(1_048_576, 4_194_304),
        sides=(768, 2048),
        max_quantity=6,
        max_references=10,
        seed_range=(0, 2_147_483_637),
        styles=False,
        fit=True,
    ),
    "bytedance/seedream-5.0-flash": LeonardoModel(
        resolutions=("1K", "2K"),
        pixels=(921_600, 4_624_220),
        sides=(1024, 3008),
        max_references=10,
        seed_range=None,
        styles=False,
        reference_strength=False,
        fit=True,
    ),
    "bytedance/seedream-5.5": LeonardoModel(
        resolutions=("1K", "2K"),
        pixels=(1_048_576, 4_194_304),
        sides=(1024, 2048),
        max_quantity=4,
        max_references=10,
        seed_range=None,
        styles=False,
        prompt_enhance=False,
        reference_strength=False,
        aspect_ratios=("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "auto"),
        fit=True,
    ),
}
#: The documented preset styles (same for both models). Without one Leonardo applies "Dynamic".
STYLE_IDS = {
    "Cinematic": "a5632c7c-ddbb-4e2f-ba34-8456ab3ac436",
    "Creative": "6fedbf1f-4a17-45ec-84fb-92fe524a29ef",
    "Dynamic": "111dc692-d470-4eec-b791-3475abac4c46",
    "Fashion": "594c4a08-a522-4e0e-b7ff-e4dac4b6b622",
    "Portrait": "ab5a4220-7c42-41e5-a578-eddb9fed3d75",
    "Stock Photo": "5bdc3f2a-1be6-4d1c-8e77-992a30824a2c",
    "Vibrant": "dee282d3-891f-4f73-ba02-7f8131e5541b",
}
#: Upload extensions for what we send (init-image also takes webp; we re-encode to PNG/JPEG).
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg"}
#: Upload size limits are undocumented; 10 MiB is the Seedream reference cap on every other provider.
REFERENCE_MAX_BYTES = 10 * 1024 * 1024

_UNREACHABLE_REFERENCE = ("couldn't access image", "invalid init image id", "failed to find init variation")
_OUT_OF_CREDIT = ("insufficient", "not enough", "credit", "balance")
#: Codes of a request Leonardo refused as invalid: documented v1 codes, and the v2 schema's (observed).
_VALIDATION_CODES = frozenset(
    {"validation-failed", "validation_error", "bad-request", "bad_request", "invalid-json", "bad_user_input"}
)
#: Messages of the same, where the code is the generic "unexpected" (e.g. the documented prompt-length answer).
_VALIDATION_MESSAGES = (
    "unexpected variable",
    "expecting a value",
    "but found",
    "invalid prompt",
    "maximum length",
    "too long",
    "must be at most",
    "must be between",
    "must contain at most",
    "invalid dimensions",
    "invalid value for enum",
)


def leonardo_size(model: str, request: GenerationRequest, caps: Capabilities) -> tuple[int, int]:
    """Width × height for the request, guaranteed inside the model's window (see module docstring)."""
    width, height = caps.dimensions(request)
    spec = MODELS[model]
    (low, high), (side_low, side_high) = spec.pixels, spec.sides
    sides_ok = min(width, height) >= side_low and max(width, height) <= side_high
    if not sides_ok or not low <= width * height <= high:
        raise InvalidRequest(
            _(
                "{size} is outside what {model} renders ({pixels} pixels); choose another aspect ratio or resolution.",
                size=f"{width}×{height}",
                model=f"Leonardo {model}",
                pixels=f"{low:,}–{high:,}",
            )
        )
    return width, height


def _is_validation(status: int, code: str, lowered: str) -> bool:
    if status not in (400, 422):
        return False
    return code.lower() in _VALIDATION_CODES or any(phrase in lowered for phrase in _VALIDATION_MESSAGES)


def _dict(value: Any) -> dict[str, Any]:
    """Parts of a body we only read: anything that is not an object reads as empty."""
    return value if isinstance(value, dict) else {}


def _error_text(body: Any) -> tuple[str, str]:
    """(message, code) from a v1 ``{"error", "code"}`` body or a v2 GraphQL-style list of errors."""
    if isinstance(body, list):
        messages, codes = [], []
        for item in body:
            item = _dict(item)
            extensions = _dict(item.get("extensions"))
            details = _dict(extensions.get("details"))
            messages.append(str(details.get("message") or item.get("message") or ""))
            codes.append(str(extensions.get("code") or ""))
        return "; ".join(m for m in messages if m), next((c for c in codes if c), "")
    if isinstance(body, dict):
        message = body.get("error") or body.get("message") or body.get("detail") or ""
        return str(message), str(body.get("code") or "")
    return "", ""


def leonardo_error(
    status: int, body: Any, text: str, headers: Any, *, max_references: int = MAX_REFERENCES
) -> SeedreamError:
    """Map Leonardo's error bodies (documented v1 dicts, observed v2 lists) onto our taxonomy."""
    if status in (429, 503):
        return default_error(status, body, text, headers)
    message, code = _error_text(body)
    lowered = message.lower()
    detail = f"HTTP {status} {code}: {message[:300] or text[:300]}"
    if "moderation" in lowered or "inappropriate content" in lowered:
        return ContentBlocked(
            _("Leonardo's content filter refused this prompt: {reason}", reason=message[:200]), detail=detail
        )
    if status == 401 or code == "access-denied" or "authorization hook" in lowered or "authentication hook" in lowered:
        return BadApiKey(
            _("Leonardo refused the bot's API key; a moderator has to fix the configuration."), detail=detail
        )
    if "not supported within the production api" in lowered:
        return BadApiKey(_("The configured Leonardo model is not available to this API key."), detail=detail)
    if status == 402 or any(word in lowered for word in _OUT_OF_CREDIT):
        return OutOfCredit(_("The Leonardo account is out of credit; a moderator has to top it up."), detail=detail)
    if any(phrase in lowered for phrase in _UNREACHABLE_REFERENCE):
        return ImageRejected(_("A reference image is not available on Leonardo any more."), detail=detail)
    if "too many images" in lowered:
        return ProviderRejected(
            _(
                "Leonardo refused the request as invalid: it takes at most {most} reference images. "
                "Use fewer reference images; the same request would be refused again.",
                most=max_references,
            ),
            detail=detail,
        )
    if _is_validation(status, code, lowered):
        return ProviderRejected.because("Leonardo", message[:200], detail=detail)
    log.warning("leonardo: unrecognised error HTTP %s: %s", status, redact_links(text[:500]))
    return default_error(status, body, text, headers)


class _UploadFailedTransiently(ProviderUnavailable):
    """The presigned upload failed in a way that may pass on a second try (5xx, dropped connection)."""


@dataclass(frozen=True)
class _UploadSlot:
    image_id: str
    url: str
    fields: dict[str, str]


def _upload_slot(body: Any) -> _UploadSlot:
    slot = _dict(_dict(body).get("uploadInitImage"))
    try:
        fields = json.loads(slot["fields"]) if isinstance(slot["fields"], str) else slot["fields"]
        return _UploadSlot(str(slot["id"]), str(slot["url"]), {str(k): str(v) for k, v in fields.items()})
    except (TypeError, KeyError, ValueError, AttributeError):
        # The answer holds the presigned policy and signature: name only what was missing.
        keys = sorted(slot) if slot else type(body).__name__
        raise ProviderUnavailable(
            _("Leonardo did not give us a place to upload the reference image."), detail=f"init-image answer: {keys}"
        ) from None


def _generation_id(body: Any) -> str | None:
    """The create answer: wrapped ``generate.generationId`` (what the API sends) or flat (what the spec says)."""
    if not isinstance(body, dict):
        return None
    for wrapper in ("generate", "sdGenerationJob"):
        inner = body.get(wrapper)
        if isinstance(inner, dict) and inner.get("generationId"):
            return str(inner["generationId"])
    return str(body["generationId"]) if body.get("generationId") else None


class LeonardoProvider(Provider):
    kind = "leonardo"

    def __init__(
        self,
        name: str,
        config: LeonardoConfig,
        store: ImageStore,
        *,
        retry_base_seconds: float | None = None,
        max_wait_seconds: float | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(name, config.max_concurrent)
        self.config = config
        self.store = store
        self.max_wait_seconds = max_wait_seconds or config.max_wait_seconds
        retry_base_seconds = retry_base_seconds or config.retry_base_seconds
        self.spec = spec = MODELS[config.model]
        self.http = ProviderHttp(
            provider=name,
            api_key=config.api_key(),
            timeout_seconds=config.timeout_seconds,
            max_attempts=config.max_attempts,
            map_error=functools.partial(leonardo_error, max_references=spec.max_references),
            retry_base_seconds=retry_base_seconds,
            session=session,
        )
        family = family_of(config.model)
        self._capabilities = Capabilities(
            kind=self.kind,
            model=config.model,
            aspect_ratios=spec.aspect_ratios,
            resolutions=spec.resolutions,
            max_count=spec.max_quantity,
            max_references=spec.max_references,
            reference_formats=tuple(EXTENSIONS),
            reference_max_bytes=REFERENCE_MAX_BYTES,
            seed_range=spec.seed_range,
            styles=tuple(STYLE_IDS) if spec.styles else (),
            prompt_enhance=spec.prompt_enhance,
            max_prompt_chars=MAX_PROMPT_CHARS,
            output_pixels=spec.pixels,
            output_sides=spec.sides,
            scale_up_to_min_pixels=spec.fit,
            scale_down_to_fit=spec.fit,
            family=family.name if family else None,
            strengths=str(family.strengths) if family else "",
            cost_weight=family.cost_weight if family else 1,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def close(self) -> None:
        await self.http.close()

    def _v1(self, path: str) -> str:
        return f"{self.config.base_url}/v1/{path}"

    # -- submit ------------------------------------------------------------------------------------
    async def submit(self, request: GenerationRequest) -> Submission:
        """Upload new references, then create once; a create is never repeated once it may have been billed."""
        self.capabilities.check(request)
        width, height = leonardo_size(self.config.model, request, self.capabilities)
        reuses = any(self._generated_id(ref) for ref in request.references)
        try:
            answer = await self._create(request, width, height, reuse_generated=True)
        except ImageRejected:
            if not reuses:
                raise
            # A GENERATED id from another account or a deleted generation: refused (400, not billed), so
            # uploading our own copy and creating again cannot charge twice.
            log.info("leonardo: a generated reference was refused; uploading our copies instead")
            answer = await self._create(request, width, height, reuse_generated=False)
        generation_id = _generation_id(answer)
        if generation_id is None:
            log.error("leonardo: create answer without a generation id: %s", redact_links(repr(answer)))
            raise ProviderUnavailable(
                _("Leonardo accepted the request but did not say which generation to wait for."),
                detail=f"create answer {answer!r:.300}",
            )
        inner = _dict(answer.get("generate")) or answer
        cost = inner.get("cost") or inner.get("apiCreditCost")
        return Submission(task_ids=[generation_id], data={"cost": cost})

    async def _create(self, request: GenerationRequest, width: int, height: int, *, reuse_generated: bool) -> Any:
        references = await asyncio.gather(*(self._reference(ref, reuse_generated) for ref in request.references))
        parameters: dict[str, Any] = {
            "prompt": request.prompt.strip(),
            "width": width,
            "height": height,
            "quantity": request.count,
        }
        if self.spec.prompt_enhance:
            parameters["prompt_enhance"] = "ON" if request.enhance else "OFF"
        if request.seed is not None:
            parameters["seed"] = request.seed
        if request.style is not None:
            parameters["style_ids"] = [STYLE_IDS[request.style]]
        if references:
            extra = {"strength": self.config.reference_strength} if self.spec.reference_strength else {}
            parameters["guidances"] = {
                "image_reference": [{"image": {"id": i, "type": t}, **extra} for i, t in references]
            }
        body = {"model": self.config.model, "public": False, "parameters": parameters}
        try:
            return await self.http.request_json(
                "POST", f"{self.config.base_url}/v2/generations", create=True, json=body
            )
        except ProviderTimeout as exc:
            # There is no lookup by request: the job may be running (and billed); say so in Leonardo's terms.
            error = ProviderTimeout(
                _(
                    "Leonardo did not confirm the generation in time; we did not send it again, so you are not "
                    "charged twice."
                ),
                detail=exc.detail,
            )
            error.retryable = exc.retryable
            raise error from None

    def _generated_id(self, image: StoredImage) -> str | None:
        return image.provider_image_id if image.provider == self.name else None

    async def _reference(self, image: StoredImage, reuse_generated: bool) -> tuple[str, str]:
        """(id, type) for one reference: our earlier output by GENERATED id, anything else uploaded."""
        generated = self._generated_id(image)
        if generated and reuse_generated:
            return generated, "GENERATED"
        return await self._upload(image), "UPLOADED"

    async def _upload(self, image: StoredImage) -> str:
        data, mime = await self.encode_reference(image)
        answer = await self.http.request_json("POST", self._v1("init-image"), json={"extension": EXTENSIONS[mime]})
        slot = _upload_slot(answer)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=self.http.retry_base_seconds, max=10.0, jitter=self.http.retry_base_seconds
            ),
            retry=retry_if_exception(lambda exc: isinstance(exc, _UploadFailedTransiently | ProviderTimeout)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._post_presigned(slot, data, mime)
        return slot.image_id

    async def _post_presigned(self, slot: _UploadSlot, data: bytes, mime: str) -> None:
        """Multipart POST to S3: every presigned field, then the file. No Leonardo auth header (S3 says 403)."""
        form = aiohttp.FormData()
        for key, value in slot.fields.items():
            form.add_field(key, value)
        form.add_field("file", data, filename=f"reference.{EXTENSIONS[mime]}", content_type=mime)
        target = without_query(slot.url)
        try:
            # The presigned link goes out exactly as Leonardo wrote it (its signature covers the bytes).
            async with self.http.session.post(exact_url(slot.url), data=form, timeout=self.http.timeout) as response:
                if response.status in (200, 201, 204):
                    return
                text = await response.text()
        except TimeoutError:
            raise ProviderTimeout(_("Uploading the reference image took too long."), detail=target) from None
        except aiohttp.ClientError as exc:
            raise _UploadFailedTransiently(_("Uploading the reference image failed."), detail=repr(exc)) from None
        log.warning(
            "leonardo: presigned upload to %s -> HTTP %s: %s", target, response.status, redact_links(text[:300])
        )
        error = _UploadFailedTransiently if response.status >= 500 else ProviderUnavailable
        raise error("Leonardo's storage refused the reference image upload.", detail=f"HTTP {response.status}")

    # -- collect -----------------------------------------------------------------------------------
    async def collect(self, request: GenerationRequest, submission: Submission) -> GenerationResult:
        generation = await self._wait_for(submission.task_ids[0])
        outputs = [_dict(item) for item in generation.get("generated_images") or [] if _dict(item).get("url")]
        if not outputs:
            raise ProviderUnavailable(_("Leonardo finished the generation without any image."))
        kept = [item for item in outputs if not item.get("nsfw")]
        if not kept:
            raise ContentBlocked(_("Leonardo's safety filter flagged every image of this generation."))
        images = await asyncio.gather(
            *(
                self.http.download(
                    self.store, str(item["url"]), provider_image_id=str(item["id"]) if item.get("id") else None
                )
                for item in kept
            )
        )
        notices = []
        if len(kept) < len(outputs):
            notices.append(
                f"{len(outputs) - len(kept)} of {len(outputs)} images were flagged by Leonardo and withheld."
            )
        if len(outputs) < request.count:
            notices.append(f"Leonardo returned {len(outputs)} of the {request.count} images asked for.")
        return GenerationResult(images=list(images), notices=notices)

    async def _wait_for(self, generation_id: str) -> dict[str, Any]:
        """Poll until COMPLETE (returned) or FAILED / too long (raised); polls retry on their own."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_seconds
        while True:
            body = await self.http.request_json("GET", self._v1(f"generations/{generation_id}"))
            generation = body.get("generations_by_pk") if isinstance(body, dict) else None
            if not isinstance(generation, dict):
                raise ResultExpired(
                    _("Leonardo no longer knows this generation."), detail=f"generation {generation_id}: {body!r:.200}"
                )
            status = generation.get("status")
            if status == "COMPLETE":
                return generation
            if status == "FAILED":
                raise ProviderUnavailable(
                    _("Leonardo could not finish this generation; please try again."),
                    detail=f"generation {generation_id} FAILED: {generation.get('errorMessage')!r}",
                )
            if loop.time() >= deadline:
                raise ProviderTimeout(
                    _("Leonardo is taking too long with this generation."),
                    detail=f"generation {generation_id} still {status} after {self.max_wait_seconds:.0f} s",
                )
            await asyncio.sleep(self.config.poll_interval_seconds)
