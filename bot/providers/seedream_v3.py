"""What Novita, HighwayAPI and Ark share: ByteDance's own Seedream 4.x request body, answered at once.

All three take the same fields (``prompt``, ``size``, reference images, ``watermark``,
``sequential_image_generation`` …) and answer the create call synchronously with result links. So
``submit`` is that one call and returns the links; ``collect`` downloads them, which means a restart
after submit re-downloads instead of paying again. A create that timed out may already have been
billed and is never repeated.

Group generation is decided by the model: with ``sequential_image_generation=auto`` and
``max_images=N`` it may return fewer than N pictures, so the prompt asks for N separate images and a
shortfall is reported to the member as a notice.

Seedream 5.x differs per model (provider reference §10). 5.0 Lite keeps 4.5's body with its own size
window (2K/3K, 3,686,400–10,404,496 px). 5.0 Pro, 5.0 Flash and 5.5 answer 400 to the mere presence of
``sequential_image_generation`` (even ``"disabled"``) and ``stream``, so those fields are never sent to
them (``ModelRules.image_sets`` off); several images are then made by as many single-image calls in
parallel, and a call that fails becomes a notice while the others' images are kept. Fields a model may
not know are only sent when the member asks for what they do (``background`` for a transparent picture).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot import sizes
from bot.config import RemoteProviderSection
from bot.errors import (
    BadApiKey,
    ContentBlocked,
    ImageRejected,
    OutOfCredit,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    ResultExpired,
    ResultRefused,
    SeedreamError,
)
from bot.i18n import _
from bot.images import ImageStore, StoredImage
from bot.providers.base import (
    Capabilities,
    GenerationRequest,
    GenerationResult,
    Provider,
    Submission,
)
from bot.providers.http import ErrorMapper, ProviderHttp, retry_after_seconds
from bot.providers.models import family_of

log = logging.getLogger(__name__)

#: refs + generated images per request (every Seedream 4.x API documents this cap).
MAX_TOTAL_IMAGES = 15
#: Upper pixel bound of every Seedream 4.x size (4096×4096).
MAX_OUTPUT_PIXELS = 16_777_216
#: Most single-image calls one request fans out into on models without image sets (5.0 Pro, Flash, 5.5).
MAX_SEPARATE_CALLS = 4
#: Per-reference limits of the stricter documents (Novita 4.0, older Ark docs): ≤ 10 MB, sides > 14 px,
#: aspect [1/3, 3], ≤ 6000 px. 7 MiB keeps the base64 text under 10 MB too; 12 MP at ratio ≤ 3 keeps
#: every side ≤ 6000 px.
REFERENCE_MAX_BYTES = 7 * 1024 * 1024
REFERENCE_MAX_PIXELS = 12_000_000
REFERENCE_RATIO_RANGE = (1 / 3, 3.0)
REFERENCE_MIN_SIDE = 15
#: ByteDance's prompt advice for Seedream 4.x ("recommended not to exceed 300 Chinese characters or 600
#: English words"), repeated by Novita, HighwayAPI and Ark. It is a recommendation, not a limit: the
#: documents give no hard maximum, so prompts are sent whole and a longer one earns a notice.
RECOMMENDED_PROMPT_WORDS = 600
RECOMMENDED_PROMPT_CJK_CHARS = 300


@dataclass(frozen=True)
class ModelRules:
    """What one Seedream model accepts on one of these APIs (sizes, references, field names)."""

    resolutions: tuple[str, ...]
    #: Smallest total pixel count a ``WxH`` size may have; our size is scaled up to it when below.
    min_pixels: int
    max_references: int
    #: Largest total pixel count a ``WxH`` size may have (4.x: 4096×4096).
    max_pixels: int = MAX_OUTPUT_PIXELS
    #: ``sequential_image_generation`` exists (4.x, 5.0 Lite); without it the field is never sent.
    image_sets: bool = True
    #: ``background: "transparent"`` (with ``output_format: "png"``) is accepted (5.0 Flash, 5.5).
    transparent_background: bool = False
    #: ``image`` on 4.5 and on Ark, ``images`` on Novita/Highway 4.0.
    references_field: str = "image"
    #: 4.5 and Ark nest ``max_images`` in ``sequential_image_generation_options``; Novita 4.0 has it top-level.
    nested_max_images: bool = True
    #: Whether ``optimize_prompt_options`` exists (not on Novita/Highway 4.0).
    prompt_optimization: bool = True
    reference_formats: tuple[str, ...] = ("image/png", "image/jpeg")


def capabilities_for(kind: str, model: str, rules: ModelRules) -> Capabilities:
    """The Capabilities every provider in this family declares; only the model rules differ.

    No seed (not documented for 4.x; in the 5.x schema, but whether it is honoured is unconfirmed, and a
    seed that is ignored would promise a reproduction that does not happen), no style presets;
    ``enhance`` means "send the prompt optimizer settings explicitly", available where the API has
    ``optimize_prompt_options``. No hard prompt limit (none is documented), only the recommendation
    above. Sizes under the model's pixel minimum are enlarged to it (``scale_up_to_min_pixels``); every
    tier a model lists stays under its maximum (``tests/test_models_5x.py`` checks each aspect × tier).
    """
    family = family_of(model)
    return Capabilities(
        kind=kind,
        model=model,
        aspect_ratios=(*sizes.ASPECT_RATIOS, "auto"),
        resolutions=rules.resolutions,
        max_count=MAX_TOTAL_IMAGES if rules.image_sets else MAX_SEPARATE_CALLS,
        max_references=rules.max_references,
        max_total_images=MAX_TOTAL_IMAGES if rules.image_sets else None,
        reference_formats=rules.reference_formats,
        reference_max_bytes=REFERENCE_MAX_BYTES,
        reference_max_pixels=REFERENCE_MAX_PIXELS,
        reference_ratio_range=REFERENCE_RATIO_RANGE,
        reference_min_side=REFERENCE_MIN_SIDE,
        seed_range=None,
        styles=(),
        prompt_enhance=rules.prompt_optimization,
        max_prompt_chars=None,
        recommended_prompt_words=RECOMMENDED_PROMPT_WORDS,
        recommended_prompt_cjk_chars=RECOMMENDED_PROMPT_CJK_CHARS,
        output_pixels=(rules.min_pixels, rules.max_pixels),
        output_ratio_range=(1 / 16, 16.0),
        scale_up_to_min_pixels=True,
        family=family.name if family else None,
        strengths=str(family.strengths) if family else "",
        cost_weight=family.cost_weight if family else 1,
        image_sets=rules.image_sets,
        transparent_background=rules.transparent_background,
    )


def size_for(capabilities: Capabilities, rules: ModelRules, request: GenerationRequest) -> str:
    """``WxH`` for the request, scaled up (aspect kept) where the model's minimum area demands it.

    1K on Novita 4.0 needs ≥ 1024×1024 px in total, so e.g. 16:9 becomes 1376×768 rather than 1280×720
    (``capabilities_for`` declares the window with ``scale_up_to_min_pixels``, so ``dimensions`` does it).
    """
    width, height = capabilities.dimensions(request)
    return f"{width}x{height}"


def prompt_for(request: GenerationRequest, count: int | None = None) -> str:
    """The member's prompt, plus an explicit ask for N pictures: group mode otherwise often makes one."""
    prompt = request.prompt.strip()
    count = request.count if count is None else count
    if count == 1:
        return prompt
    return (
        f"{prompt}\n\nCreate a set of {count} separate images, each a complete picture on its own "
        "(not a collage, grid or split screen)."
    )


