"""The one interface every Seedream provider implements.

A provider declares what it accepts (``Capabilities``) so a request it cannot serve is refused before
any quota is spent, and generates in two persisted steps: ``submit`` (returns a ``Submission`` the job
engine saves, e.g. a task id) then ``collect`` (polls if needed and downloads the images). After a
restart the engine calls ``collect`` again with the saved submission instead of creating a new task.
"""

from __future__ import annotations

import asyncio
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from bot import sizes
from bot.errors import InvalidRequest
from bot.i18n import DEFAULT_LOCALE, _, translate
from bot.images import StoredImage, encode_for_provider


class GenerationRequest(BaseModel):
    """What a member asked for, in our own vocabulary; each provider maps it onto its API."""

    prompt: str
    aspect_ratio: str = "1:1"
    resolution: str = "2K"
    count: int = Field(default=1, ge=1)
    seed: int | None = None
    style: str | None = None
    enhance: bool = False
    #: A transparent background (PNG with alpha), where the model offers it (``transparent_background``).
    transparent: bool = False
    references: list[StoredImage] = []


class Submission(BaseModel):
    """What ``submit`` hands back; saved with the job so a restart can resume without a new task."""

    task_ids: list[str] = []
    #: Result links already known (synchronous APIs answer with them at once).
    result_urls: list[str] = []
    #: The provider's id of each result link, where it has one (same order as result_urls).
    result_ids: list[str | None] = []
    #: Anything else the provider needs to pick up where it left off.
    data: dict[str, Any] = {}


class GenerationResult(BaseModel):
    images: list[StoredImage]
    #: Things the member should be told (e.g. "1 of 4 images was blocked by the provider").
    notices: list[str] = []


_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def number(value: int) -> str:
    """A count as members read it: 4000, 9999, 10,234 (no separator in four-digit numbers)."""
    return str(value) if abs(value) < 10_000 else f"{value:,}"


