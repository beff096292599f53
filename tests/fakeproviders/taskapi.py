"""A strict fake of the gccai / APIMart task API for ``doubao-seedream-4.5`` (seed 004) and 5.0 Lite.

5.0 Lite (``doubao-seedream-5-0-lite`` and its spellings, provider reference §10.4): ``resolution`` 2K
or 3K only, the aspect enum without ``9:21``, ``n`` 1–4, ``output_format`` jpeg (default) or png, and
the documented 16:9 sizes 2848×1600 (2K) and 4096×2304 (3K).

Validates create bodies as the page documents them (model list, ``size`` aspect enum, ``resolution``
2K/4K, ``n`` a JSON number 1–15 and > 1 only with ``image_urls``, ≤ 10 data-URI references decoded and
checked against the limits, refs + n ≤ 15) and is stricter on one point: unknown fields are refused,
so a typo in our body fails a test. Tasks go pending → processing → completed over polls and their
results are real PNGs of the size the docs give for aspect × resolution.

The error body format is undocumented; answers follow APIMart's OpenAI-like shape
``{"code": <int>, "error": {"message", "type"[, "code"]}}``.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image, UnidentifiedImageError

from tests.fakeproviders.common import FakeProviderServer

MODELS = frozenset({"doubao-seedance-4-5", "Doubao-Seedream-4.5", "doubao-seedream-4.5", "doubao-seedream-4-5"})
LITE_MODELS = frozenset({"doubao-seedream-5-0-lite", "doubao-seedream-5.0-lite", "Doubao-Seedream-5.0-lite"})
ASPECTS = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9", "9:21")
#: Output sizes: the doc's table (2K 1:1 2048², 16:9 2560×1440; 4K 1:1 4096², 16:9 5404×3040), other ratios
#: from Seedream's recommended 2K sizes and 4K sizes of about the same 16.5 MP.
SIZES = {
    "2K": {
        "1:1": (2048, 2048),
        "4:3": (2304, 1728),
        "3:4": (1728, 2304),
        "16:9": (2560, 1440),
        "9:16": (1440, 2560),
        "3:2": (2496, 1664),
        "2:3": (1664, 2496),
        "21:9": (3024, 1296),
        "9:21": (1296, 3024),
    },
    "4K": {
        "1:1": (4096, 4096),
        "4:3": (4704, 3520),
        "3:4": (3520, 4704),
        "16:9": (5404, 3040),
        "9:16": (3040, 5404),
        "3:2": (4992, 3328),
        "2:3": (3328, 4992),
        "21:9": (6198, 2656),
        "9:21": (2656, 6198),
    },
}
#: 5.0 Lite: bot.sizes' 2K table scaled 1.5× for 3K, with the documented 16:9 / 9:16 sizes.
SIZES_LITE = {
    "2K": {**SIZES["2K"], "16:9": (2848, 1600), "9:16": (1600, 2848)},
    "3K": {
        **{aspect: (w * 3 // 2, h * 3 // 2) for aspect, (w, h) in SIZES["2K"].items()},
        "16:9": (4096, 2304),
        "9:16": (2304, 4096),
    },
}
FIELDS = frozenset(
    {
        "model",
        "prompt",
        "size",
        "resolution",
        "n",
        "image_urls",
        "optimize_prompt_options",
        "sequential_image_generation",
        "sequential_image_generation_options",
        "watermark",
    }
)
DATA_URI = re.compile(r"^data:image/(jpeg|png);base64,(.+)$", re.DOTALL)
#: A prompt containing this is refused at create by the input moderation.
BLOCKED_PROMPT = "[blocked]"
OUTPUT_BLOCKED = {
    "code": "OutputImageSensitiveContentDetected",
    "message": "The request failed because the output image may contain sensitive information.",
}
GENERATION_FAILED = {"code": "generation_failed", "message": "Image generation failed, please try again."}


def error_body(status: int, message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    error = {"message": message, "type": kind}
    if code:
        error["code"] = code
    return {"code": status, "error": error}


class Rejected(Exception):
    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error", code: str = "") -> None:
        super().__init__(message)
        self.response = web.json_response(error_body(status, message, kind, code or None), status=status)


@dataclass
class FakeTask:
    id: str
    n: int
    width: int
    height: int
    body: dict[str, Any]
    #: None: succeeds; else the ``error`` object the failed task reports.
    failure: dict[str, Any] | None = None
    polls: int = 0
    urls: list[str] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))


class FakeTaskApi(FakeProviderServer):
    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, FakeTask] = {}
        #: Credits left (one per image); None = unlimited.
        self.balance: int | None = None
        #: Polls answered pending/processing before a task completes.
        self.polls_before_done = 2
        #: "list": one ``images`` entry with every URL in a list; "string": one entry per URL.
        self.url_style = "list"
        #: Group (n > 1) tasks make this many fewer images than asked (Seedream decides the count).
        self.group_shortfall = 0
        #: Outcomes for the next created tasks, in order: None succeeds, a dict fails with that error.
        self.task_outcomes: deque[dict[str, Any] | None] = deque()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/images/generations", self._create)
        app.router.add_get("/v1/tasks/{task_id}", self._poll)

    # -- create -------------------------------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.StreamResponse:
        fault = await self.take_fault("create")
        if fault is not None:
            return fault
        if not self.bearer_ok(request):
            return web.json_response(
                error_body(401, "Invalid API key provided", "authentication_error", "invalid_api_key"), status=401
            )
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(
                error_body(400, "Request body is not valid JSON", "invalid_request_error"), status=400
            )
        try:
            n, width, height = self.validate(body)
            if BLOCKED_PROMPT in body["prompt"]:
                raise Rejected(
                    "The request failed because the input text may contain sensitive information.",
                    kind="content_policy_violation",
                    code="InputTextSensitiveContentDetected",
                )
            if self.balance is not None:
                if self.balance < n:
                    raise Rejected(
                        "Insufficient account balance, please recharge", status=402, kind="insufficient_balance"
                    )
                self.balance -= n
        except Rejected as rejected:
            return rejected.response
        task = FakeTask(self.next_id("task_01K8AYYM6R"), n, width, height, body)
        task.failure = self.task_outcomes.popleft() if self.task_outcomes else None
        self.tasks[task.id] = task
        return web.json_response({"code": 200, "data": [{"status": "submitted", "task_id": task.id}]})

    def validate(self, body: Any) -> tuple[int, int, int]:
        """Returns (n, width, height) of an acceptable body; raises Rejected as the API would."""
        if not isinstance(body, dict):
            raise Rejected("Request body must be a JSON object")
        lite = body.get("model") in LITE_MODELS
        unknown = sorted(set(body) - FIELDS - ({"output_format"} if lite else set()))
        if unknown:
            raise Rejected(f"Unknown parameter(s): {', '.join(unknown)}")
        if body.get("model") not in MODELS | LITE_MODELS:
            raise Rejected(f"Model {body.get('model')!r} is not supported; use one of {sorted(MODELS | LITE_MODELS)}")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise Rejected("prompt is required")
        aspects = tuple(a for a in ASPECTS if not (lite and a == "9:21"))
        size = body.get("size", "1:1")
        if size not in (*aspects, "auto"):
            raise Rejected(f"size must be one of {', '.join(aspects)}, auto")
        resolution = body.get("resolution", "2K")
        table = SIZES_LITE if lite else SIZES
        if resolution == "1K":
            raise Rejected("Seedream-4.5 does not support 1K resolution")
        if resolution not in table:
            raise Rejected(f"resolution must be {' or '.join(table)}")
        if body.get("output_format", "jpeg") not in ("jpeg", "png"):
            raise Rejected("output_format must be jpeg or png")
        n = body.get("n", 1)
        most = 4 if lite else 15
        if type(n) is not int:
            raise Rejected("n must be a number, not a string")
        if not 1 <= n <= most:
            raise Rejected(f"n must be between 1 and {most}")
        references = self._references(body.get("image_urls"))
        if size == "auto" and not references:
            raise Rejected("size 'auto' requires image_urls")
        if n > 1 and not references:
            raise Rejected("Pure text-to-image cannot generate multiple images; provide image_urls to use n > 1")
        if len(references) + n > 15:
            raise Rejected("The number of reference images plus generated images must not exceed 15")
        self._check_options(body)
        if size == "auto":
            first_w, first_h = references[0]
            size = min(aspects, key=lambda a: abs(int(a.split(":")[0]) / int(a.split(":")[1]) - first_w / first_h))
        width, height = table[resolution][size]
        return n, width, height

    @staticmethod
    def _references(value: Any) -> list[tuple[int, int]]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Rejected("image_urls must be an array of strings")
        if len(value) > 10:
            raise Rejected("image_urls accepts at most 10 images")
        dims = []
        for index, uri in enumerate(value):
            if uri.startswith(("http://", "https://")):
                raise Rejected(f"image_urls[{index}]: failed to download the image")
            match = DATA_URI.match(uri)
            if not match:
                raise Rejected(f"image_urls[{index}]: use a URL or data:image/{{jpeg|png}};base64,... data URI")
            try:
                data = base64.b64decode(match.group(2), validate=True)
            except (binascii.Error, ValueError):
                raise Rejected(f"image_urls[{index}]: invalid base64 data") from None
            if len(data) > 10 * 1024 * 1024:
                raise Rejected(f"image_urls[{index}]: image exceeds 10MB")
            try:
                with Image.open(io.BytesIO(data)) as image:
                    fmt, (width, height) = image.format, image.size
                    image.load()
            except (UnidentifiedImageError, OSError, SyntaxError):
                raise Rejected(f"image_urls[{index}]: image cannot be decoded") from None
            if fmt != {"jpeg": "JPEG", "png": "PNG"}[match.group(1)]:
                raise Rejected(f"image_urls[{index}]: content is {fmt}, not {match.group(1)}")
            if width <= 14 or height <= 14:
                raise Rejected(f"image_urls[{index}]: width and height must be greater than 14px")
            if not 1 / 3 <= width / height <= 3:
                raise Rejected(f"image_urls[{index}]: aspect ratio must be between 1/3 and 3")
            if width * height > 6000 * 6000:
                raise Rejected(f"image_urls[{index}]: image exceeds 6000x6000 pixels")
            dims.append((width, height))
        return dims

    @staticmethod
    def _check_options(body: dict[str, Any]) -> None:
        options = body.get("optimize_prompt_options")
        if options is not None and (not isinstance(options, dict) or options.get("mode") not in ("standard", "fast")):
            raise Rejected("optimize_prompt_options.mode must be standard or fast")
        if body.get("sequential_image_generation", "disabled") not in ("disabled", "auto"):
            raise Rejected("sequential_image_generation must be disabled or auto")
        group = body.get("sequential_image_generation_options")
        if group is not None:
            max_images = group.get("max_images") if isinstance(group, dict) else None
            if type(max_images) is not int or not 1 <= max_images <= 15:
                raise Rejected("sequential_image_generation_options.max_images must be a number from 1 to 15")
        if not isinstance(body.get("watermark", False), bool):
            raise Rejected("watermark must be a boolean")

    # -- poll ---------------------------------------------------------------------------------------
    async def _poll(self, request: web.Request) -> web.StreamResponse:
        fault = await self.take_fault("poll")
        if fault is not None:
            return fault
        if not self.bearer_ok(request):
            return web.json_response(error_body(401, "Invalid API key provided", "authentication_error"), status=401)
        if request.query.get("language", "en") not in ("zh", "en", "ko", "ja"):
            return web.json_response(
                error_body(400, "language must be zh, en, ko or ja", "invalid_request_error"), status=400
            )
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return web.json_response(error_body(404, "Task not found", "not_found_error"), status=404)
        task.polls += 1
        data: dict[str, Any] = {"id": task.id, "created": task.created, "estimated_time": 20}
        if task.polls <= self.polls_before_done:
            data.update(status="pending" if task.polls == 1 else "processing", progress=min(90, 30 * task.polls))
        elif task.failure is not None:
            data.update(status="failed", progress=0, error=task.failure)
        else:
            if not task.urls:
                made = max(1, task.n - self.group_shortfall) if task.n > 1 else 1
                task.urls = [self.host_image(task.width, task.height) for _ in range(made)]
            expires = int(time.time()) + 86400
            if self.url_style == "list":
                images: list[dict[str, Any]] = [{"url": list(task.urls), "expires_at": expires}]
            else:
                images = [{"url": url, "expires_at": expires} for url in task.urls]
            data.update(status="completed", progress=100, result={"images": images}, completed=int(time.time()))
        return web.json_response({"code": 200, "data": data})

    def polls_of(self, task_id: str) -> int:
        return self.tasks[task_id].polls
