"""HighwayAPI: ``POST /v3/seedream-4.5`` and ``/v3/seedream-4.0``, a copy of Novita's endpoints.

The request bodies and limits are Novita's field for field, and like Novita the calls are synchronous
with no documented task variant, so the sync endpoint is used and a timed-out create is not repeated.
Two differences are handled here: the 4.5 answer lists image *objects* (schema undocumented, read as
``url`` or ``image_url``) as well as plain links, and the error format is undocumented, so bodies are
read as Novita's reasons, ByteDance's codes or an OpenAI-style ``error`` object before the HTTP status.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.config import HighwayConfig
from bot.errors import SeedreamError
from bot.images import ImageStore
from bot.providers.http import default_error
from bot.providers.novita import V3_MODEL_RULES, novita_reason_error, parse_images
from bot.providers.seedream_v3 import ParsedAnswer, SeedreamV3Provider, bytedance_code_error, capabilities_for

log = logging.getLogger(__name__)


def map_highway_error(status: int, body: Any, text: str, headers: Any) -> SeedreamError:
    """Highway's error format is not documented: try each shape its platform family is known to use."""
    if isinstance(body, dict):
        reason = body.get("reason")
        if isinstance(reason, str):
            mapped = novita_reason_error(reason, str(body.get("message") or ""), headers)
            if mapped is not None:
                return mapped
        error = body.get("error")
        if isinstance(error, dict):
            for key in ("code", "type"):
                code = error.get(key)
                if isinstance(code, str):
                    mapped = bytedance_code_error(code, str(error.get("message") or ""), headers)
                    if mapped is not None:
                        return mapped
    log.warning("highway: unrecognised error body (HTTP %s): %s", status, text[:300])
    return default_error(status, body, text, headers)


class HighwayProvider(SeedreamV3Provider):
    kind = "highway"

    def __init__(
        self, name: str, config: HighwayConfig, store: ImageStore, *, retry_base_seconds: float | None = None
    ) -> None:
        rules = V3_MODEL_RULES[config.model]
        super().__init__(
            name,
            config,
            store,
            rules=rules,
            capabilities=capabilities_for(self.kind, config.model, rules),
            watermark=config.watermark,
            map_error=map_highway_error,
            retry_base_seconds=retry_base_seconds or config.retry_base_seconds,
        )
        self._create_url = f"{config.base_url}/v3/{config.model}"

    @property
    def create_url(self) -> str:
        return self._create_url

    def parse_answer(self, body: Any) -> ParsedAnswer:
        return parse_images(body)