class Capabilities(BaseModel):
    """What one provider+model accepts; ``check`` refuses anything else with a helpful message.

    Prompt length: ``max_prompt_chars`` is a limit the provider *enforces* (Leonardo's v2 schema:
    1–9999 characters), checked before anything is queued or charged. Where a provider only
    *recommends* a length (ByteDance's "at most 300 Chinese characters or 600 English words" on
    Novita, HighwayAPI and Ark) the bot is tolerant: it sends the prompt, and ``prompt_advice``
    gives the member a notice that the rest may carry less weight. Characters are counted as
    Python (and JSON Schema's ``maxLength``) count them: code points of the stripped prompt.

    Output size: ``output_pixels`` / ``output_sides`` / ``output_ratio_range`` are the documented windows
    of the size sent; ``scale_up_to_min_pixels`` means a smaller size is enlarged to the window's lower
    bounds (aspect kept) instead of refused, ``scale_down_to_fit`` that a larger one is shrunk to its upper
    bounds (Leonardo's 5.0 Pro takes at most 2048 px a side, so its 16:9 "2K" is 2048×1152), and
    ``dimensions`` already returns the adjusted size.

    Model: ``family`` / ``strengths`` describe the model to members (``label``), ``cost_weight`` is its
    default quota weight per image (5.0 Pro costs twice the others), ``image_sets`` says that ``count > 1``
    is one request in which the model decides the set (it may make fewer); without it several images are
    made by separate single-image calls.
    """

    model_config = ConfigDict(frozen=True)

    kind: str
    model: str
    aspect_ratios: tuple[str, ...]
    resolutions: tuple[str, ...]
    max_count: int
    max_references: int
    #: Upper bound of references + outputs in one request, where the API has one.
    max_total_images: int | None = None
    reference_formats: tuple[str, ...] = ("image/png", "image/jpeg")
    reference_max_bytes: int = 10 * 1024 * 1024
    reference_max_pixels: int = 6000 * 6000
    reference_ratio_range: tuple[float, float] | None = None
    reference_min_side: int = 1
    #: Inclusive seed range, or None when the API takes no seed.
    seed_range: tuple[int, int] | None = None
    styles: tuple[str, ...] = ()
    prompt_enhance: bool = False
    #: Longest prompt (characters) the provider accepts; None when it documents no hard limit.
    max_prompt_chars: int | None = None
    #: Length the provider recommends but does not enforce: English words / CJK characters.
    recommended_prompt_words: int | None = None
    recommended_prompt_cjk_chars: int | None = None
    #: Inclusive total-pixel window of the size sent, where the API documents one.
    output_pixels: tuple[int, int] | None = None
    #: Inclusive per-side window (width and height) of the size sent, where the API documents one.
    output_sides: tuple[int, int] | None = None
    #: Sizes under ``output_pixels[0]`` are enlarged to it (aspect kept) rather than refused.
    scale_up_to_min_pixels: bool = False
    #: Sizes over ``output_pixels[1]`` or ``output_sides[1]`` are shrunk to fit (aspect kept) rather than refused.
    scale_down_to_fit: bool = False
    #: Inclusive window of width / height of the size sent, where the API documents one.
    output_ratio_range: tuple[float, float] | None = None
    #: Aspect "auto" (match the first reference) is only allowed with references.
    auto_aspect_needs_reference: bool = True
    #: Seedream family ("5.5", "5.0 Lite" …) and its strengths in a few words; None for unknown ids.
    family: str | None = None
    strengths: str = ""
    #: Default quota units per image of this model (times the resolution weight).
    cost_weight: int = Field(default=1, ge=0)
    #: ``count > 1`` is one model-decided set (Seedream's sequential generation) rather than separate calls.
    image_sets: bool = False
    #: ``GenerationRequest.transparent`` is served (a PNG with an alpha channel).
    transparent_background: bool = False

    @property
    def label(self) -> str:
        """A few words for a model choice: ``5.5 — best quality, 1K/2K``."""
        return self.label_in(DEFAULT_LOCALE)

    def label_in(self, locale: str) -> str:
        """``label`` with the strengths in ``locale`` (``5.5 — beste Qualität, 1K/2K``)."""
        name = self.family or self.model
        tiers = "/".join(self.resolutions)
        if not self.strengths:
            return f"{name} — {tiers}"
        strengths = translate(locale, self.strengths, context="model strength") or self.strengths
        return f"{name} — {strengths}, {tiers}"

    def check(self, request: GenerationRequest) -> None:
        """Raise InvalidRequest, saying what is allowed, if this provider cannot serve the request."""
        label = f"{self.kind} ({self.model})"
        prompt = request.prompt.strip()
        if not prompt:
            raise InvalidRequest(_("Please describe the picture you want: the prompt is empty."))
        if self.max_prompt_chars is not None and len(prompt) > self.max_prompt_chars:
            raise InvalidRequest(
                _(
                    "Your prompt is {length} characters; {model} takes at most {limit}. Please shorten it.",
                    length=number(len(prompt)),
                    model=self.kind,
                    limit=number(self.max_prompt_chars),
                )
            )
        if request.aspect_ratio not in self.aspect_ratios:
            raise InvalidRequest(
                _(
                    "Aspect ratio {aspect} is not available on {model}; choose one of {choices}.",
                    aspect=request.aspect_ratio,
                    model=label,
                    choices=", ".join(self.aspect_ratios),
                )
            )
        if request.aspect_ratio == "auto" and self.auto_aspect_needs_reference and not request.references:
            raise InvalidRequest(_("Aspect ratio 'auto' follows a reference image, so it needs at least one image."))
        if request.resolution not in self.resolutions:
            raise InvalidRequest(
                _(
                    "Resolution {resolution} is not available on {model}; choose one of {choices}.",
                    resolution=request.resolution,
                    model=label,
                    choices=", ".join(self.resolutions),
                )
            )
        self._check_size(request, label)
        if not 1 <= request.count <= self.max_count:
            raise InvalidRequest(
                _(
                    "{model} makes 1 to {most} images per request, not {asked}.",
                    model=label,
                    most=self.max_count,
                    asked=request.count,
                )
            )
        if len(request.references) > self.max_references:
            raise InvalidRequest(
                _(
                    "{model} takes at most {most} reference images; you gave {given}.",
                    model=label,
                    most=self.max_references,
                    given=len(request.references),
                )
            )
        if self.max_total_images is not None and len(request.references) + request.count > self.max_total_images:
            raise InvalidRequest(
                _(
                    "On {model} reference images plus generated images must be at most {most}; "
                    "you asked for {references} + {count}.",
                    model=label,
                    most=self.max_total_images,
                    references=len(request.references),
                    count=request.count,
                )
            )
        if request.seed is not None:
            if self.seed_range is None:
                raise InvalidRequest(_("{model} does not accept a seed; leave it empty.", model=label))
            low, high = self.seed_range
            if not low <= request.seed <= high:
                raise InvalidRequest(
                    _("The seed must be between {low} and {high} on {model}.", low=low, high=high, model=label)
                )
        if request.style is not None and request.style not in self.styles:
            if not self.styles:
                raise InvalidRequest(_("{model} has no style presets; leave the style empty.", model=label))
            raise InvalidRequest(
                _(
                    "Style {style} is not available on {model}; choose one of {choices}.",
                    style=repr(request.style),
                    model=label,
                    choices=", ".join(self.styles),
                )
            )
        if request.enhance and not self.prompt_enhance:
            raise InvalidRequest(_("{model} cannot enhance prompts; turn 'enhance' off.", model=label))
        if request.transparent and not self.transparent_background:
            raise InvalidRequest(
                _("{model} cannot make a transparent background; turn 'transparent' off.", model=label)
            )

    def _check_size(self, request: GenerationRequest, label: str) -> None:
        if self.output_pixels is None and self.output_sides is None and self.output_ratio_range is None:
            return
        width, height = self.dimensions(request)
        low, high = self.output_pixels or (1, width * height)
        side_low, side_high = self.output_sides or (1, max(width, height))
        ratio_low, ratio_high = self.output_ratio_range or (0.0, math.inf)
        if not (
            low <= width * height <= high
            and side_low <= min(width, height)
            and max(width, height) <= side_high
            and ratio_low <= width / height <= ratio_high
        ):
            size, pixels = f"{width}×{height}", f"{low:,}–{high:,}"
            if self.output_sides:
                raise InvalidRequest(
                    _(
                        "{size} is outside what {model} renders ({pixels} pixels, {sides} per side); "
                        "choose another aspect ratio or resolution.",
                        size=size,
                        model=label,
                        pixels=pixels,
                        sides=f"{side_low}–{side_high}",
                    )
                )
            raise InvalidRequest(
                _(
                    "{size} is outside what {model} renders ({pixels} pixels); "
                    "choose another aspect ratio or resolution.",
                    size=size,
                    model=label,
                    pixels=pixels,
                )
            )

    def prompt_advice(self, prompt: str) -> str | None:
        """A notice when the prompt is longer than the provider recommends (not enforced), else None."""
        words = len(prompt.split())
        cjk = len(_CJK.findall(prompt))
        over_words = self.recommended_prompt_words is not None and words > self.recommended_prompt_words
        over_cjk = self.recommended_prompt_cjk_chars is not None and cjk > self.recommended_prompt_cjk_chars
        if not (over_words or over_cjk):
            return None
        return (
            f"Your prompt is longer than {self.kind} recommends (about {self.recommended_prompt_words} English words "
            f"or {self.recommended_prompt_cjk_chars} Chinese characters); the model may give the rest less weight."
        )

    def dimensions(self, request: GenerationRequest) -> tuple[int, int]:
        """Pixel size sent for the request; ``auto`` takes the nearest listed ratio of the first reference.

        With ``scale_down_to_fit`` a size over the window is shrunk (aspect kept, sides rounded down to
        multiples of 16): 2K at 16:9 with at most 2048 px a side becomes 2048×1152. With
        ``scale_up_to_min_pixels`` a size under the window is enlarged (sides rounded up to multiples of
        16): 1K at 16:9 on a 1024×1024 minimum becomes 1376×768 rather than 1280×720. A size that fits
        neither way (the aspect ratio cannot meet both bounds) is left for ``check`` to refuse.
        """
        width, height = sizes.dimensions(self.aspect_for(request), request.resolution)
        if self.scale_down_to_fit:
            scale = 1.0
            if self.output_pixels and width * height > self.output_pixels[1]:
                scale = min(scale, math.sqrt(self.output_pixels[1] / (width * height)))
            if self.output_sides and max(width, height) > self.output_sides[1]:
                scale = min(scale, self.output_sides[1] / max(width, height))
            if scale < 1.0:
                width, height = (max(16, math.floor(side * scale / 16) * 16) for side in (width, height))
        if self.scale_up_to_min_pixels:
            scale = 1.0
            if self.output_pixels and width * height < self.output_pixels[0]:
                scale = max(scale, math.sqrt(self.output_pixels[0] / (width * height)))
            if self.output_sides and min(width, height) < self.output_sides[0]:
                scale = max(scale, self.output_sides[0] / min(width, height))
            if scale > 1.0:
                width, height = (math.ceil(side * scale / 16) * 16 for side in (width, height))
        return width, height

    def aspect_for(self, request: GenerationRequest) -> str:
        """The request's aspect ratio; ``auto`` becomes the ratio this model lists nearest the first reference."""
        aspect = request.aspect_ratio
        if aspect == "auto":
            first = request.references[0] if request.references else None
            listed = tuple(ratio for ratio in self.aspect_ratios if ratio != "auto") or sizes.ASPECT_RATIOS
            aspect = sizes.nearest_aspect(first.width, first.height, listed) if first else "1:1"
        return aspect


