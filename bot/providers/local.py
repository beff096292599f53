"""The offline provider: draws deterministic placeholder pictures so the bot runs with no key.

It is also the reference implementation of the provider interface and the workhorse of queue tests
(``delay_seconds`` slows it down).
"""

from __future__ import annotations

import asyncio
import hashlib
import random

from PIL import Image, ImageDraw, ImageFont, ImageOps

from bot import sizes
from bot.config import LocalProviderConfig
from bot.images import ImageStore
from bot.providers.base import Capabilities, GenerationRequest, GenerationResult, Provider, StoredImage, Submission

STYLES = ("Cinematic", "Creative", "Dynamic", "Fashion", "Portrait", "Stock Photo", "Vibrant")
MAX_SEED = 2**31 - 1


def seed_for(request: GenerationRequest) -> int:
    """The request's seed, or one derived from the prompt so the same prompt draws the same picture."""
    if request.seed is not None:
        return request.seed
    return int.from_bytes(hashlib.sha256(request.prompt.encode()).digest()[:4], "big") & MAX_SEED


def draw_placeholder(
    width: int, height: int, seed: int, prompt: str, references: list[StoredImage], index: int
) -> Image.Image:
    """A two-colour gradient with the prompt written on it, blended with the references if any."""
    rng = random.Random(seed + index)
    top = tuple(rng.randrange(256) for _ in range(3))
    bottom = tuple(rng.randrange(256) for _ in range(3))
    mask = Image.linear_gradient("L").resize((width, height))
    picture = Image.composite(Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), mask)
    for ref in references:
        with Image.open(ref.path) as src:
            src.seek(0)
            layer = ImageOps.fit(src.convert("RGB"), (width, height))
        picture = Image.blend(picture, layer, 0.5 / len(references))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(12, width // 40))
    label = f"{prompt[:80]}\nseed {seed + index} · {width}×{height}"
    draw.multiline_text((width // 20, height // 20), label, fill=(255, 255, 255), font=font)
    return picture


class LocalProvider(Provider):
    kind = "local"
    safe_to_resubmit = True

    def __init__(self, name: str, config: LocalProviderConfig, store: ImageStore) -> None:
        super().__init__(name, config.max_concurrent)
        self.config = config
        self.store = store
        self._capabilities = Capabilities(
            kind=self.kind,
            model=config.model,
            aspect_ratios=(*sizes.ASPECT_RATIOS, "auto"),
            resolutions=sizes.RESOLUTIONS,
            max_count=8,
            max_references=14,
            max_total_images=15,
            reference_formats=("image/png", "image/jpeg", "image/webp"),
            reference_max_bytes=20 * 1024 * 1024,
            reference_max_pixels=6000 * 6000,
            seed_range=(0, MAX_SEED - 16),
            styles=STYLES,
            prompt_enhance=True,
            max_prompt_chars=4000,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def submit(self, request: GenerationRequest) -> Submission:
        return Submission(data={"seed": seed_for(request)})

    async def collect(self, request: GenerationRequest, submission: Submission) -> GenerationResult:
        if self.config.delay_seconds:
            await asyncio.sleep(self.config.delay_seconds)
        width, height = self.capabilities.dimensions(request)
        seed = int(submission.data.get("seed", seed_for(request)))
        images = []
        for index in range(request.count):
            picture = await asyncio.to_thread(
                draw_placeholder, width, height, seed, request.prompt, request.references, index
            )
            images.append(await self.store.save_pillow(picture, provider=self.name))
        return GenerationResult(images=images)
