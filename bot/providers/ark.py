"""BytePlus ModelArk / Volcengine Ark: ``POST {base_url}/images/generations``, ByteDance's own API.

``base_url`` already ends in ``/api/v3`` and picks the region (BytePlus
``https://ark.ap-southeast.bytepluses.com/api/v3``, Volcengine ``https://ark.cn-beijing.volces.com/api/v3``).
Model ids: ``seedream-4-0-250828`` / ``seedream-4-5-251128`` (BytePlus), ``doubao-seedream-4-0-250828`` /
``doubao-seedream-4-5-251128`` (Volcengine), the Seedream 5.x ids ``seedream-5-0-260128`` (5.0 Lite),
``seedream-5-0-pro-260628``, ``seedream-5-0-flash-260915`` and ``seedream-5-5-261028`` (and their
``doubao-``/``dola-`` spellings), or an inference endpoint id (``ep-…``), whose model we cannot see, so
it gets 4.5's rules.

Seedream 5.x on Ark (provider reference §10.5; the facts come from a mirror of the BytePlus schema):

========== ============ ======================= ==== ========== ============ ============
model      tiers        total pixels            refs image sets transparent  enhance
========== ============ ======================= ==== ========== ============ ============
5.0 Lite   2K 3K        3,686,400–10,404,496    14   yes        no           standard
5.0 Pro    1K 2K        1,048,576–4,194,304     10   no (400)   no ¹         standard
5.0 Flash  1K 2K        921,600–4,624,220       10   no (400)   yes          not offered
5.5        1K 2K ²      1,048,576–4,194,304 ²   10   no (400)   yes          not sent ³
========== ============ ======================= ==== ========== ============ ============

¹ Only image-to-image from a PNG with alpha; not offered. ² 5.5's pixel window is unconfirmed (no 3K/4K):
the narrower of its siblings' windows is used. ³ Unconfirmed for 5.5, so never sent. The 1.5K tier of
Flash and 5.5 is not one of the bot's tiers.

The call is synchronous (the optional SSE stream is not used): a timed-out create may have been billed
and is not repeated. In group mode single images can fail moderation; they come back as ``data[]``
items with an ``error`` and become a notice while the other images are kept.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from bot.config import ArkConfig
from bot.errors import SeedreamError, redact_links
from bot.images import ImageStore
from bot.providers.http import default_error
from bot.providers.models import family_of
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
#: Seedream 5.x: see the module docstring's table.
ARK_SEEDREAM_50_LITE = ModelRules(
    resolutions=("2K", "3K"), min_pixels=3_686_400, max_pixels=10_404_496, max_references=14
)
ARK_SEEDREAM_50_PRO = ModelRules(
    resolutions=("1K", "2K"), min_pixels=1_048_576, max_pixels=4_194_304, max_references=10, image_sets=False
)
ARK_SEEDREAM_50_FLASH = ModelRules(
    resolutions=("1K", "2K"),
    min_pixels=921_600,
    max_pixels=4_624_220,
    max_references=10,
    image_sets=False,
    prompt_optimization=False,
    transparent_background=True,
)
ARK_SEEDREAM_55 = ModelRules(
    resolutions=("1K", "2K"),
    min_pixels=1_048_576,
    max_pixels=4_194_304,
    max_references=10,
    image_sets=False,
    prompt_optimization=False,
    transparent_background=True,
)
RULES_BY_FAMILY: dict[str, ModelRules] = {
    "4.0": ARK_SEEDREAM_40,
    "4.5": ARK_SEEDREAM_45,
    "5.0-lite": ARK_SEEDREAM_50_LITE,
    "5.0-pro": ARK_SEEDREAM_50_PRO,
    "5.0-flash": ARK_SEEDREAM_50_FLASH,
    "5.5": ARK_SEEDREAM_55,
}
#: The documented BytePlus ids, for the capabilities table and the model choice.
DOCUMENTED_MODELS: tuple[str, ...] = (
    "seedream-5-5-261028",
    "seedream-5-0-pro-260628",
    "seedream-5-0-flash-260915",
    "seedream-5-0-260128",
    "seedream-4-5-251128",
    "seedream-4-0-250828",
)


def rules_for_model(model: str) -> ModelRules:
    """The rules of the model's family; unknown ids (an ``ep-…`` endpoint) get 4.5's, as before 5.x."""
    family = family_of(model)
    return RULES_BY_FAMILY[family.key] if family else ARK_SEEDREAM_45


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
        self,
        name: str,
        config: ArkConfig,
        store: ImageStore,
        *,
        retry_base_seconds: float | None = None,
        session: aiohttp.ClientSession | None = None,
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
            session=session,
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
