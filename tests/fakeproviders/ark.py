"""A strict fake of BytePlus ModelArk / Volcengine Ark ``POST /api/v3/images/generations`` (non-stream).

It knows the four Seedream 4.x model ids and their size rules (4.0: 1K/2K/4K or WxH in
[921,600, 16,777,216] px; 4.5: 2K/4K or WxH from 3,686,400 px, no ``adaptive``), at most 14
references given as URLs or lowercase ``data:image/<fmt>;base64`` URIs, refs + outputs ≤ 15, and
answers with Ark's ``{"error": {"code", "message", "param", "type"}}`` bodies. Moderation is simulated
on the prompt (``blocked_words``) and per output image (``blocked_outputs``): in group mode a blocked
image becomes a ``data[]`` item with an ``error`` while the others succeed.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import time
from typing import Any

from aiohttp import web
from PIL import Image

from tests.fakeproviders.common import FakeProviderServer

MODELS = {
    "seedream-4-0-250828": "4.0",
    "seedream-4-5-251128": "4.5",
    "doubao-seedream-4-0-250828": "4.0",
    "doubao-seedream-4-5-251128": "4.5",
}
FIELDS = {
    "model",
    "prompt",
    "image",
    "size",
    "seed",
    "sequential_image_generation",
    "sequential_image_generation_options",
    "stream",
    "response_format",
    "watermark",
    "optimize_prompt_options",
}
TIERS = {"4.0": {"1K": 1024, "2K": 2048, "4K": 4096}, "4.5": {"2K": 2048, "4K": 4096}}
MIN_PIXELS = {"4.0": 921_600, "4.5": 3_686_400}
DATA_URI = re.compile(r"^data:image/(jpeg|png|webp|bmp|tiff|gif);base64,(.+)$", re.DOTALL)


class ArkRejected(Exception):
    def __init__(self, status: int, code: str, message: str, param: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param


def error_body(code: str, message: str, param: str = "", kind: str = "BadRequest") -> dict[str, Any]:
    return {
        "error": {"code": code, "message": f"{message} Request ID: 0217000000000test", "param": param, "type": kind}
    }


class FakeArkServer(FakeProviderServer):
    """Routes ``POST /api/v3/images/generations``; faults are injected on route ``create``."""

    def __init__(self) -> None:
        #: Models activated in the console; others answer 404 ModelNotOpen.
        self.activated = set(MODELS)
        #: How many pictures the model "decides" a set needs (None: as many as max_images allows).
        self.set_size: int | None = None
        #: Indexes of output images that output moderation blocks.
        self.blocked_outputs: set[int] = set()
        self.blocked_words = ("forbidden",)
        #: Images the account can still pay for (None: unlimited).
        self.credit: int | None = None
        #: Bodies of create calls that produced at least one image (and so were billed).
        self.billed: list[dict[str, Any]] = []
        super().__init__()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v3/images/generations", self._create)

    @staticmethod
    def error(status: int, code: str, message: str, param: str = "") -> web.Response:
        kinds = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 429: "TooManyRequests"}
        return web.json_response(error_body(code, message, param, kinds.get(status, "InternalError")), status=status)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        fault = await self.take_fault("create")
        if fault is not None:
            return fault
        if not self.bearer_ok(request):
            return self.error(401, "AuthenticationError", "The API key in the request is missing or invalid.")
        try:
            body = await request.json()
            count, width, height = self._validate(body)
        except ValueError:
            return self.error(400, "InvalidParameter", "The request body is not valid JSON.")
        except ArkRejected as exc:
            return self.error(exc.status, exc.code, exc.message, exc.param)
        if any(word in body["prompt"].lower() for word in self.blocked_words):
            return self.error(
                400,
                "InputTextSensitiveContentDetected",
                "The request failed because the input text may contain sensitive information.",
            )
        if self.credit is not None and self.credit < 1:
            return self.error(
                403, "AccountOverdueError", "The request failed because your account has an overdue balance."
            )
        items: list[dict[str, Any]] = []
        for index in range(count):
            if index in self.blocked_outputs:
                message = "The request failed because the output image may contain sensitive information."
                items.append({"error": {"code": "OutputImageSensitiveContentDetected", "message": message}})
            elif body.get("response_format") == "b64_json":
                name = self.host_image(width, height).split("/files/")[1].split("?")[0]
                items.append({"b64_json": base64.b64encode(self.files[name]).decode(), "size": f"{width}x{height}"})
            else:
                items.append({"url": self.host_image(width, height), "size": f"{width}x{height}"})
        made = sum(1 for item in items if "error" not in item)
        if made == 0 and count == 1:
            return self.error(
                400,
                "OutputImageSensitiveContentDetected",
                "The request failed because the output image may contain sensitive information.",
            )
        answer: dict[str, Any] = {
            "model": body["model"],
            "created": int(time.time()),
            "data": items,
            "usage": {"generated_images": made, "output_tokens": made * 16384, "total_tokens": made * 16384},
        }
        if made == 0:
            answer["error"] = {
                "code": "OutputImageSensitiveContentDetected",
                "message": "All output images were blocked.",
            }
        else:
            self.billed.append(body)
            if self.credit is not None:
                self.credit -= made
        return web.json_response(answer)

    def _validate(self, body: Any) -> tuple[int, int, int]:
        """Check the body; return (images to make, width, height)."""
        if not isinstance(body, dict):
            raise ArkRejected(400, "InvalidParameter", "The request body must be a JSON object.")
        unknown = set(body) - FIELDS
        if unknown:
            raise ArkRejected(400, "InvalidParameter", f"Unknown parameter(s) {sorted(unknown)}.", sorted(unknown)[0])
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ArkRejected(400, "MissingParameter", "The request failed because it is missing `model`.", "model")
        if model not in MODELS:
            raise ArkRejected(404, "InvalidEndpointOrModel.NotFound", f"The model or endpoint {model} does not exist.")
        if model not in self.activated:
            raise ArkRejected(404, "ModelNotOpen", f"Your account has not activated the model {model}.")
        version = MODELS[model]
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ArkRejected(400, "MissingParameter", "The request failed because it is missing `prompt`.", "prompt")
        if body.get("stream"):
            raise ArkRejected(400, "InvalidParameter", "This fake does not implement streaming.", "stream")
        if body.get("response_format", "url") not in ("url", "b64_json"):
            raise ArkRejected(400, "InvalidParameter", "`response_format` must be url or b64_json.", "response_format")
        if "watermark" in body and not isinstance(body["watermark"], bool):
            raise ArkRejected(400, "InvalidParameter", "`watermark` must be a boolean.", "watermark")
        width, height = self._size(version, body.get("size", "2048x2048"))
        references = body.get("image", [])
        references = [references] if isinstance(references, str) else references
        if not isinstance(references, list) or len(references) > 14:
            raise ArkRejected(400, "InvalidParameter", "`image` must hold 1 to 14 images.", "image")
        for reference in references:
            self._check_reference(reference)
        optimize = body.get("optimize_prompt_options")
        if optimize is not None:
            modes = ("standard",) if version == "4.5" else ("standard", "fast")
            if not isinstance(optimize, dict) or optimize.get("mode", "standard") not in modes:
                raise ArkRejected(400, "InvalidParameter", f"`optimize_prompt_options.mode` must be one of {modes}.")
        mode = body.get("sequential_image_generation", "disabled")
        if mode not in ("auto", "disabled"):
            raise ArkRejected(400, "InvalidParameter", "`sequential_image_generation` must be auto or disabled.")
        options = body.get("sequential_image_generation_options", {})
        max_images = options.get("max_images") if isinstance(options, dict) else None
        if max_images is not None and (type(max_images) is not int or not 1 <= max_images <= 15):
            raise ArkRejected(400, "InvalidParameter", "`max_images` must be an integer in [1, 15].")
        if max_images is not None and len(references) + max_images > 15:
            raise ArkRejected(400, "InvalidParameter", "The number of input images plus max_images must be <= 15.")
        if mode == "disabled":
            return 1, width, height
        allowed = max_images if max_images is not None else 15 - len(references)
        return min(allowed, self.set_size or allowed), width, height

    @staticmethod
    def _size(version: str, size: Any) -> tuple[int, int]:
        invalid = "The parameter `size` specified in the request is not valid:"
        unsupported = (
            f"{invalid} the specified size is not supported for model doubao-seedream-{version[0]}-{version[2]}."
        )
        if not isinstance(size, str):
            raise ArkRejected(400, "InvalidParameter", unsupported, "size")
        if size in TIERS[version]:
            side = TIERS[version][size]
            return side, side
        match = re.fullmatch(r"(\d+)x(\d+)", size)
        if not match:
            raise ArkRejected(400, "InvalidParameter", unsupported, "size")
        width, height = int(match[1]), int(match[2])
        if width * height < MIN_PIXELS[version]:
            raise ArkRejected(
                400,
                "InvalidParameter",
                f"{invalid} image size must be at least {MIN_PIXELS[version]} pixels.",
                "size",
            )
        if width * height > 16_777_216 or not 1 / 16 <= width / height <= 16:
            raise ArkRejected(400, "InvalidParameter", unsupported, "size")
        return width, height

    @staticmethod
    def _check_reference(reference: Any) -> None:
        if not isinstance(reference, str):
            raise ArkRejected(400, "InvalidParameter", "Each `image` must be a string.", "image")
        if reference.startswith(("http://", "https://")):
            return
        match = DATA_URI.match(reference)
        if not match:
            raise ArkRejected(
                400, "InvalidImageURL", "The image must be a URL or data:image/<format>;base64,<data>.", "image"
            )
        try:
            data = base64.b64decode(match[2], validate=True)
            with Image.open(io.BytesIO(data)) as picture:
                fmt, (width, height) = (picture.format or "").lower(), picture.size
        except (binascii.Error, OSError):
            raise ArkRejected(400, "InvalidImageURL", "The image data cannot be decoded.", "image") from None
        if fmt != match[1]:
            raise ArkRejected(400, "InvalidParameter", f"The data URI says {match[1]} but holds {fmt}.", "image")
        if len(data) > 10 * 1024 * 1024 or min(width, height) <= 14 or max(width, height) > 6000:
            raise ArkRejected(400, "InvalidParameter", "The image exceeds the size limits.", "image")
        if not 1 / 3 <= width / height <= 3:
            raise ArkRejected(400, "InvalidParameter", "The image aspect ratio must be in [1/3, 3].", "image")
