"""A strict fake of Novita's (and HighwayAPI's) synchronous ``/v3/seedream-4.5``, ``/v3/seedream-4.0`` and
``/v3/seedream-5.0-lite`` (4.5's body; 2K/3K or WxH in [3,686,400, 10,404,496] px, ≤ 14 references;
``output_format`` and ``seed`` are undocumented there, so this fake refuses them like any unknown field).

It validates bodies as the documents say (field names per model, size tiers and pixel ranges, at most
14/10 references, refs + outputs ≤ 15, ``optimize_prompt_options.mode`` standard only), rejects
unknown fields (the real API may ignore them silently, which would hide a misnamed field), answers
with Novita's error bodies, and serves real PNGs of the requested size. ``object_items`` switches the
answer to HighwayAPI's 4.5 shape: image objects instead of link strings.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Any

from aiohttp import web
from PIL import Image

from tests.fakeproviders.common import FakeProviderServer

MODELS = ("seedream-4.5", "seedream-4.0", "seedream-5.0-lite")
_FIELDS_45 = {
    "prompt",
    "size",
    "image",
    "watermark",
    "optimize_prompt_options",
    "sequential_image_generation",
    "sequential_image_generation_options",
}
FIELDS = {
    "seedream-4.5": _FIELDS_45,
    "seedream-5.0-lite": _FIELDS_45,
    "seedream-4.0": {"prompt", "images", "size", "sequential_image_generation", "max_images", "watermark"},
}
TIERS = {
    "seedream-4.5": {"2K": 2048, "4K": 4096},
    "seedream-4.0": {"1K": 1024, "2K": 2048, "4K": 4096},
    "seedream-5.0-lite": {"2K": 2048, "3K": 3072},
}
PIXEL_RANGE = {
    "seedream-4.5": (3_686_400, 16_777_216),
    "seedream-4.0": (1024 * 1024, 4096 * 4096),
    "seedream-5.0-lite": (3_686_400, 10_404_496),
}
MAX_REFERENCES = {"seedream-4.5": 14, "seedream-4.0": 10, "seedream-5.0-lite": 14}
REFERENCE_FORMATS = {
    "seedream-4.5": {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"},
    "seedream-5.0-lite": {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"},
    "seedream-4.0": {"JPEG", "PNG"},
}
DATA_URI = re.compile(r"^data:image/([a-z]+);base64,(.+)$", re.DOTALL)


class Rejected(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class FakeNovitaServer(FakeProviderServer):
    """Routes ``POST /v3/seedream-4.5`` and ``/v3/seedream-4.0``; faults are injected on route ``create``."""

    def __init__(self, *, object_items: str | None = None) -> None:
        #: None: ``images`` are link strings (Novita). "url"/"image_url": objects with that key (Highway 4.5).
        self.object_items = object_items
        #: How many pictures the model "decides" a set needs (None: as many as max_images allows).
        self.set_size: int | None = None
        #: Images the account can still pay for (None: unlimited).
        self.credit: int | None = None
        self.blocked_words = ("forbidden",)
        #: Bodies of create calls that produced images (and so were billed).
        self.billed: list[dict[str, Any]] = []
        super().__init__()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v3/{model}", self._create)

    @staticmethod
    def error(status: int, reason: str, message: str) -> web.Response:
        return web.json_response({"code": status, "reason": reason, "message": message, "metadata": {}}, status=status)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        fault = await self.take_fault("create")
        if fault is not None:
            return fault
        model = request.match_info["model"]
        if model not in MODELS:
            return self.error(404, "API_NOT_FOUND", f"api /v3/{model} not found")
        auth = request.headers.get("Authorization")
        if not auth:
            return self.error(400, "MISSING_API_KEY", "missing api key")
        if not self.bearer_ok(request):
            return self.error(403, "INVALID_API_KEY", "invalid api key")
        if request.content_type != "application/json":
            return self.error(400, "INVALID_REQUEST_BODY", "Content-Type must be application/json")
        try:
            body = await request.json()
            count, width, height = self._validate(model, body)
        except ValueError:
            return self.error(400, "INVALID_REQUEST_BODY", "request body is not valid JSON")
        except Rejected as exc:
            return self.error(exc.status, exc.reason, exc.message)
        if any(word in body["prompt"].lower() for word in self.blocked_words):
            return self.error(400, "ILLEGAL_PROMPT", "prompt contains illegal content")
        if self.credit is not None and self.credit < count:
            return self.error(400, "BILLING_BALANCE_NOT_ENOUGH", "balance not enough")
        if self.credit is not None:
            self.credit -= count
        self.billed.append(body)
        urls = [self.host_image(width, height) for _ in range(count)]
        items: list[Any] = [{self.object_items: url} for url in urls] if self.object_items else urls
        return web.json_response({"images": items})

    def _validate(self, model: str, body: Any) -> tuple[int, int, int]:
        """Check the body as the documents say; return (images to make, width, height)."""
        if not isinstance(body, dict):
            raise Rejected(400, "INVALID_REQUEST_BODY", "body must be a JSON object")
        unknown = set(body) - FIELDS[model]
        if unknown:
            raise Rejected(400, "INVALID_REQUEST_BODY", f"unknown field(s) for {model}: {sorted(unknown)}")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise Rejected(400, "INVALID_REQUEST_BODY", "prompt is required")
        width, height = self._size(model, body.get("size", "2048x2048"))
        refs_field = "images" if model == "seedream-4.0" else "image"
        references = body.get(refs_field, [])
        if not isinstance(references, list) or (refs_field in body and not references):
            raise Rejected(400, "INVALID_REQUEST_BODY", f"{refs_field} must be a non-empty array")
        if len(references) > MAX_REFERENCES[model]:
            raise Rejected(400, "INVALID_REQUEST_BODY", f"{refs_field} allows at most {MAX_REFERENCES[model]} items")
        for reference in references:
            self._check_reference(model, reference)
        if "watermark" in body and not isinstance(body["watermark"], bool):
            raise Rejected(400, "INVALID_REQUEST_BODY", "watermark must be a boolean")
        if "optimize_prompt_options" in body and body["optimize_prompt_options"] != {"mode": "standard"}:
            raise Rejected(400, "INVALID_REQUEST_BODY", "optimize_prompt_options.mode supports only standard")
        mode = body.get("sequential_image_generation", "disabled")
        if mode not in ("auto", "disabled"):
            raise Rejected(400, "INVALID_REQUEST_BODY", "sequential_image_generation must be auto or disabled")
        if model != "seedream-4.0":
            options = body.get("sequential_image_generation_options", {})
            if not isinstance(options, dict) or set(options) - {"max_images"}:
                raise Rejected(400, "INVALID_REQUEST_BODY", "sequential_image_generation_options is invalid")
            max_images = options.get("max_images")
        else:
            max_images = body.get("max_images")
        if max_images is not None:
            if type(max_images) is not int or not 1 <= max_images <= 15:
                raise Rejected(400, "INVALID_REQUEST_BODY", "max_images must be an integer in [1, 15]")
            if len(references) + max_images > 15:
                raise Rejected(400, "INVALID_REQUEST_BODY", "reference images + max_images must be <= 15")
        if mode == "disabled":
            return 1, width, height
        allowed = max_images if max_images is not None else 15 - len(references)
        return min(allowed, self.set_size or allowed), width, height

    @staticmethod
    def _size(model: str, size: Any) -> tuple[int, int]:
        if not isinstance(size, str):
            raise Rejected(400, "INVALID_REQUEST_BODY", "size must be a string")
        if size in TIERS[model]:
            side = TIERS[model][size]
            return side, side
        match = re.fullmatch(r"(\d+)x(\d+)", size)
        if not match:
            raise Rejected(400, "INVALID_REQUEST_BODY", f"size {size!r} is not supported by {model}")
        width, height = int(match[1]), int(match[2])
        low, high = PIXEL_RANGE[model]
        if not low <= width * height <= high:
            raise Rejected(400, "INVALID_IMAGE_SIZE", f"total pixels must be in [{low}, {high}]")
        if not 1 / 16 <= width / height <= 16:
            raise Rejected(400, "INVALID_IMAGE_SIZE", "aspect ratio must be in [1/16, 16]")
        return width, height

    @staticmethod
    def _check_reference(model: str, reference: Any) -> None:
        if not isinstance(reference, str):
            raise Rejected(400, "INVALID_REQUEST_BODY", "each image must be a URL or base64 string")
        if reference.startswith(("http://", "https://")):
            return
        match = DATA_URI.match(reference)
        if not match:
            raise Rejected(400, "INVALID_IMAGE_FORMAT", "image must be a URL or a data:image/<fmt>;base64 URI")
        try:
            data = base64.b64decode(match[2], validate=True)
        except binascii.Error:
            raise Rejected(400, "INVALID_IMAGE_FORMAT", "image base64 is invalid") from None
        if len(data) > 10 * 1024 * 1024:
            raise Rejected(400, "IMAGE_FILE_EXCEEDS_MAX_SIZE", "image exceeds 10 MB")
        try:
            with Image.open(io.BytesIO(data)) as picture:
                fmt, (width, height) = picture.format, picture.size
        except OSError:
            raise Rejected(400, "INVALID_IMAGE_FORMAT", "image cannot be decoded") from None
        if fmt not in REFERENCE_FORMATS[model]:
            raise Rejected(400, "INVALID_IMAGE_FORMAT", f"{fmt} images are not supported by {model}")
        if min(width, height) <= 14 or max(width, height) > 6000:
            raise Rejected(400, "IMAGE_EXCEEDS_MAX_RESOLUTION", "image sides must be in (14, 6000]")
        if model == "seedream-4.0" and not 1 / 3 <= width / height <= 3:
            raise Rejected(400, "INVALID_IMAGE_SIZE", "image aspect ratio must be in [1/3, 3]")
