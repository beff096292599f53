"""Fitting result images into chat uploads: split across messages, re-encode what is too big alone.

Pure file work (no Discord): the Discord layer asks for a plan under the guild's upload limit.

Provenance: given ``provenance`` fields (``provenance_fields``), every file carries them in its own
metadata: a PNG or JPEG as stored gets them spliced in without re-encoding (``bot.images.splice_plan``;
the bytes are put together when the file is read for sending), any other format is re-encoded as PNG,
and a file re-encoded to fit the limit gets them in its JPEG / WebP XMP packet. The stored original is
left untouched: its sha256 stays what the database recorded, it is what an edit sends back to a provider
as a reference (without our metadata), and turning ``[generation] provenance`` off takes effect at once.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bot.images import (
    Pieces,
    StoredImage,
    encoded,
    pieces_size,
    png_info,
    read_pieces,
    resized,
    splice_plan,
    xmp_packet,
)
from bot.providers.base import GenerationRequest

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
    #: The stored file with metadata spliced in (``path`` is then None, so it is never posted untagged).
    source: Path | None = None
    pieces: Pieces = ()

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        if self.source is not None:
            return pieces_size(self.pieces)
        assert self.path is not None
        return self.path.stat().st_size

    def read(self) -> bytes:
        """The bytes to post (blocking: a spliced file is read from disk now, not when it was planned)."""
        if self.data is not None:
            return self.data
        if self.source is not None:
            return read_pieces(self.source, self.pieces)
        assert self.path is not None
        return self.path.read_bytes()


def provenance_fields(job_id: str, request: GenerationRequest, *, model: str, provider: str) -> dict[str, str]:
    """What a posted file says about itself: enough to make the picture again from the file alone.

    ``seed`` is "random" when the member gave none (the providers do not report the seed they drew).
    """
    fields = {
        "prompt": request.prompt.strip(),
        "model": model,
        "seed": str(request.seed) if request.seed is not None else "random",
        "job_id": job_id,
        "provider": provider,
        "aspect_ratio": request.aspect_ratio,
        "resolution": request.resolution,
    }
    if request.style:
        fields["style"] = request.style
    if request.enhance:
        fields["enhance"] = "true"
    if request.transparent:
        fields["transparent"] = "true"
    return fields


def fit_image(
    path: Path, max_bytes: int, *, provenance: Mapping[str, str] | None = None
) -> tuple[bytes, str, tuple[int, int]]:
    """Re-encode one image under ``max_bytes``: JPEG then WebP quality steps, then downscale. Blocking.

    Holds one full-size copy: the decoded image itself when it is RGB (else its RGB conversion, made
    band by band, and the decoded one is dropped right after), then each smaller size in turn, made
    before the larger one is dropped. Failed attempts are dropped at once. ``provenance`` goes into each
    attempt's XMP packet, so the size checked is the size posted.
    """
    options = {"xmp": xmp_packet(provenance)} if provenance else {}
    with path.open("rb") as handle:
        src = Image.open(handle)
        src.load()
        picture = resized(src, src.size, "RGB")
        del src
    original = picture.size
    while True:
        for fmt, suffix, qualities in (("JPEG", "jpg", (90, 80, 70)), ("WEBP", "webp", (80, 65, 50))):
            for quality in qualities:
                data = encoded(picture, max_bytes, fmt, quality=quality, **options)
                if data is not None:
                    return data, suffix, original
        if picture.width < 64:
            raise ValueError("image cannot be made small enough")
        picture = picture.resize((picture.width * 3 // 4, picture.height * 3 // 4), Image.Resampling.LANCZOS)


def plan_parts(
    images: list[StoredImage],
    job_id: str,
    limit_bytes: int,
    first_number: int = 1,
    *,
    provenance: Mapping[str, str] | None = None,
) -> list[list[UploadFile]]:
    """Group images into messages that each stay under the upload limit (≤ 10 files). Blocking.

    ``first_number`` numbers the files when earlier images of the job were already posted.
    ``provenance`` (see ``provenance_fields``; None = plain files) is written into every file's
    metadata, with ``image`` set to the file's number; the sizes counted include it.
    """
    budget = max(1024, limit_bytes - OVERHEAD_BYTES)
    files: list[UploadFile] = []
    for index, image in enumerate(images, start=first_number):
        name = f"seedream-{job_id}-{index}"
        if provenance:
            files.append(_tagged(image, name, {**provenance, "image": str(index)}, budget))
        elif image.size_bytes <= budget:
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


def _tagged(image: StoredImage, name: str, fields: Mapping[str, str], budget: int) -> UploadFile:
    """One upload carrying ``fields``: spliced into the stored PNG/JPEG, else re-encoded (PNG, or to fit)."""
    pieces = splice_plan(image.path, fields)
    if pieces is not None:
        if pieces_size(pieces) <= budget:
            return UploadFile(filename=f"{name}{image.path.suffix}", source=image.path, pieces=pieces)
    elif image.size_bytes <= budget:
        data = _as_png(image.path, fields)
        if len(data) <= budget:
            return UploadFile(filename=f"{name}.png", data=data)
    data, suffix, original = fit_image(image.path, budget, provenance=fields)
    return UploadFile(filename=f"{name}.{suffix}", data=data, reencoded_from=original)


def _as_png(path: Path, fields: Mapping[str, str]) -> bytes:
    """A WebP/GIF/BMP/TIFF result as a lossless PNG with ``fields`` in its text chunks (providers send PNG/JPEG)."""
    with Image.open(path) as src:
        src.seek(0)
        picture = src if src.mode in ("RGB", "RGBA", "L", "LA", "P") else src.convert("RGBA")
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", pnginfo=png_info(fields), compress_level=6)
    return buffer.getvalue()
