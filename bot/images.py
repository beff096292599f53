"""Image files: validated, decoded with bomb limits, written atomically under data_dir.

Everything here is blocking Pillow or file work, so the async entry points run it in a thread.
File names are generated (uuid), never taken from user input.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from bot.errors import ImageRejected, StorageFull
from bot.providers.base import StoredImage

#: Formats we accept from members and providers, with the extension and MIME type we store them under.
ACCEPTED_FORMATS: dict[str, tuple[str, str]] = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tiff", "image/tiff"),
}


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
DISK_FULL_MESSAGE = "The bot's disk is full, so your images could not be saved; your credits were refunded."


def _probe(path: Path, max_pixels: int) -> tuple[str, int, int]:
    """Return (format, width, height) of a readable, complete image; refuse bombs before reading pixels.

    PNG: every chunk's CRC and the IEND marker are checked without inflating the pixels (a full decode
    costs ~50 ms and 12 MB per 2K result, 48 MB at 4K). JPEG: decoded at 1/8 scale, which still reads
    the whole stream. Other formats: full decode.
    """
    try:
        with Image.open(path) as img:
            fmt = img.format or ""
            width, height = img.size
            if fmt not in ACCEPTED_FORMATS:
                raise ImageRejected(f"That file is a {fmt or 'unknown'} image; please use PNG, JPEG or WebP.")
            if width * height > max_pixels:
                raise ImageRejected(
                    f"That image is {width}×{height} pixels, more than the {max_pixels:,} pixels we accept."
                )
            if fmt == "PNG":
                img.verify()  # truncated or corrupted chunks fail here
            elif fmt == "JPEG":
                img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                img.load()
            else:
                img.seek(0)
                img.load()  # a full decode catches truncated files
    except ImageRejected:
        raise
    except Image.DecompressionBombError:
        raise ImageRejected(f"That image has more pixels than the {max_pixels:,} we accept.") from None
    except UnidentifiedImageError:
        raise ImageRejected("That file is not an image we can read (PNG, JPEG or WebP, please).") from None
    except (OSError, SyntaxError, ValueError):
        raise ImageRejected("That image is damaged or truncated and cannot be read.") from None
    return fmt, width, height


def _digest_and_probe(path: Path, max_pixels: int) -> tuple[str, tuple[str, int, int]]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest(), _probe(path, max_pixels)


class ImageStore:
    """Owns the image files under ``data_dir/images``."""

    def __init__(self, data_dir: Path, *, max_pixels: int, max_bytes: int) -> None:
        self.root = data_dir / "images"
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        # Pillow's own guard stays on, set above ours so our message wins.
        Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, max_pixels * 2)

    def _new_path(self, suffix: str) -> Path:
        month = datetime.now(UTC).strftime("%Y-%m")
        folder = self.root / month
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{uuid.uuid4().hex}.{suffix}"

    async def save_bytes(
        self, data: bytes, *, provider: str | None = None, provider_image_id: str | None = None
    ) -> StoredImage:
        async def one_chunk() -> AsyncIterator[bytes]:
            yield data

        return await self.save_stream(one_chunk(), provider=provider, provider_image_id=provider_image_id)

    async def save_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int | None = None,
        provider: str | None = None,
        provider_image_id: str | None = None,
    ) -> StoredImage:
        """Stream bytes to disk (never all in memory), then validate and move into place."""
        cap = max_bytes or self.max_bytes
        tmp = self._new_path("part")
        size = 0
        try:
            with tmp.open("wb") as handle:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > cap:
                        raise ImageRejected(f"That image is larger than the {cap // (1024 * 1024)} MiB we accept.")
                    handle.write(chunk)
            if size == 0:
                raise ImageRejected("That file is empty.")
            # Hashing is done off the event loop, from the page cache, next to the probe.
            sha256, (fmt, width, height) = await asyncio.to_thread(_digest_and_probe, tmp, self.max_pixels)
            suffix, mime = ACCEPTED_FORMATS[fmt]
            final = tmp.with_suffix(f".{suffix}")
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno in _DISK_FULL:
                raise StorageFull(DISK_FULL_MESSAGE, detail=str(exc)) from None
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StoredImage(
            path=final,
            sha256=sha256,
            size_bytes=size,
            width=width,
            height=height,
            mime=mime,
            provider=provider,
            provider_image_id=provider_image_id,
        )

    async def save_pillow(self, image: Image.Image, *, provider: str | None = None) -> StoredImage:
        """Encode a Pillow image as PNG into the store (the local provider's output)."""
        path = self._new_path("png")

        def encode() -> tuple[str, int]:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=1)
            data = buffer.getvalue()
            tmp = path.with_suffix(".part")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            return hashlib.sha256(data).hexdigest(), len(data)

        try:
            sha, size = await asyncio.to_thread(encode)
        except OSError as exc:
            path.with_suffix(".part").unlink(missing_ok=True)
            if exc.errno in _DISK_FULL:
                raise StorageFull(DISK_FULL_MESSAGE, detail=str(exc)) from None
            raise
        return StoredImage(
            path=path,
            sha256=sha,
            size_bytes=size,
            width=image.width,
            height=image.height,
            mime="image/png",
            provider=provider,
        )


