"""A strict fake of BytePlus ModelArk / Volcengine Ark ``POST /api/v3/images/generations`` (non-stream).

It knows the four Seedream 4.x model ids and their size rules (4.0: 1K/2K/4K or WxH in
[921,600, 16,777,216] px; 4.5: 2K/4K or WxH from 3,686,400 px, no ``adaptive``), at most 14
references given as URLs or lowercase ``data:image/<fmt>;base64`` URIs, refs + outputs ≤ 15, and
answers with Ark's ``{"error": {"code", "message", "param", "type"}}`` bodies.

It knows Seedream 5.x too (provider reference §10): 5.0 Lite (2K/3K, 3,686,400–10,404,496 px, 14 refs,
image sets), 5.0 Pro (1K/2K, 1,048,576–4,194,304 px), 5.0 Flash (1K/1.5K/2K, 921,600–4,624,220 px) and
5.5 (as Flash; its own maximum is unconfirmed), the last three with ≤ 10 refs and a 400 for the mere
presence of ``sequential_image_generation`` or ``stream``. ``output_format`` (jpeg, except 5.5's png)
decides the result files' format; ``background: "transparent"`` needs png, and on Pro a PNG reference
with alpha. Fields a model does not have (``output_format`` on 4.x, ``optimize_prompt_options`` on Flash
and 5.5, ``background`` on Lite) are refused like unknown ones. Moderation is simulated
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
    "seedream-5-0-260128": "5.0-lite",
    "seedream-5-0-lite-260128": "5.0-lite",
    "doubao-seedream-5-0-260128": "5.0-lite",
    "seedream-5-0-pro-260628": "5.0-pro",
    "seedream-5-0-flash-260915": "5.0-flash",
    "seedream-5-5-261028": "5.5",
    "dola-seedream-5-5-261028": "5.5",
    "doubao-seedream-5-5-261028": "5.5",
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
#: Fields of the 5.x models beyond 4.x's, and the 4.x fields they do not have.
FIELDS_5X = {
    "5.0-lite": (FIELDS | {"output_format", "tools"}),
    "5.0-pro": (FIELDS | {"output_format", "background"}) - {"stream", "sequential_image_generation_options"},
    "5.0-flash": (FIELDS | {"output_format", "background"})
    - {"stream", "sequential_image_generation_options", "optimize_prompt_options"},
    "5.5": (FIELDS | {"output_format", "background"})
    - {"stream", "sequential_image_generation_options", "optimize_prompt_options"},
}
#: Models that answer 400 to these fields even when they say "disabled" / false.
NO_SETS = {"5.0-pro", "5.0-flash", "5.5"}
TIERS = {
    "4.0": {"1K": 1024, "2K": 2048, "4K": 4096},
    "4.5": {"2K": 2048, "4K": 4096},
    "5.0-lite": {"2K": 2048, "3K": 3072},
    "5.0-pro": {"1K": 1024, "2K": 2048},
    "5.0-flash": {"1K": 1024, "1.5K": 1536, "2K": 2048},
    "5.5": {"1K": 1024, "1.5K": 1536, "2K": 2048},
}
MIN_PIXELS = {
    "4.0": 921_600,
    "4.5": 3_686_400,
    "5.0-lite": 3_686_400,
    "5.0-pro": 1_048_576,
    "5.0-flash": 921_600,
    "5.5": 921_600,
}
MAX_PIXELS = {
    "4.0": 16_777_216,
    "4.5": 16_777_216,
    "5.0-lite": 10_404_496,
    "5.0-pro": 4_194_304,
    "5.0-flash": 4_624_220,
    "5.5": 4_624_220,
}
MAX_REFERENCES = {"4.0": 14, "4.5": 14, "5.0-lite": 14, "5.0-pro": 10, "5.0-flash": 10, "5.5": 10}
OPTIMIZE_MODES = {
    "4.0": ("standard", "fast"),
    "4.5": ("standard",),
    "5.0-lite": ("standard",),
    "5.0-pro": ("standard",),
}
DEFAULT_FORMAT = {"5.0-lite": "jpeg", "5.0-pro": "jpeg", "5.0-flash": "jpeg", "5.5": "png"}
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
        fmt = body.get("output_format", DEFAULT_FORMAT.get(MODELS[body["model"]], "png"))
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
                items.append({"url": self.host_image(width, height, fmt), "size": f"{width}x{height}"})
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
        model = body.get("model")
        version = MODELS.get(model) if isinstance(model, str) else None
        if version in NO_SETS:
            for name in ("sequential_image_generation", "stream"):
                if name in body:
                    raise ArkRejected(
                        400,
                        "InvalidParameter",
                        f"The parameter `{name}` specified in the request is not valid: the parameter {name} is "
                        "not supported by the current model.",
                        name,
                    )
        unknown = set(body) - FIELDS_5X.get(version or "", FIELDS)
        if unknown:
            raise ArkRejected(400, "InvalidParameter", f"Unknown parameter(s) {sorted(unknown)}.", sorted(unknown)[0])
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
        most = MAX_REFERENCES[version]
        if not isinstance(references, list) or len(references) > most:
            raise ArkRejected(400, "InvalidParameter", f"`image` must hold 1 to {most} images.", "image")
        alpha = [self._check_reference(reference) for reference in references]
        optimize = body.get("optimize_prompt_options")
        if optimize is not None:
            modes = OPTIMIZE_MODES[version]
            if not isinstance(optimize, dict) or optimize.get("mode", "standard") not in modes:
                raise ArkRejected(400, "InvalidParameter", f"`optimize_prompt_options.mode` must be one of {modes}.")
        self._check_output(version, body, alpha)
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
    def _check_output(version: str, body: dict[str, Any], alpha: list[bool]) -> None:
        fmt = body.get("output_format", DEFAULT_FORMAT.get(version))
        if "output_format" in body and fmt not in ("png", "jpeg"):
            raise ArkRejected(400, "InvalidParameter", "`output_format` must be png or jpeg.", "output_format")
        background = body.get("background", "auto")
        if background not in ("auto", "transparent", "opaque"):
            raise ArkRejected(
                400, "InvalidParameter", "`background` must be auto, transparent or opaque.", "background"
            )
        if background == "transparent" and fmt != "png":
            raise ArkRejected(
                400, "InvalidParameter", "A transparent background needs `output_format` png.", "background"
            )
        if background == "transparent" and version == "5.0-pro" and not any(alpha):
            raise ArkRejected(
                400,
                "InvalidParameter",
                "A transparent background needs a PNG reference image with an alpha channel on this model.",
                "background",
            )

    @staticmethod
    def _size(version: str, size: Any) -> tuple[int, int]:
        invalid = "The parameter `size` specified in the request is not valid:"
        name = f"doubao-seedream-{version.replace('.', '-')}"
        unsupported = f"{invalid} the specified size is not supported for model {name}."
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
        if width * height > MAX_PIXELS[version]:
            raise ArkRejected(
                400, "InvalidParameter", f"{invalid} image size must be at most {MAX_PIXELS[version]} pixels.", "size"
            )
        if not 1 / 16 <= width / height <= 16:
            raise ArkRejected(400, "InvalidParameter", unsupported, "size")
        return width, height

    @staticmethod
    def _check_reference(reference: Any) -> bool:
        """Refuse a reference outside the limits; True when it is a PNG with an alpha channel."""
        if not isinstance(reference, str):
            raise ArkRejected(400, "InvalidParameter", "Each `image` must be a string.", "image")
        if reference.startswith(("http://", "https://")):
            return False
        match = DATA_URI.match(reference)
        if not match:
            raise ArkRejected(
                400, "InvalidImageURL", "The image must be a URL or data:image/<format>;base64,<data>.", "image"
            )
        try:
            data = base64.b64decode(match[2], validate=True)
            with Image.open(io.BytesIO(data)) as picture:
                fmt, (width, height) = (picture.format or "").lower(), picture.size
                alpha = "A" in picture.getbands() or "transparency" in picture.info
        except (binascii.Error, OSError):
            raise ArkRejected(400, "InvalidImageURL", "The image data cannot be decoded.", "image") from None
        if fmt != match[1]:
            raise ArkRejected(400, "InvalidParameter", f"The data URI says {match[1]} but holds {fmt}.", "image")
        if len(data) > 10 * 1024 * 1024 or min(width, height) <= 14 or max(width, height) > 6000:
            raise ArkRejected(400, "InvalidParameter", "The image exceeds the size limits.", "image")
        if not 1 / 3 <= width / height <= 3:
            raise ArkRejected(400, "InvalidParameter", "The image aspect ratio must be in [1/3, 3].", "image")
        return fmt == "png" and alpha
