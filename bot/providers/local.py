"""The offline provider: draws deterministic placeholder pictures so the bot runs with no key.

It is also the reference implementation of the provider interface and the workhorse of queue tests
(``delay_seconds`` slows it down).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.util
import random
from dataclasses import dataclass
from pathlib import Path

from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont, ImageOps

from bot import sizes
from bot.config import LocalProviderConfig
from bot.images import ImageStore, StoredImage
from bot.providers.base import Capabilities, GenerationRequest, GenerationResult, Provider, Submission

STYLES = ("Cinematic", "Creative", "Dynamic", "Fashion", "Portrait", "Stock Photo", "Vibrant")
MAX_SEED = 2**31 - 1


def seed_for(request: GenerationRequest) -> int:
    """The request's seed, or one derived from the prompt so the same prompt draws the same picture."""
    if request.seed is not None:
        return request.seed
    return int.from_bytes(hashlib.sha256(request.prompt.encode()).digest()[:4], "big") & MAX_SEED


@dataclass(frozen=True)
class FontFile:
    """One face of a font file that a pip package ships (``index`` picks a face of a .ttc collection)."""

    path: Path
    index: int = 0


def _package_folder(package: str) -> Path:
    """Where an installed package lives, without importing it (matplotlib's import is slow)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the package {package!r} is not installed; reinstall seedream-bot (pip install .)")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def label_fonts() -> tuple[FontFile, ...]:
    """The fonts a placeholder's label is drawn with, first match wins for each character.

    DejaVu Sans (shipped with matplotlib): Latin, Greek, Cyrillic, Arabic, Hebrew, "×" and most symbols.
    Noto Sans CJK (the ``noto-cjk-sans-otc`` package): Chinese, Japanese kana and Korean hangul.
    """
    return (
        FontFile(_package_folder("matplotlib") / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"),
        FontFile(_package_folder("noto_cjk_sans_otc") / "NotoSansCJK-Regular.ttc", 0),
    )


@functools.cache
def coverage(font: FontFile) -> frozenset[int]:
    """The code points ``font`` has a glyph for (its cmap), read once."""
    with TTFont(font.path, fontNumber=font.index, lazy=True) as face:
        return frozenset(face["cmap"].getBestCmap())


@functools.lru_cache(maxsize=32)
def truetype(font: FontFile, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font.path), size=size, index=font.index)


def text_runs(text: str) -> list[tuple[str, FontFile]]:
    """``text`` cut into runs, each drawn with one font that has a glyph for every character in it.

    A character stays in the current run while the current font has it (spaces, digits and Latin letters
    between CJK characters), so runs are long and Arabic words are shaped as a whole. A character no
    font has goes to the first font (it shows as that font's box, the honest answer).
    """
    fonts = label_fonts()
    runs: list[tuple[str, FontFile]] = []
    for char in text:
        if runs and ord(char) in coverage(runs[-1][1]):
            runs[-1] = (runs[-1][0] + char, runs[-1][1])
            continue
        font = next((f for f in fonts if ord(char) in coverage(f)), fonts[0])
        if runs and runs[-1][1] == font:
            runs[-1] = (runs[-1][0] + char, font)
        else:
            runs.append((char, font))
    return runs


def draw_label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int, fill: tuple[int, ...]) -> None:
    """Write ``text`` (lines split on newlines) at ``xy``, each run in a font that has its characters."""
    x0, y = xy
    for line in text.split("\n"):
        x = float(x0)
        for run, font_file in text_runs(line):
            font = truetype(font_file, size)
            draw.text((x, y), run, fill=fill, font=font)
            x += font.getlength(run)
        y += round(size * 1.3)


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
    label = f"{' '.join(prompt[:80].split())}\nseed {seed + index} · {width}×{height}"
    draw_label(draw, (width // 20, height // 20), label, max(12, width // 40), (255, 255, 255))
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