def encode_for_provider(
    image: StoredImage,
    *,
    formats: tuple[str, ...],
    max_bytes: int,
    max_pixels: int,
    ratio_range: tuple[float, float] | None = None,
    min_side: int = 1,
) -> tuple[bytes, str]:
    """Re-encode a stored reference into bytes a provider accepts: (data, mime).

    Keeps the file as it is when it already fits; else converts to PNG (or JPEG for photos that would
    be too large), shrinks to the pixel/byte caps, and pads to the allowed aspect ratio range.
    Blocking: call it through ``asyncio.to_thread``.
    """
    if (
        image.mime in formats
        and image.size_bytes <= max_bytes
        and image.width * image.height <= max_pixels
        and min(image.width, image.height) >= min_side
        and (ratio_range is None or ratio_range[0] <= image.width / image.height <= ratio_range[1])
    ):
        return image.path.read_bytes(), image.mime
    with Image.open(image.path) as src:
        src.seek(0)
        picture = ImageOps.exif_transpose(src).convert("RGBA" if "A" in src.getbands() else "RGB")
    if ratio_range is not None:
        picture = _pad_to_ratio(picture, *ratio_range)
    if picture.width * picture.height > max_pixels:
        scale = (max_pixels / (picture.width * picture.height)) ** 0.5
        picture = picture.resize(
            (max(min_side, int(picture.width * scale)), max(min_side, int(picture.height * scale)))
        )
    if min(picture.width, picture.height) < min_side:
        raise ImageRejected(f"That image is too small; each side must be more than {min_side - 1} pixels.")
    attempts: list[tuple[str, dict[str, int]]] = []
    if "image/png" in formats:
        attempts.append(("PNG", {"compress_level": 6}))
    if "image/jpeg" in formats:
        attempts += [("JPEG", {"quality": q}) for q in (92, 85, 75, 60)]
    for _ in range(4):
        for fmt, options in attempts:
            buffer = io.BytesIO()
            frame = picture.convert("RGB") if fmt == "JPEG" else picture
            frame.save(buffer, format=fmt, **options)
            if buffer.tell() <= max_bytes:
                return buffer.getvalue(), ACCEPTED_FORMATS[fmt][1]
        picture = picture.resize((max(min_side, picture.width * 3 // 4), max(min_side, picture.height * 3 // 4)))
    raise ImageRejected("That image could not be made small enough for the provider.")


def _pad_to_ratio(picture: Image.Image, low: float, high: float) -> Image.Image:
    ratio = picture.width / picture.height
    if ratio > high:
        size = (picture.width, int(picture.width / high) + 1)
    elif ratio < low:
        size = (int(picture.height * low) + 1, picture.height)
    else:
        return picture
    canvas = Image.new(picture.mode, size, (0, 0, 0, 0) if picture.mode == "RGBA" else (0, 0, 0))
    canvas.paste(picture, ((size[0] - picture.width) // 2, (size[1] - picture.height) // 2))
    return canvas
