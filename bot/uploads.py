"""Fitting result images into chat uploads: split across messages, re-encode what is too big alone.

Pure file work (no Discord): the Discord layer asks for a plan under the guild's upload limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bot.images import encoded, resized
from bot.providers.base import StoredImage

MAX_FILES_PER_MESSAGE = 10
#: Room left in each request for the JSON payload and multipart framing.
OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class UploadFile:
    filename: str
    path: Path | None = None
    data: bytes | None = None
    #: Set when the file was re-encoded to fit; the original stays on disk.
    reencoded_from: tuple[int, int] | None = None

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.path is not None
        return self.path.stat().st_size

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


def fit_image(path: Path, max_bytes: int) -> tuple[bytes, str, tuple[int, int]]:
    """Re-encode one image under ``max_bytes``: JPEG then WebP quality steps, then downscale. Blocking.

    Holds one full-size copy: the decoded image itself when it is RGB (else its RGB conversion, made
    band by band, and the decoded one is dropped right after), then each smaller size in turn, made
    before the larger one is dropped. Failed attempts are dropped at once.
    """
    with path.open("rb") as handle:
        src = Image.open(handle)
        src.load()
        picture = resized(src, src.size, "RGB")
        del src
    original = picture.size
    while True:
        for fmt, suffix, qualities in (("JPEG", "jpg", (90, 80, 70)), ("WEBP", "webp", (80, 65, 50))):
            for quality in qualities:
                data = encoded(picture, max_bytes, fmt, quality=quality)
                if data is not None:
                    return data, suffix, original
        if picture.width < 64:
            raise ValueError("image cannot be made small enough")
        picture = picture.resize((picture.width * 3 // 4, picture.height * 3 // 4), Image.Resampling.LANCZOS)


def plan_parts(
    images: list[StoredImage], job_id: str, limit_bytes: int, first_number: int = 1
) -> list[list[UploadFile]]:
    """Group images into messages that each stay under the upload limit (≤ 10 files). Blocking.

    ``first_number`` numbers the files when earlier images of the job were already posted.
    """
    budget = max(1024, limit_bytes - OVERHEAD_BYTES)
    files: list[UploadFile] = []
    for index, image in enumerate(images, start=first_number):
        name = f"seedream-{job_id}-{index}"
        if image.size_bytes <= budget:
            files.append(UploadFile(filename=f"{name}{image.path.suffix}", path=image.path))
        else:
            data, suffix, original = fit_image(image.path, budget)
            files.append(UploadFile(filename=f"{name}.{suffix}", data=data, reencoded_from=original))
    parts: list[list[UploadFile]] = []
    current: list[UploadFile] = []
    used = 0
    for item in files:
        if current and (used + item.size > budget or len(current) >= MAX_FILES_PER_MESSAGE):
            parts.append(current)
            current, used = [], 0
        current.append(item)
        used += item.size
    if current:
        parts.append(current)
    return parts
