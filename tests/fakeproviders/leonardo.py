"""Strict fake of Leonardo.AI for Seedream: v2 create, v1 poll, v1 init-image + presigned S3 upload, /v1/me.

Validation follows the v2 OpenAPI schema (unknown fields, types, ranges, max 6 references, max 1 style)
and the size decision documented in ``bot.providers.leonardo``: 32–14142 per side, and Seedream's pixel
window per model (4.0: 921,600–16,777,216; 4.5: 3,686,400–16,777,216). Seedream 5.x follows the v2 schema
per model (provider reference §10.1): ``seedream-5.0-pro`` 768–2048 a side, quantity 1–6, seed up to
2147483637, ``mode``/``output_format``, no ``style_ids``; ``bytedance/seedream-5.0-flash`` 1024–3008 a
side, quantity 1–8, no seed and no ``style_ids``; ≤ 10 references each, without ``strength`` on Flash,
and the model's own pixel window (Pro 1,048,576–4,194,304, Flash at most 4,624,220). For
``bytedance/seedream-5.5`` nothing beyond ≤ 10 references is documented: this fake takes only the fields
every 5.x guide shows (prompt, size, quantity, references without ``strength``) within 1024–2048 a side.

Validation errors come back in the GraphQL-style list observed on v2 (a prompt over the schema's 9999
characters with the code ``VALIDATION_ERROR``); auth, moderation and reference errors in the documented
v1 dict shape. The out-of-credit answer is undocumented: HTTP 402 with a v1 dict is this fake's guess.

Links are signed (see ``common``): results, and the presigned upload URL too. Leonardo's real upload
URL is a bare bucket address whose signature is in the form fields; the fake signs its query as
well, so an upload link altered on the way is refused here as a signed link would be.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web
from PIL import Image

from tests.fakeproviders.common import FakeProviderServer, link_intact, signed_link

MAX_PIXELS = 16_777_216
SIDE_RANGE = (32, 14142)
MAX_SEED = 2_147_483_638


@dataclass(frozen=True)
class ModelSpec:
    pixels: tuple[int, int]
    sides: tuple[int, int]
    default_side: int
    parameters: frozenset[str]
    max_quantity: int = 8
    max_references: int = 6
    max_seed: int = MAX_SEED
    #: Keys an ``image_reference`` item may have.
    reference_keys: frozenset[str] = frozenset({"image", "strength", "order"})


_V4 = frozenset({"prompt", "width", "height", "quantity", "seed", "prompt_enhance", "style_ids", "guidances"})
SPECS = {
    "seedream-4.5": ModelSpec((3_686_400, MAX_PIXELS), SIDE_RANGE, 2048, _V4),
    "seedream-4.0": ModelSpec((921_600, MAX_PIXELS), SIDE_RANGE, 1024, _V4),
    "seedream-5.0-pro": ModelSpec(
        (1_048_576, 4_194_304),
        (768, 2048),
        2048,
        frozenset(_V4 - {"style_ids"} | {"mode", "output_format"}),
        max_quantity=6,
        max_references=10,
        max_seed=2_147_483_637,
    ),
    "bytedance/seedream-5.0-flash": ModelSpec(
        (921_600, 4_624_220),
        (1024, 3008),
        2048,
        frozenset(_V4 - {"style_ids", "seed"} | {"output_format"}),
        max_references=10,
        reference_keys=frozenset({"image", "order"}),
    ),
    "bytedance/seedream-5.5": ModelSpec(
        (1_048_576, 4_624_220),
        (1024, 2048),
        2048,
        frozenset({"prompt", "width", "height", "quantity", "guidances"}),
        max_quantity=4,
        max_references=10,
        reference_keys=frozenset({"image", "order"}),
    ),
}
STYLE_UUIDS = {
    "a5632c7c-ddbb-4e2f-ba34-8456ab3ac436",
    "6fedbf1f-4a17-45ec-84fb-92fe524a29ef",
    "111dc692-d470-4eec-b791-3475abac4c46",
    "594c4a08-a522-4e0e-b7ff-e4dac4b6b622",
    "ab5a4220-7c42-41e5-a578-eddb9fed3d75",
    "5bdc3f2a-1be6-4d1c-8e77-992a30824a2c",
    "dee282d3-891f-4f73-ba02-7f8131e5541b",
    "556c1ee5-ec38-42e8-955a-1e82dad0ffa1",
}
#: A prompt containing this word is refused by the "moderation filter".
BLOCKED_WORD = "gore"
#: A prompt containing this marker gets its first output flagged ``nsfw: true``.
NSFW_MARKER = "[flag-first-output]"
COST_PER_IMAGE = 28
EXTENSION_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
MODERATION_MESSAGE = f"content moderation filter: {BLOCKED_WORD}"
BAD_KEY_MESSAGE = "Authentication hook unauthorized this request"
OUT_OF_CREDIT_MESSAGE = "You do not have enough API credits to complete this request."
MAX_PROMPT_CHARS = 9999
PROMPT_TOO_LONG_MESSAGE = f"parameters.prompt: String must contain at most {MAX_PROMPT_CHARS} character(s)"


class Rejected(Exception):
    def __init__(self, message: str, code: str = "validation-failed", status: int = 400, graphql: bool = True):
        super().__init__(message)
        self.message, self.code, self.status, self.graphql = message, code, status, graphql

    def response(self) -> web.Response:
        if self.graphql:
            body: Any = [
                {"message": self.message, "extensions": {"code": self.code, "details": {"message": self.message}}}
            ]
        else:
            body = {"error": self.message, "path": "$", "code": self.code}
        return web.json_response(body, status=self.status)


@dataclass
class FakeGeneration:
    id: str
    model: str
    prompt: str
    width: int
    height: int
    quantity: int
    seed: int | None
    polls_pending: int
    fail: bool
    images: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class InitImage:
    id: str
    extension: str
    key: str
    fields: dict[str, str]
    created: float = field(default_factory=time.monotonic)
    data: bytes | None = None


def _int(value: Any, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Rejected(f"expected an integer for type 'Int' in variable \"{name}\", but found {type(value).__name__}")
    if not low <= value <= high:
        raise Rejected(f'"{name}" must be between {low} and {high}, got {value}')
    return value


def _only(body: dict[str, Any], allowed: set[str], graphql: bool = True) -> None:
    for key in body:
        if key not in allowed:
            raise Rejected(f"Unexpected variable {key}", code="bad-request", graphql=graphql)


class FakeLeonardo(FakeProviderServer):
    def __init__(self) -> None:
        super().__init__()
        self.generations: dict[str, FakeGeneration] = {}
        self.init_images: dict[str, InitImage] = {}
        self.generated_image_ids: set[str] = set()
        #: How many polls answer PENDING before a generation completes.
        self.pending_polls = 1
        self.credits = 100_000
        self.flat_create_response = False
        self.fail_generations = False
        self.upload_ttl_seconds = 120.0
        self.accepted_creates = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/generations", self.create)
        app.router.add_get("/v1/generations/{generation_id}", self.poll)
        app.router.add_post("/v1/init-image", self.init_image)
        app.router.add_post("/s3/upload", self.s3_upload)
        app.router.add_get("/v1/me", self.me)

    def _auth(self, request: web.Request) -> web.Response | None:
        if self.bearer_ok(request):
            return None
        return Rejected(BAD_KEY_MESSAGE, code="access-denied", status=401, graphql=False).response()

    @staticmethod
    async def _json(request: web.Request, graphql: bool) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise Rejected("content-type must be application/json", code="bad-request", graphql=graphql)
        try:
            body = await request.json()
        except ValueError:
            raise Rejected("invalid JSON body", code="invalid-json", graphql=graphql) from None
        if not isinstance(body, dict):
            raise Rejected("the body must be a JSON object", code="bad-request", graphql=graphql)
        return body

    # -- POST /v2/generations ----------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.StreamResponse:
        if (fault := await self.take_fault("create")) is not None:
            return fault
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            body = await self._json(request, graphql=True)
            generation = self._validate_create(body)
        except Rejected as exc:
            return exc.response()
        cost = COST_PER_IMAGE * generation.quantity
        if self.credits < cost:
            return Rejected(OUT_OF_CREDIT_MESSAGE, code="insufficient-credits", status=402, graphql=False).response()
        self.credits -= cost
        self.accepted_creates += 1
        self.generations[generation.id] = generation
        answer = {"generationId": generation.id, "apiCreditCost": cost}
        return web.json_response(answer if self.flat_create_response else {"generate": answer})

    def _validate_create(self, body: dict[str, Any]) -> FakeGeneration:
        _only(body, {"model", "public", "parameters"})
        model = body.get("model")
        if model not in SPECS:
            raise Rejected(
                f"{model} is not supported within the Production API. Please try again with a different model ID.",
                code="unexpected",
                graphql=False,
            )
        if "public" in body and not isinstance(body["public"], bool):
            raise Rejected("expected a boolean for type 'Boolean', but found a string")
        params = body.get("parameters")
        if not isinstance(params, dict):
            raise Rejected('expecting a value for non-nullable variable: "parameters"')
        spec = SPECS[model]
        _only(params, set(spec.parameters))
        prompt = params.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise Rejected('expecting a value for non-nullable variable: "prompt"')
        if len(prompt) > MAX_PROMPT_CHARS:
            raise Rejected(PROMPT_TOO_LONG_MESSAGE, code="VALIDATION_ERROR")
        width = _int(params.get("width", spec.default_side), "width", *spec.sides)
        height = _int(params.get("height", spec.default_side), "height", *spec.sides)
        low, high = spec.pixels
        if not low <= width * height <= high:
            raise Rejected(f"image size must be between {low} and {high} pixels, got {width}x{height}")
        quantity = _int(params.get("quantity", 1), "quantity", 1, spec.max_quantity)
        seed = _int(params["seed"], "seed", 0, spec.max_seed) if "seed" in params else None
        if params.get("mode", "QUALITY") not in ("FAST", "QUALITY"):
            raise Rejected(f'invalid value for enum "mode": {params["mode"]!r}')
        if params.get("output_format", "jpeg") not in ("jpeg", "png"):
            raise Rejected(f'invalid value for enum "output_format": {params["output_format"]!r}')
        if params.get("prompt_enhance", "AUTO") not in ("AUTO", "ON", "OFF"):
            raise Rejected(f'invalid value for enum "prompt_enhance": {params["prompt_enhance"]!r}')
        styles = params.get("style_ids", [])
        if not isinstance(styles, list) or len(styles) > 1 or any(s not in STYLE_UUIDS for s in styles):
            raise Rejected(f'"style_ids" takes at most one of the preset style ids, got {styles!r}')
        self._validate_guidances(params.get("guidances", {}), spec)
        if BLOCKED_WORD in prompt.lower():
            raise Rejected(MODERATION_MESSAGE, code="unexpected", graphql=False)
        return FakeGeneration(
            id=str(uuid.uuid4()),
            model=model,
            prompt=prompt,
            width=width,
            height=height,
            quantity=quantity,
            seed=seed,
            polls_pending=self.pending_polls,
            fail=self.fail_generations,
        )

    def _validate_guidances(self, guidances: Any, spec: ModelSpec) -> None:
        if not isinstance(guidances, dict):
            raise Rejected('"guidances" must be an object')
        _only(guidances, {"image_reference"})
        references = guidances.get("image_reference", [])
        if not isinstance(references, list):
            raise Rejected('"image_reference" must be an array')
        if len(references) > spec.max_references:
            raise Rejected("Too many images", code="bad-request", graphql=False)
        for item in references:
            if not isinstance(item, dict) or not isinstance(item.get("image"), dict):
                raise Rejected('expecting a value for non-nullable variable: "image"')
            _only(item, set(spec.reference_keys))
            _only(item["image"], {"id", "type", "url", "data", "width", "height"})
            if item.get("strength", "MID") not in ("LOW", "MID", "HIGH"):
                raise Rejected(f'invalid value for enum "strength": {item["strength"]!r}')
            image_id, kind = item["image"].get("id"), item["image"].get("type")
            if kind == "UPLOADED":
                init = self.init_images.get(str(image_id))
                if init is None or init.data is None:
                    raise Rejected("invalid init image id", code="unexpected", graphql=False)
            elif kind == "GENERATED":
                if image_id not in self.generated_image_ids:
                    raise Rejected("couldn't access image", code="unexpected", graphql=False)
            else:
                raise Rejected(f"image type {kind!r} is not implemented by this fake (the bot should not send it)")

    # -- GET /v1/generations/{id} ------------------------------------------------------------------
    async def poll(self, request: web.Request) -> web.StreamResponse:
        if (fault := await self.take_fault("poll")) is not None:
            return fault
        if (denied := self._auth(request)) is not None:
            return denied
        generation = self.generations.get(request.match_info["generation_id"])
        if generation is None:
            return web.json_response({"generations_by_pk": None})
        if generation.polls_pending > 0:
            generation.polls_pending -= 1
            status = "PENDING"
        else:
            status = "FAILED" if generation.fail else "COMPLETE"
        if status == "COMPLETE" and not generation.images:
            for index in range(generation.quantity):
                image_id = str(uuid.uuid4())
                self.generated_image_ids.add(image_id)
                url = self.host_image(generation.width, generation.height)
                nsfw = index == 0 and NSFW_MARKER in generation.prompt
                generation.images.append(
                    {"id": image_id, "url": url, "nsfw": nsfw, "likeCount": 0, "motionMP4URL": None}
                )
        pk = {
            "id": generation.id,
            "status": status,
            "createdAt": "2026-10-08T12:00:00.000Z",
            "prompt": generation.prompt,
            "negativePrompt": None,
            "modelId": None,
            "imageWidth": generation.width,
            "imageHeight": generation.height,
            "seed": generation.seed,
            "public": False,
            "presetStyle": None,
            "generated_images": generation.images if status == "COMPLETE" else [],
            "generation_elements": [],
        }
        return web.json_response({"generations_by_pk": pk})

    # -- POST /v1/init-image and the presigned S3 form upload --------------------------------------
    async def init_image(self, request: web.Request) -> web.StreamResponse:
        if (fault := await self.take_fault("init_image")) is not None:
            return fault
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            body = await self._json(request, graphql=False)
            _only(body, {"extension"}, graphql=False)
        except Rejected as exc:
            return exc.response()
        extension = body.get("extension")
        if extension not in EXTENSION_FORMATS:
            return Rejected("invalid file extension", code="unexpected", graphql=False).response()
        image_id = str(uuid.uuid4())
        key = f"users/fake-user/initImages/{image_id}.{extension}"
        fields = {
            "Content-Type": f"image/{'jpeg' if extension == 'jpg' else extension}",
            "bucket": "fake-leonardo-uploads",
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": "FAKECREDENTIAL/20261008/us-east-1/s3/aws4_request",
            "X-Amz-Date": "20261008T120000Z",
            "key": key,
            "Policy": "eyJjb25kaXRpb25zIjpbXX0=",
            "X-Amz-Signature": uuid.uuid4().hex,
        }
        self.init_images[image_id] = InitImage(image_id, extension, key, fields)
        url = signed_link(self.base_url, "/s3/upload")
        slot = {"id": image_id, "url": url, "fields": json.dumps(fields), "key": key}
        return web.json_response({"uploadInitImage": slot})

    @staticmethod
    def _s3_error(status: int, code: str, message: str) -> web.Response:
        xml = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        return web.Response(status=status, text=xml, content_type="application/xml")

    async def s3_upload(self, request: web.Request) -> web.StreamResponse:
        if (fault := await self.take_fault("s3")) is not None:
            return fault
        if not link_intact(request.raw_path):
            self.refused_links.append(request.raw_path)
            return self._s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match.")
        if "Authorization" in request.headers:
            return self._s3_error(403, "AccessDenied", "Unsupported Authorization Type")
        if request.content_type != "multipart/form-data":
            return self._s3_error(412, "PreconditionFailed", "Bucket POST must be of the enclosure-type multipart")
        form: dict[str, str] = {}
        data: bytes | None = None
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.name == "file":
                data = bytes(await part.read())
                break  # S3 ignores every field after the file
            form[part.name] = await part.text()
        init = next((i for i in self.init_images.values() if i.key == form.get("key")), None)
        if init is None or any(form.get(k) != v for k, v in init.fields.items()):
            return self._s3_error(403, "AccessDenied", "Invalid according to Policy: Policy Condition failed")
        if time.monotonic() - init.created > self.upload_ttl_seconds:
            return self._s3_error(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
        if not data:
            return self._s3_error(400, "InvalidArgument", "POST requires exactly one file upload per request.")
        try:
            with Image.open(io.BytesIO(data)) as picture:
                picture.load()
                actual = picture.format
        except Exception:
            actual = None
        if actual != EXTENSION_FORMATS[init.extension]:
            return self._s3_error(400, "InvalidArgument", f"fake: the file is not a {init.extension} image")
        init.data = data
        return web.Response(status=204)

    # -- GET /v1/me --------------------------------------------------------------------------------
    async def me(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._auth(request)) is not None:
            return denied
        user = {"id": "00000000-0000-0000-0000-000000000001", "username": "fake"}
        details = {"user": user, "apiConcurrencySlots": 10, "apiPaidTokens": self.credits, "apiSubscriptionTokens": 0}
        return web.json_response({"user_details": [details]})

    def uploaded_images(self) -> list[InitImage]:
        return [i for i in self.init_images.values() if i.data is not None]
