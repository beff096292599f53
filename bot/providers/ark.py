"""BytePlus ModelArk / Volcengine Ark: ``POST {base_url}/images/generations``, ByteDance's own API.

``base_url`` already ends in ``/api/v3`` and picks the region (BytePlus
``https://ark.ap-southeast.bytepluses.com/api/v3``, Volcengine ``https://ark.cn-beijing.volces.com/api/v3``).
Model ids: ``seedream-4-0-250828`` / ``seedream-4-5-251128`` (BytePlus), ``doubao-seedream-4-0-250828`` /
``doubao-seedream-4-5-251128`` (Volcengine), or an inference endpoint id (``ep-…``), whose model we
cannot see, so it gets the rules both models accept (4.5's).

The call is synchronous (the optional SSE stream is not used): a timed-out create may have been billed
and is not repeated. In group mode single images can fail moderation; they come back as ``data[]``
items with an ``error`` and become a notice while the other images are kept.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.config import ArkConfig
from bot.errors import SeedreamError, redact_links
from bot.images import ImageStore
from bot.providers.http import default_error
from bot.providers.seedream_v3 import (
    ModelRules,
    ParsedAnswer,
    SeedreamV3Provider,
    bytedance_code_error,
    capabilities_for,
)

log = logging.getLogger(__name__)

#: 4.0: 1K/2K/4K, total pixels [1280×720, 4096×4096]. 4.5: 2K/4K, [2560×1440, 4096×4096]. 14 references each.
ARK_SEEDREAM_40 = ModelRules(resolutions=("1K", "2K", "4K"), min_pixels=921_600, max_references=14)
ARK_SEEDREAM_45 = ModelRules(resolutions=("2K", "4K"), min_pixels=3_686_400, max_references=14)


def rules_for_model(model: str) -> ModelRules:
    """Seedream 4.0 ids get 4.0's wider size range; 4.5 and unknown (``ep-…``) ids get 4.5's."""
    return ARK_SEEDREAM_40 if "seedream-4-0" in model else ARK_SEEDREAM_45


def _code_and_message(error: Any) -> tuple[str, str] | None:
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return error["code"], str(error.get("message") or "")
    return None


def map_ark_error(status: int, body: Any, text: str, headers: Any) -> SeedreamError:
    """Ark answers ``{"error": {"code", "message", "param", "type"}}``; the code decides."""
    pair = _code_and_message(body.get("error")) if isinstance(body, dict) else None
    if pair is not None:
        mapped = bytedance_code_error(pair[0], pair[1], headers)
        if mapped is not None:
            return mapped
    log.warning("ark: unrecognised error body (HTTP %s): %s", status, redact_links(text[:300]))
    return default_error(status, body, text, headers)


def parse_ark_answer(body: Any) -> ParsedAnswer:
    """``data[]`` items hold a ``url`` or an ``error``; a top-level ``error`` means nothing was made."""
    answer = ParsedAnswer()
    if not isinstance(body, dict):
        return answer
    answer.error = _code_and_message(body.get("error"))
    items = body.get("data")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        failure = _code_and_message(item.get("error"))
        url = item.get("url")
        if failure is not None:
            answer.failures.append(failure)
        elif isinstance(url, str) and url.startswith(("http://", "https://")):
            answer.urls.append(url)
    return answer


class ArkProvider(SeedreamV3Provider):
    kind = "ark"

    def __init__(
        self, name: str, config: ArkConfig, store: ImageStore, *, retry_base_seconds: float | None = None
    ) -> None:
        rules = rules_for_model(config.model)
        super().__init__(
            name,
            config,
            store,
            rules=rules,
            capabilities=capabilities_for(self.kind, config.model, rules),
            watermark=config.watermark,
            map_error=map_ark_error,
            retry_base_seconds=retry_base_seconds or config.retry_base_seconds,
        )
        self.model = config.model
        self._create_url = f"{config.base_url}/images/generations"

    @property
    def create_url(self) -> str:
        return self._create_url

    def extra_fields(self) -> dict[str, Any]:
        # Links, not base64: they keep the persisted submission small and are fetched right away.
        return {"model": self.model, "response_format": "url"}

    def parse_answer(self, body: Any) -> ParsedAnswer:
        return parse_ark_answer(body)
