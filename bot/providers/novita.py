"""Novita AI: ``POST /v3/seedream-4.5``, ``/v3/seedream-4.0`` and ``/v3/seedream-5.0-lite``.

Both endpoints are synchronous: the answer carries the image links. Novita documents no asynchronous
(task id) variant for Seedream 4.x, so the sync endpoint is used; a create that times out may have been
billed and is not repeated (see ``seedream_v3``). The two models name their fields differently
(4.0: ``images`` + top-level ``max_images``; 4.5: ``image`` + ``sequential_image_generation_options``).
5.0 Lite takes 4.5's body with its own sizes: ``2K``/``3K`` or WxH within 3,686,400–10,404,496 pixels,
aspect [1/16, 16], up to 14 references. ``output_format`` and ``seed`` are not documented on that page,
so they are not sent. Novita documents no endpoint for 5.0 Pro, Flash or 5.5.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import aiohttp

from bot.config import HighwayConfig, NovitaConfig
from bot.errors import (
    BadApiKey,
    ContentBlocked,
    ImageRejected,
    OutOfCredit,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SeedreamError,
    redact_links,
)
from bot.i18n import _
from bot.images import ImageStore
from bot.providers.http import ErrorMapper, default_error, retry_after_seconds
from bot.providers.seedream_v3 import (
    ModelRules,
    ParsedAnswer,
    SeedreamV3Provider,
    bytedance_code_error,
    capabilities_for,
    clean_message,
)

log = logging.getLogger(__name__)

#: The ``/v3/<model>`` rules of Novita's documents, which HighwayAPI copies field for field.
V3_MODEL_RULES: dict[str, ModelRules] = {
    # 2K/4K only, total pixels [2560×1440, 4096×4096], up to 14 references.
    "seedream-4.5": ModelRules(
        resolutions=("2K", "4K"),
        min_pixels=3_686_400,
        max_references=14,
        reference_formats=("image/png", "image/jpeg", "image/webp"),
    ),
    # 2K/3K, total pixels [2560×1440, 10,404,496], up to 14 references, 4.5's field names.
    "seedream-5.0-lite": ModelRules(
        resolutions=("2K", "3K"),
        min_pixels=3_686_400,
        max_pixels=10_404_496,
        max_references=14,
        reference_formats=("image/png", "image/jpeg", "image/webp"),
    ),
    # 1K/2K/4K, total pixels [1024×1024, 4096×4096], up to 10 jpeg/png references, older field names.
    "seedream-4.0": ModelRules(
        resolutions=("1K", "2K", "4K"),
        min_pixels=1024 * 1024,
        max_references=10,
        references_field="images",
        nested_max_images=False,
        prompt_optimization=False,
    ),
}


def novita_reason_error(reason: str, message: str, headers: Any) -> SeedreamError | None:
    """Novita's documented error reasons (``{"code", "reason", "message", "metadata"}`` bodies)."""
    why = clean_message(message)
    detail = f"{reason}: {message[:300]}"
    if reason == "ILLEGAL_PROMPT":
        return ContentBlocked(_("The provider's moderation refused the prompt; please rephrase it."), detail=detail)
    if reason == "ILLEGAL_IMAGE_CONTENT":
        return ContentBlocked(_("The provider's moderation refused one of the reference images."), detail=detail)
    if reason in ("INVALID_REQUEST_BODY", "INVALID_IMAGE_SIZE"):
        return ProviderRejected.because(None, why, detail=detail)
    if reason in ("IMAGE_FILE_EXCEEDS_MAX_SIZE", "INVALID_IMAGE_FORMAT", "IMAGE_EXCEEDS_MAX_RESOLUTION"):
        return ImageRejected(_("The provider refused a reference image: {reason}", reason=why), detail=detail)
    if reason in ("BILLING_BALANCE_NOT_ENOUGH", "BILLING_AUTH_FAILED"):
        return OutOfCredit(
            _("The bot's account with this image provider has run out of credit; a moderator has to top it up."),
            detail=detail,
        )
    if reason in (
        "MISSING_API_KEY",
        "INVALID_API_KEY",
        "API_NOT_ALLOWED",
        "FEATURE_NOT_ALLOWED",
        "NEED_REAL_NAME_VERIFY",
    ):
        return BadApiKey(
            _(
                "The bot's key for this image provider was refused or cannot use this model; "
                "a moderator has to fix the configuration."
            ),
            detail=detail,
        )
    if reason == "RATE_LIMIT_EXCEEDED":
        return RateLimited(
            _("The image provider is busy right now; please try again in a minute."),
            retry_after=retry_after_seconds(headers),
            detail=detail,
        )
    if reason in ("BILLING_FAILED", "CREATE_TASK_FAILED", "TASK_FAILED", "GET_RESULT_FAILED", "API_NOT_FOUND"):
        return ProviderUnavailable(_("The image provider had a problem; please try again later."), detail=detail)
    return None


def map_novita_error(status: int, body: Any, text: str, headers: Any) -> SeedreamError:
    """Novita's reason codes first, then ByteDance codes it passes through, then the HTTP status."""
    if isinstance(body, dict):
        reason = body.get("reason")
        if isinstance(reason, str):
            mapped = novita_reason_error(reason, str(body.get("message") or ""), headers)
            if mapped is not None:
                return mapped
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            mapped = bytedance_code_error(error["code"], str(error.get("message") or ""), headers)
            if mapped is not None:
                return mapped
    log.warning("novita: unrecognised error body (HTTP %s): %s", status, redact_links(text[:300]))
    return default_error(status, body, text, headers)


def parse_images(body: Any) -> ParsedAnswer:
    """``{"images": [...]}`` whose items are links (Novita) or objects with ``url``/``image_url`` (Highway)."""
    items = body.get("images") if isinstance(body, dict) else None
    urls = [url for url in map(_item_url, items if isinstance(items, list) else []) if url]
    return ParsedAnswer(urls=urls)


def _item_url(item: Any) -> str | None:
    url = item.get("url") or item.get("image_url") if isinstance(item, dict) else item
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


class NovitaProvider(SeedreamV3Provider):
    kind = "novita"
    #: How this API's error bodies map onto ours (HighwayAPI shares everything else).
    error_mapper: ClassVar[ErrorMapper] = staticmethod(map_novita_error)

    def __init__(
        self,
        name: str,
        config: NovitaConfig | HighwayConfig,
        store: ImageStore,
        *,
        retry_base_seconds: float | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        rules = V3_MODEL_RULES[config.model]
        super().__init__(
            name,
            config,
            store,
            rules=rules,
            capabilities=capabilities_for(self.kind, config.model, rules),
            watermark=config.watermark,
            map_error=type(self).error_mapper,
            retry_base_seconds=retry_base_seconds or config.retry_base_seconds,
            session=session,
        )
        self._create_url = f"{config.base_url}/v3/{config.model}"

    @property
    def create_url(self) -> str:
        return self._create_url

    def parse_answer(self, body: Any) -> ParsedAnswer:
        return parse_images(body)
