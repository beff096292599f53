"""HighwayAPI: ``POST /v3/seedream-4.5``, ``/v3/seedream-4.0`` and ``/v3/seedream-5.0-lite``, copies of Novita's.

The request bodies and limits are Novita's field for field, and like Novita the calls are synchronous
with no documented task variant, so the sync endpoint is used and a timed-out create is not repeated.
Two differences are handled here: the 4.5 answer lists image *objects* (schema undocumented, read as
``url`` or ``image_url``) as well as plain links, and the error format is undocumented, so bodies are
read as Novita's reasons, ByteDance's codes or an OpenAI-style ``error`` object before the HTTP status.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from bot.errors import SeedreamError, redact_links
from bot.providers.http import ErrorMapper, default_error
from bot.providers.novita import NovitaProvider, novita_reason_error
from bot.providers.seedream_v3 import bytedance_code_error

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
    log.warning("highway: unrecognised error body (HTTP %s): %s", status, redact_links(text[:300]))
    return default_error(status, body, text, headers)


class HighwayProvider(NovitaProvider):
    """Same request and answer as Novita (same platform and documents); only the error bodies differ."""

    kind = "highway"
    error_mapper: ClassVar[ErrorMapper] = staticmethod(map_highway_error)