def build_body(
    rules: ModelRules, request: GenerationRequest, *, size: str, references: list[str], watermark: bool
) -> dict[str, Any]:
    """The JSON body all three APIs share (Ark adds ``model`` and ``response_format``).

    On a model without image sets the body is for one image whatever ``request.count`` says (the
    caller sends ``count`` of them). A single-image body carries no ``sequential_image_generation``:
    "disabled" is the documented default, and an ``ep-…`` endpoint serving 5.0 Pro, Flash or 5.5 (whose
    model we cannot see) would refuse the field.
    """
    count = request.count if rules.image_sets else 1
    body: dict[str, Any] = {"prompt": prompt_for(request, count), "size": size, "watermark": watermark}
    if references:
        body[rules.references_field] = references
    if count > 1:  # single images leave the field out: "disabled" is its default, and 5.x Pro/Flash/5.5 refuse it
        body["sequential_image_generation"] = "auto"
        if rules.nested_max_images:
            body["sequential_image_generation_options"] = {"max_images": count}
        else:
            body["max_images"] = count
    if request.enhance and rules.prompt_optimization:
        body["optimize_prompt_options"] = {"mode": "standard"}
    if request.transparent and rules.transparent_background:
        body["background"] = "transparent"
        body["output_format"] = "png"  # "transparent" with the default jpeg is an error
    return body


