"""Image memory stays bounded by the output: references are shrunk before they are padded, results are
re-encoded without extra full-size copies, and images over our own pixel limit are refused.

Pillow's pixel buffers are C allocations that tracemalloc cannot see, so these tests record the size of
every image Pillow makes (and decodes) while our code runs, and check those sizes. Peak RSS figures come
from ``bench/memory.py``.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageCms, ImageFile

from bot.config import GenerationSection
from bot.errors import ImageRejected
from bot.images import ImageStore, StoredImage, encode_for_provider, plan_reference
from bot.providers.seedream_v3 import (
    REFERENCE_MAX_BYTES,
    REFERENCE_MAX_PIXELS,
    REFERENCE_MIN_SIDE,
    REFERENCE_RATIO_RANGE,
)
from bot.uploads import OVERHEAD_BYTES, plan_parts

#: What Seedream 4.x (Novita, HighwayAPI, Ark) accepts as a reference: the provider from the report.
SEEDREAM = {
    "formats": ("image/png", "image/jpeg"),
    "max_bytes": REFERENCE_MAX_BYTES,
    "max_pixels": REFERENCE_MAX_PIXELS,
    "ratio_range": REFERENCE_RATIO_RANGE,
    "min_side": REFERENCE_MIN_SIDE,
}
#: Pillow's own bomb guard when nobody has changed it: above this it warns, above twice this it refuses.
PILLOW_DEFAULT_LIMIT = 1024 * 1024 * 1024 // 4 // 3

Made = list[tuple[str, tuple[int, int]]]


@contextmanager
def pillow_images(monkeypatch: pytest.MonkeyPatch) -> Iterator[Made]:
    """Record (operation, size) of every image Pillow creates or decodes inside the block."""
    made: Made = []

    def spy(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if isinstance(result, Image.Image):
                made.append((name, result.size))
            return result

        return wrapper

    load = ImageFile.ImageFile.load

    def decode(self: ImageFile.ImageFile) -> Any:
        fresh = self.tile not in (None, [])  # load() is called again by every later operation
        result = load(self)
        if fresh:
            made.append(("decode", self.size))
        return result

    with monkeypatch.context() as patch:
        patch.setattr(Image, "new", spy("new", Image.new))
        for name in ("resize", "reduce", "convert", "crop", "transpose", "copy"):
            patch.setattr(Image.Image, name, spy(name, getattr(Image.Image, name)))
        patch.setattr(ImageFile.ImageFile, "load", decode)
        yield made


def pixels(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def strip_png() -> bytes:
    """The reference from the report: 48 × 24,000 pixels, ~20 kB (dark at the top, light at the bottom)."""
    return png(Image.linear_gradient("L").resize((48, 24_000)).convert("RGB"))


def noise_png(width: int, height: int, mode: str = "RGB") -> bytes:
    """A photo-like PNG that does not compress much, so it must be re-encoded to fit a small budget."""
    bands = [Image.effect_noise((width, height), 40 + 10 * i) for i in range(len(mode))]
    return png(Image.merge(mode, bands))


def bilevel_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of a single colour, built row by row: tens of megapixels in a few kB on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then all pixels 0
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def opened(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as picture:
        picture.load()
        copy = picture.copy()
        copy.info = dict(picture.info)
        return copy


# -- references ------------------------------------------------------------------------------------


async def test_a_thin_strip_reference_is_padded_to_the_ratio_without_a_giant_canvas(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = strip_png()
    assert len(data) < 40_000
    reference = await store.save_bytes(data)

    with pillow_images(monkeypatch) as made:
        sent, mime = encode_for_provider(reference, **SEEDREAM)

    picture = opened(sent)
    low, high = REFERENCE_RATIO_RANGE
    assert mime == "image/png" and len(sent) <= REFERENCE_MAX_BYTES
    assert low <= picture.width / picture.height <= high
    assert pixels(picture.size) <= REFERENCE_MAX_PIXELS and min(picture.size) >= REFERENCE_MIN_SIDE
    assert picture.height >= 5990, "scaled down as a whole, about as tall as the pixel cap allows at 1:3"
    # Padded, not cropped or stretched: a dark-to-light strip in the middle, black either side.
    middle = picture.width // 2
    assert picture.getpixel((0, picture.height // 2)) == (0, 0, 0)
    assert picture.getpixel((middle, 5))[0] < 10 and picture.getpixel((middle, picture.height - 5))[0] > 245
    # Before: an 8001 × 24,000 canvas (192 MP, ~770 MB) was padded first and shrunk afterwards.
    biggest = max(made, key=lambda item: pixels(item[1]))
    assert pixels(biggest[1]) <= REFERENCE_MAX_PIXELS, biggest


def test_the_planned_canvas_never_exceeds_the_pixel_limit() -> None:
    low, high = REFERENCE_RATIO_RANGE
    shapes = [(48, 24_000), (24_000, 48), (1, 60_000), (60_000, 1), (7_000, 7_000), (9_000, 2_000), (15, 15)]
    for width, height in shapes:
        for limit in (REFERENCE_MAX_PIXELS, 1_000_000, 4_000):
            picture, canvas = plan_reference(
                width, height, max_pixels=limit, ratio_range=REFERENCE_RATIO_RANGE, min_side=REFERENCE_MIN_SIDE
            )
            assert pixels(canvas) <= limit, (width, height, limit)
            assert low <= canvas[0] / canvas[1] <= high, (width, height, limit)
            assert picture[0] <= canvas[0] and picture[1] <= canvas[1], (width, height, limit)
            assert picture[0] <= width and picture[1] <= height, "never scaled up"


async def test_a_large_jpeg_reference_is_decoded_at_a_reduced_scale(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((4000, 3000)).convert("RGB").save(buffer, format="JPEG")
    reference = await store.save_bytes(buffer.getvalue())

    with pillow_images(monkeypatch) as made:
        sent, mime = encode_for_provider(reference, formats=("image/png",), max_bytes=10 << 20, max_pixels=1_000_000)

    assert mime == "image/png" and pixels(opened(sent).size) <= 1_000_000
    decoded = [size for name, size in made if name == "decode"]
    assert decoded and all(pixels(size) <= 3_000_000 for size in decoded), decoded  # 1/2 scale, not 12 MP


async def test_shrinking_an_rgba_reference_makes_no_second_full_size_copy(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = (2000, 1500)
    reference = await store.save_bytes(noise_png(*size, mode="RGBA"))

    with pillow_images(monkeypatch) as made:
        sent, mime = encode_for_provider(reference, formats=("image/png",), max_bytes=10 << 20, max_pixels=500_000)

    picture = opened(sent)
    assert mime == "image/png" and picture.mode == "RGBA" and pixels(picture.size) <= 500_000
    copies = [(name, made_size) for name, made_size in made if name != "decode" and pixels(made_size) >= pixels(size)]
    assert copies == [], "the decoded image is the only full-size one (no converted or premultiplied copy)"


async def test_a_rotated_photo_is_padded_upright(store: ImageStore) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    buffer = io.BytesIO()
    Image.new("RGB", (800, 100), (200, 80, 40)).save(buffer, format="JPEG", exif=exif.tobytes())
    reference = await store.save_bytes(buffer.getvalue())

    sent, _ = encode_for_provider(reference, **SEEDREAM)

    picture = opened(sent)
    assert picture.size == (267, 800)  # 100 × 800 upright, padded to 1:3 (not 800 × 267)
    assert picture.getpixel((10, 400)) == (0, 0, 0)
    assert all(abs(a - b) < 8 for a, b in zip(picture.getpixel((133, 400)), (200, 80, 40), strict=True))


async def test_a_shrunk_and_padded_reference_keeps_its_colour_profile(store: ImageStore) -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    Image.new("RGB", (3000, 500), (10, 120, 200)).save(buffer, format="PNG", icc_profile=profile)
    reference = await store.save_bytes(buffer.getvalue())

    sent, mime = encode_for_provider(
        reference, formats=("image/png",), max_bytes=10 << 20, max_pixels=200_000, ratio_range=(1 / 3, 3)
    )

    picture = opened(sent)
    assert mime == "image/png" and picture.width / picture.height <= 3 and pixels(picture.size) <= 200_000
    assert picture.info.get("icc_profile") == profile


async def test_a_reference_too_small_for_the_provider_is_refused_with_the_minimum(store: ImageStore) -> None:
    reference = await store.save_bytes(png(Image.new("RGB", (10, 10), "red")))

    with pytest.raises(ImageRejected, match="each side must be more than 14 pixels"):
        encode_for_provider(reference, **SEEDREAM)


# -- results re-encoded for upload ---------------------------------------------------------------


async def results(store: ImageStore, count: int, size: tuple[int, int]) -> list[StoredImage]:
    return [await store.save_bytes(noise_png(*size)) for _ in range(count)]


async def test_results_too_big_for_the_server_are_re_encoded_to_fit_without_full_size_copies(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = (1024, 768)
    images = await results(store, 2, size)
    limit = OVERHEAD_BYTES + 1_000_000
    assert all(image.size_bytes > limit for image in images)

    with pillow_images(monkeypatch) as made:
        parts = plan_parts(images, "job1", limit)

    files = [item for part in parts for item in part]
    assert [f.filename for f in files] == ["seedream-job1-1.jpg", "seedream-job1-2.jpg"]
    assert all(sum(f.size for f in part) <= limit for part in parts)
    assert all(f.reencoded_from == size and opened(f.read()).size == size for f in files)
    # Per image: the decode, and nothing else at full size (before: a full ``convert("RGB")`` copy each).
    full = [name for name, made_size in made if pixels(made_size) >= pixels(size)]
    assert full == ["decode", "decode"], full


async def test_a_result_that_only_fits_smaller_is_downscaled_one_size_at_a_time(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    (image,) = await results(store, 1, (800, 800))
    limit = OVERHEAD_BYTES + 60_000

    with pillow_images(monkeypatch) as made:
        ((upload,),) = plan_parts([image], "job2", limit)

    assert upload.size <= limit - OVERHEAD_BYTES and upload.reencoded_from == (800, 800)
    assert opened(upload.read()).width < 800
    resized = [made_size for name, made_size in made if name == "resize"]
    assert resized and all(b[0] < a[0] for a, b in zip([(800, 800), *resized], resized, strict=False))
    assert [name for name, made_size in made if pixels(made_size) >= 640_000] == ["decode"]


# -- our own pixel limit ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns at 150 MP, no more
@pytest.mark.parametrize("size", [(10_000, 6_000), (15_000, 10_000)], ids=["60MP", "150MP"])
async def test_an_image_over_our_pixel_limit_but_under_pillows_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PILLOW_DEFAULT_LIMIT)  # restored after the test
    limit = GenerationSection().max_image_pixels
    assert limit < pixels(size) < 2 * PILLOW_DEFAULT_LIMIT, "over our limit, short of Pillow's own refusal"
    data = bilevel_png(*size)
    assert len(data) < 100_000

    store = ImageStore(tmp_path / "ours", max_pixels=limit, max_bytes=60 << 20)
    with pytest.raises(ImageRejected) as refused:
        await store.save_bytes(data)
    assert str(refused.value) == (
        f"That image is {size[0]}×{size[1]} pixels, more than the {limit:,} pixels we accept."
    )
    assert not list(store.root.rglob("*.*"))

    # The file itself is sound: a store whose limit is above it keeps it, so only our check refused it.
    roomy = ImageStore(tmp_path / "roomy", max_pixels=pixels(size), max_bytes=60 << 20)
    kept = await roomy.save_bytes(data)
    assert (kept.width, kept.height) == size and kept.mime == "image/png"