class Provider(ABC):
    """Base of every provider. Subclasses set ``kind`` and implement ``capabilities``, ``submit``, ``collect``."""

    kind: ClassVar[str]
    #: True when creating the same generation twice costs nothing (only the offline provider). After a crash
    #: during ``submit`` the engine resubmits such jobs; others are failed and refunded, never billed twice.
    safe_to_resubmit: ClassVar[bool] = False

    def __init__(self, name: str, max_concurrent: int) -> None:
        self.name = name
        #: Jobs at once against this provider, counted across every process sharing the database.
        self.max_concurrent = max_concurrent
        #: This process's share of that cap (config ``max_concurrent``).
        self.slots = asyncio.Semaphore(max_concurrent)

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities: ...

    @abstractmethod
    async def submit(self, request: GenerationRequest) -> Submission:
        """Start the generation; only retry what the API cannot have billed."""

    @abstractmethod
    async def collect(self, request: GenerationRequest, submission: Submission) -> GenerationResult:
        """Wait for the submission to finish and store its images (safe to call again after a restart)."""

    async def encode_reference(self, image: StoredImage) -> tuple[bytes, str]:
        """A stored reference re-encoded within this provider's declared limits: (bytes, MIME type)."""
        caps = self.capabilities
        return await asyncio.to_thread(
            encode_for_provider,
            image,
            formats=caps.reference_formats,
            max_bytes=caps.reference_max_bytes,
            max_pixels=caps.reference_max_pixels,
            ratio_range=caps.reference_ratio_range,
            min_side=caps.reference_min_side,
        )

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Check, submit and collect in one go (the CLI path; the job engine persists between steps)."""
        self.capabilities.check(request)
        async with self.slots:
            submission = await self.submit(request)
            return await self.collect(request, submission)

    async def close(self) -> None:  # noqa: B027 - optional hook, most providers need it
        """Release what the provider opened itself (an HTTP session of its own; a shared one is left open)."""


def describe_capabilities(providers: Sequence[Provider]) -> list[dict[str, str]]:
    """Rows for the README capabilities table, built from the code so docs cannot drift."""
    rows = []
    for provider in providers:
        caps = provider.capabilities
        seed = f"{caps.seed_range[0]}–{caps.seed_range[1]}" if caps.seed_range else "—"
        if caps.max_prompt_chars is not None:
            prompt = f"≤ {number(caps.max_prompt_chars)} chars"
        elif caps.recommended_prompt_words is not None:
            prompt = f"no hard limit ({caps.recommended_prompt_words} words advised)"
        else:
            prompt = "no documented limit"
        pixels = "—"
        if caps.output_pixels is not None:
            pixels = f"{caps.output_pixels[0] / 1e6:.2f}–{caps.output_pixels[1] / 1e6:.2f} MP"
            if caps.output_sides is not None:
                pixels += f", sides {caps.output_sides[0]}–{caps.output_sides[1]}"
        if caps.scale_down_to_fit and caps.output_sides is not None:
            pixels += " (scaled to fit)"
        rows.append(
            {
                "provider": caps.kind,
                "model": caps.model,
                "family": f"{caps.family} ({caps.strengths})" if caps.family else "—",
                "aspect ratios": " ".join(caps.aspect_ratios),
                "resolutions": " ".join(caps.resolutions),
                "images/request": str(caps.max_count),
                "image sets": "yes" if caps.image_sets else "—",
                "references": str(caps.max_references)
                + (f" (refs+outputs ≤ {caps.max_total_images})" if caps.max_total_images else ""),
                "seed": seed,
                "prompt": prompt,
                "output size": pixels,
                "styles": ", ".join(caps.styles) or "—",
                "enhance": "yes" if caps.prompt_enhance else "—",
                "transparent": "yes" if caps.transparent_background else "—",
                "cost weight": str(caps.cost_weight),
            }
        )
    return rows