def data_uri(data: bytes, mime: str) -> str:
    """``data:image/png;base64,…`` (lowercase format, as Ark requires)."""
    return f"data:{mime.lower()};base64,{base64.b64encode(data).decode('ascii')}"


_URL_PATTERN = re.compile(r"(https?://|data:)\S+")
_REQUEST_ID_PATTERN = re.compile(r"\s*Request id:.*$", re.IGNORECASE | re.DOTALL)


def clean_message(message: str) -> str:
    """A provider's error text made fit for a member: no links, no request ids, not too long."""
    text = _REQUEST_ID_PATTERN.sub("", _URL_PATTERN.sub("<link>", message)).strip()
    return text[:200] or "no reason given"


def bytedance_code_error(code: str, message: str, headers: Any) -> SeedreamError | None:
    """ByteDance's own error codes (Ark's ``error.code``), which resellers sometimes pass through."""
    reason = clean_message(message)
    detail = f"{code}: {message[:300]}"
    if code.startswith(("InputTextSensitiveContentDetected", "SensitiveContentDetected")):
        return ContentBlocked(_("The provider's moderation refused the prompt; please rephrase it."), detail=detail)
    if code.startswith("InputImageSensitiveContentDetected"):
        return ContentBlocked(_("The provider's moderation refused one of the reference images."), detail=detail)
    if code.startswith("OutputImageSensitiveContentDetected"):
        return ContentBlocked(_("The provider's moderation blocked the generated image."), detail=detail)
    if code in ("MissingParameter", "InvalidParameter") or code.startswith(("MissingParameter.", "InvalidParameter.")):
        return ProviderRejected.because(None, reason, detail=detail)
    if code == "InvalidImageURL":
        return ImageRejected(_("The provider could not read one of the reference images."), detail=detail)
    if code in ("AccountOverdueError", "SetLimitExceeded", "ModelQuotaExhausted"):
        return OutOfCredit(
            _("The bot's account with this image provider has run out of credit; a moderator has to top it up."),
            detail=detail,
        )
    if code in ("AuthenticationError", "AccessDenied", "ModelNotOpen", "UnsupportedModel") or code.startswith(
        ("InvalidEndpointOrModel", "InvalidEndpoint.NotFound")
    ):
        return BadApiKey(
            _(
                "The bot's key for this image provider was refused or cannot use this model; "
                "a moderator has to fix the configuration."
            ),
            detail=detail,
        )
    if code.startswith(("RateLimitExceeded", "ModelAccountRpmRateLimitExceeded")) or code in (
        "QuotaExceeded",
        "ServerOverloaded",
        "RequestBurstTooFast",
    ):
        return RateLimited(
            _("The image provider is busy right now; please try again in a minute."),
            retry_after=retry_after_seconds(headers),
            detail=detail,
        )
    if code in ("InternalServiceError", "InvalidEndpoint.ClosedEndpoint"):
        return ProviderUnavailable(_("The image provider had a problem; please try again later."), detail=detail)
    return None


@dataclass
class ParsedAnswer:
    """Result links of a create call, plus the ByteDance error codes of images that failed."""

    urls: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: The answer's own top-level error, present when nothing was generated.
    error: tuple[str, str] | None = None


def shortfall_notice(asked: int, answer: ParsedAnswer, errors: Sequence[SeedreamError] = ()) -> str | None:
    """One sentence telling the member why they got fewer images than they asked for.

    ``errors`` are the calls that failed outright when the images were asked for one call each.
    """
    got = len(answer.urls)
    if got >= asked and not answer.failures and not errors:
        return None
    blocked = sum(1 for code, _ in answer.failures if "SensitiveContent" in code)
    blocked += sum(1 for error in errors if isinstance(error, ContentBlocked))
    failed = len(answer.failures) + len(errors) - blocked
    reasons = []
    if blocked:
        reasons.append(f"{blocked} blocked by the provider's moderation")
    if failed:
        reasons.append(f"{failed} failed at the provider")
    if got + len(answer.failures) + len(errors) < asked:
        reasons.append("Seedream decides how many pictures a set needs and made fewer")
    return f"You get {got} of the {asked} images you asked for ({'; '.join(reasons)})."


