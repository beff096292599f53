"""The offline provider draws real images at the exact requested size."""

from __future__ import annotations

import pytest
from PIL import Image

from bot import sizes
from bot.config import LocalProviderConfig
from bot.errors import InvalidRequest
from bot.images import ImageStore
from bot.providers.base import GenerationRequest
from bot.providers.local import LocalProvider


@pytest.fixture
def provider(store: ImageStore) -> LocalProvider:
    return LocalProvider("local", LocalProviderConfig(), store)


@pytest.mark.parametrize(("aspect", "resolution"), [("1:1", "1K"), ("16:9", "2K"), ("9:21", "2K"), ("4:3", "4K")])
async def test_sizes_match_aspect_and_resolution(provider: LocalProvider, aspect: str, resolution: str) -> None:
    result = await provider.generate(GenerationRequest(prompt="a koala", aspect_ratio=aspect, resolution=resolution))
    (image,) = result.images
    expected = sizes.dimensions(aspect, resolution)
    with Image.open(image.path) as decoded:
        assert decoded.size == expected
    assert (image.width, image.height) == expected
    assert image.width * image.height <= 16_777_216


async def test_count_and_determinism(provider: LocalProvider) -> None:
    request = GenerationRequest(prompt="a koala on a skateboard", count=3, seed=42, resolution="1K")
    first = await provider.generate(request)
    second = await provider.generate(request)
    assert len(first.images) == 3
    assert [i.sha256 for i in first.images] == [i.sha256 for i in second.images]
    assert len({i.sha256 for i in first.images}) == 3


async def test_references_are_blended_and_auto_follows_them(provider: LocalProvider) -> None:
    base = await provider.generate(GenerationRequest(prompt="base", aspect_ratio="9:16", resolution="1K", seed=1))
    edit = GenerationRequest(prompt="base", aspect_ratio="auto", resolution="1K", seed=1, references=base.images)
    (edited,) = (await provider.generate(edit)).images
    assert (edited.width, edited.height) == sizes.dimensions("9:16", "1K")
    plain = (
        await provider.generate(GenerationRequest(prompt="base", aspect_ratio="9:16", resolution="1K", seed=1))
    ).images[0]
    assert edited.sha256 != plain.sha256


async def test_slow_down_delay(store: ImageStore) -> None:
    slow = LocalProvider("local", LocalProviderConfig(delay_seconds=0.2), store)
    import time

    started = time.monotonic()
    await slow.generate(GenerationRequest(prompt="slow", resolution="1K"))
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "x", "count": 9}, "1 to 8 images"),
        ({"prompt": "x", "aspect_ratio": "5:1"}, "choose one of 1:1"),
        ({"prompt": "x", "aspect_ratio": "auto"}, "needs at least one image"),
        ({"prompt": "x", "style": "Gothic"}, "choose one of Cinematic"),
        ({"prompt": "x" * 4001}, "at most 4000"),
    ],
)
async def test_refusals_say_what_is_allowed(provider: LocalProvider, request_kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        await provider.generate(GenerationRequest(**request_kwargs))
    assert message in info.value.user_message


# -- the label: any prompt is legible, never a row of ".notdef" boxes ----------------------------------
PROMPTS = [
    "a koala × 2 on a skateboard",
    "猫がスケートボードに乗っている",  # Japanese: kanji and kana
    "一只在滑板上的考拉",  # Chinese
    "스케이트보드를 탄 코알라",  # Korean
    "коала на скейтборде",  # Cyrillic
    "كوالا على لوح تزلج",  # Arabic
    "mixed: 猫 × кот × قطة",
]
MISSING = "\U000f0001"  # a private-use code point no font has: it draws the font's ".notdef" box


def canvas(text: str, font_size: int = 48) -> bytes:
    from PIL import ImageDraw

    from bot.providers.local import draw_label

    picture = Image.new("L", (font_size * (len(text) + 2), font_size * 2))
    draw_label(ImageDraw.Draw(picture), (font_size // 2, font_size // 4), text, font_size, (255,))
    return picture.tobytes()


def test_the_missing_character_really_is_missing_from_every_label_font() -> None:
    from bot.providers.local import coverage, label_fonts

    assert all(ord(MISSING) not in coverage(font) for font in label_fonts())


@pytest.mark.parametrize("prompt", PROMPTS)
def test_every_character_of_a_prompt_is_drawn_from_a_font_that_has_it(prompt: str) -> None:
    from bot.providers.local import coverage, text_runs

    runs = text_runs(prompt)
    assert "".join(run for run, _ in runs) == prompt
    for run, font in runs:
        for char in run:
            assert ord(char) in coverage(font), f"{char!r} (U+{ord(char):04X}) is not in {font.path.name}"


@pytest.mark.parametrize("char", sorted({c for p in PROMPTS for c in p if not c.isspace()}))
def test_no_character_is_drawn_as_the_notdef_box(char: str) -> None:
    """Each character, drawn as the label draws it, is ink and is not the box a missing glyph shows."""
    drawn, box = canvas(char), canvas(MISSING)
    assert any(drawn), f"{char!r} drew nothing"
    assert drawn != box, f"{char!r} (U+{ord(char):04X}) was drawn as the .notdef box"


async def test_a_non_latin_prompt_makes_a_picture(provider: LocalProvider) -> None:
    (image,) = (await provider.generate(GenerationRequest(prompt=PROMPTS[-1], resolution="1K"))).images
    assert (image.width, image.height) == sizes.dimensions("1:1", "1K")