class SeedreamV3Provider(Provider):
    """Base of the synchronous Seedream providers: one create call in ``submit``, downloads in ``collect``."""

    def __init__(
        self,
        name: str,
        config: RemoteProviderSection,
        store: ImageStore,
        *,
        rules: ModelRules,
        capabilities: Capabilities,
        watermark: bool,
        map_error: ErrorMapper,
        retry_base_seconds: float,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(name, config.max_concurrent)
        #: The section's settings (the job engine reads ``cost_weight`` from here, as for every provider).
        self.config = config
        self.store = store
        self.rules = rules
        self.watermark = watermark
        self._capabilities = capabilities
        self.http = ProviderHttp(
            provider=name,
            api_key=config.api_key(),
            timeout_seconds=config.timeout_seconds,
            max_attempts=config.max_attempts,
            map_error=map_error,
            retry_base_seconds=retry_base_seconds,
            session=session,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    @abstractmethod
    def create_url(self) -> str:
        """Where the create call goes."""

    def extra_fields(self) -> dict[str, Any]:
        """Fields this API needs beyond the shared body (Ark: ``model``, ``response_format``)."""
        return {}

    @abstractmethod
    def parse_answer(self, body: Any) -> ParsedAnswer:
        """Read result links (and per-image failures) from this API's answer."""

    def nothing_generated(self, answer: ParsedAnswer) -> SeedreamError:
        """The error to raise when the call succeeded but produced no image at all."""
        for code, message in ([answer.error] if answer.error else []) + answer.failures:
            mapped = bytedance_code_error(code, message, None)
            if mapped is not None:
                return mapped
        return ProviderUnavailable(
            _("The image provider answered without any image; please try again later."),
            detail=f"{self.name}: no image in the answer (failures: {answer.failures}, error: {answer.error})",
        )

    async def _reference_uri(self, image: StoredImage) -> str:
        """A reference we hold, re-encoded within the API's limits, as a data URI (never a link that expires)."""
        return data_uri(*await self.encode_reference(image))

    async def submit(self, request: GenerationRequest) -> Submission:
        self.capabilities.check(request)
        references = [await self._reference_uri(image) for image in request.references]
        body = build_body(
            self.rules,
            request,
            size=size_for(self.capabilities, self.rules, request),
            references=references,
            watermark=self.watermark,
        )
        body.update(self.extra_fields())
        calls = 1 if self.rules.image_sets else request.count
        outcomes = await asyncio.gather(*(self._create(body) for _ in range(calls)), return_exceptions=True)
        answer = ParsedAnswer()
        errors: list[SeedreamError] = []
        for outcome in outcomes:
            if isinstance(outcome, ParsedAnswer):
                answer.urls += outcome.urls
                answer.failures += outcome.failures
                answer.error = answer.error or outcome.error
            elif isinstance(outcome, SeedreamError):
                errors.append(outcome)
            else:
                raise outcome
        if not answer.urls:
            raise errors[0] if errors else self.nothing_generated(answer)
        notices = [self.capabilities.prompt_advice(request.prompt), shortfall_notice(request.count, answer, errors)]
        log.info("%s: generated %d image(s) for %d asked", self.name, len(answer.urls), request.count)
        return Submission(
            result_urls=answer.urls,
            result_ids=[None] * len(answer.urls),
            data={"notices": [notice for notice in notices if notice]},
        )

    async def _create(self, body: dict[str, Any]) -> ParsedAnswer:
        """One create call; its answer's links and per-image failures."""
        return self.parse_answer(await self.http.request_json("POST", self.create_url, create=True, json=body))

    async def collect(self, request: GenerationRequest, submission: Submission) -> GenerationResult:
        if not submission.result_urls:
            raise ProviderUnavailable(
                _("The image provider's answer held no image to fetch."), detail=f"{self.name}: empty submission"
            )
        outcomes = await asyncio.gather(
            *(self.http.download(self.store, url) for url in submission.result_urls), return_exceptions=True
        )
        images = [outcome for outcome in outcomes if isinstance(outcome, StoredImage)]
        errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        hard_errors = [error for error in errors if not isinstance(error, ResultExpired | ResultRefused)]
        if hard_errors or not images:
            for image in images:  # keep the store clean: the job will fail or be collected again
                image.path.unlink(missing_ok=True)
            raise (hard_errors or errors)[0]
        notices = [str(notice) for notice in submission.data.get("notices", [])]
        expired = sum(1 for error in errors if isinstance(error, ResultExpired))
        refused = len(errors) - expired
        if expired:
            notices.append(f"{expired} image(s) had expired at the provider before they could be fetched.")
        if refused:
            notices.append(f"{refused} image(s) could not be fetched: the provider's storage refused the link.")
        return GenerationResult(images=images, notices=notices)

    async def close(self) -> None:
        await self.http.close()
