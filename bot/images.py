"""Image files: validated, decoded with bomb limits, written atomically under data_dir.

Everything here is blocking Pillow or file work, so the async entry points run it in a thread.
File names are generated (uuid), never taken from user input.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import math
import os
import re
import struct
import uuid
import zlib
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from PIL import ExifTags, Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo
from pydantic import BaseModel, ConfigDict

from bot.errors import ImageRejected, StorageFull
from bot.i18n import _

#: Formats we accept from members and providers, with the extension and MIME type we store them under.
ACCEPTED_FORMATS: dict[str, tuple[str, str]] = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tiff", "image/tiff"),
}


class StoredImage(BaseModel):
    """An image file we hold under data_dir: a validated reference or a downloaded result."""

    model_config = ConfigDict(frozen=True)

    path: Path
    sha256: str
    size_bytes: int
    width: int
    height: int
    mime: str
    #: Name of the configured provider that knows this image by ``provider_image_id``.
    provider: str | None = None
    #: The provider's own id for the image (e.g. a Leonardo GENERATED image id), reusable as a reference.
    provider_image_id: str | None = None


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
DISK_FULL_MESSAGE = _("The bot's disk is full, so your images could not be saved; your credits were refunded.")


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
                if fmt:
                    raise ImageRejected(_("That file is a {format} image; please use PNG, JPEG or WebP.", format=fmt))
                raise ImageRejected(_("That file is a unknown image; please use PNG, JPEG or WebP."))
            if width * height > max_pixels:
                raise ImageRejected(
                    _(
                        "That image is {size} pixels, more than the {limit} pixels we accept.",
                        size=f"{width}×{height}",
                        limit=f"{max_pixels:,}",
                    )
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
        raise ImageRejected(
            _("That image has more pixels than the {limit} we accept.", limit=f"{max_pixels:,}")
        ) from None
    except UnidentifiedImageError:
        raise ImageRejected(_("That file is not an image we can read (PNG, JPEG or WebP, please).")) from None
    except (OSError, SyntaxError, ValueError):
        raise ImageRejected(_("That image is damaged or truncated and cannot be read.")) from None
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
                        raise ImageRejected(
                            _("That image is larger than the {limit} MiB we accept.", limit=cap // (1024 * 1024))
                        )
                    handle.write(chunk)
            if size == 0:
                raise ImageRejected(_("That file is empty."))
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
            # Straight into the file, then hashed from the page cache: the encoded bytes are never
            # held in memory (a 4K PNG is 10-30 MB, and ``getvalue()`` would copy it once more).
            tmp = path.with_suffix(".part")
            image.save(tmp, format="PNG", compress_level=1)
            digest = hashlib.sha256()
            with tmp.open("rb") as handle:
                while block := handle.read(1024 * 1024):
                    digest.update(block)
            size = tmp.stat().st_size
            os.replace(tmp, path)
            return digest.hexdigest(), size

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
    The output size is worked out from the header first, so memory follows the output, not the input:
    a JPEG decodes at the smallest 1/2..1/8 scale that still covers it, the one decoded copy is shrunk
    band by band, and the padded canvas is made at its final size (never above ``max_pixels``).
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
    with image.path.open("rb") as handle:
        src = Image.open(handle)
        src.seek(0)
        mode = "RGBA" if "A" in src.getbands() else "RGB"
        if src.format != "JPEG":
            src.load()  # nothing to gain from waiting, and a PNG's eXIf chunk may follow the pixels
        method = _TRANSPOSE.get(src.getexif().get(ExifTags.Base.Orientation, 1))
        swapped = method in _SWAPS_SIDES
        width, height = (src.height, src.width) if swapped else src.size
        picture_size, canvas_size = plan_reference(
            width, height, max_pixels=max_pixels, ratio_range=ratio_range, min_side=min_side
        )
        if min(canvas_size) < min_side:
            raise ImageRejected(
                _("That image is too small; each side must be more than {limit} pixels.", limit=min_side - 1)
            )
        raw_size = (picture_size[1], picture_size[0]) if swapped else picture_size
        src.draft(None, raw_size)  # JPEG: decode at 1/2, 1/4 or 1/8 when that still covers the output
        src.load()
        picture = resized(src, raw_size, mode)
        del src  # the decoded input goes here: from now on, memory follows the output
    if method is not None:
        picture = picture.transpose(method)
    if picture.size != canvas_size:
        canvas = Image.new(mode, canvas_size, (0, 0, 0, 0) if mode == "RGBA" else (0, 0, 0))
        canvas.paste(picture, ((canvas_size[0] - picture.width) // 2, (canvas_size[1] - picture.height) // 2))
        if "icc_profile" in picture.info:
            canvas.info["icc_profile"] = picture.info["icc_profile"]
        picture = canvas
    attempts: list[tuple[str, dict[str, int]]] = []
    if "image/png" in formats:
        attempts.append(("PNG", {"compress_level": 6}))
    if "image/jpeg" in formats:
        attempts += [("JPEG", {"quality": q}) for q in (92, 85, 75, 60)]
    for _attempt in range(4):
        rgb: Image.Image | None = None  # converted once per size, and only if a JPEG attempt needs it
        for fmt, options in attempts:
            if fmt == "JPEG" and rgb is None:
                rgb = picture if picture.mode == "RGB" else picture.convert("RGB")
            data = encoded(rgb if fmt == "JPEG" and rgb else picture, max_bytes, fmt, **options)
            if data is not None:
                return data, ACCEPTED_FORMATS[fmt][1]
        rgb = None
        picture = picture.resize((max(min_side, picture.width * 3 // 4), max(min_side, picture.height * 3 // 4)))
    raise ImageRejected(_("That image could not be made small enough for the provider."))


def plan_reference(
    width: int,
    height: int,
    *,
    max_pixels: int,
    ratio_range: tuple[float, float] | None = None,
    min_side: int = 1,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Sizes for re-encoding a ``width``×``height`` reference: (picture, canvas), nothing allocated.

    The canvas is the picture padded to the ratio range (the picture centred on it). When that holds
    more than ``max_pixels``, the picture is scaled down first and padded afterwards, so the ratio is
    exact and the canvas is within the limit; a canvas side is at least ``min_side`` once scaled.
    The picture is never scaled up.
    """
    canvas = _padded_size(width, height, ratio_range)
    if canvas[0] * canvas[1] <= max_pixels:
        return (width, height), canvas
    scale = (max_pixels / (canvas[0] * canvas[1])) ** 0.5
    while True:
        picture = (max(1, int(width * scale)), max(1, int(height * scale)))
        padded = _padded_size(*picture, ratio_range)
        canvas = (max(min_side, padded[0]), max(min_side, padded[1]))
        if canvas[0] * canvas[1] <= max_pixels or picture == (1, 1):
            return picture, canvas
        scale *= min(0.9999, (max_pixels / (canvas[0] * canvas[1])) ** 0.5)  # rounding padded it over


def _padded_size(width: int, height: int, ratio_range: tuple[float, float] | None) -> tuple[int, int]:
    if ratio_range is None:
        return width, height
    low, high = ratio_range
    ratio = width / height
    if ratio > high:
        return width, int(width / high) + 1
    if ratio < low:
        return int(height * low) + 1, height
    return width, height


#: EXIF orientation → the transpose that shows the picture upright (as ``ImageOps.exif_transpose``).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = {_TRANSPOSE[n] for n in (5, 6, 7, 8)}

#: Scratch budget per band when converting or resizing a decoded image (one RGBA band of the input).
BAND_BYTES = 8 * 1024 * 1024
#: Lanczos reaches 3 source pixels either side, times the shrink factor; one more for rounding.
_LANCZOS_SUPPORT = 3.0


def resized(src: Image.Image, size: tuple[int, int], mode: str) -> Image.Image:
    """``src`` converted to ``mode`` and Lanczos-resized to ``size``, made band by band (``src`` if neither).

    ``src.convert(mode).resize(size)`` would hold a full-size converted copy (and, for RGBA, a full-size
    premultiplied one) next to the decoded image; here the only extra memory is the result and one band.
    Each band of output rows is resized from the source rows its filter reaches, so there are no seams.
    """
    if src.size == size and src.mode == mode:
        return src
    out = Image.new(mode, size)
    if "icc_profile" in src.info:  # as ``convert`` and ``resize`` keep it (a PNG is saved with it)
        out.info["icc_profile"] = src.info["icc_profile"]
    width, height = src.size
    step = height / size[1]
    if src.size == size:  # only a mode change
        rows = max(1, BAND_BYTES // (4 * width))
        for top in range(0, height, rows):
            out.paste(src.crop((0, top, width, min(height, top + rows))).convert(mode), (0, top))
        return out
    margin = math.ceil(_LANCZOS_SUPPORT * max(1.0, step)) + 1
    premultiplied = {"RGBA": "RGBa", "LA": "La"}.get(mode, mode)
    rows = max(1, int(BAND_BYTES / (4 * width * max(1.0, step))))
    for top in range(0, size[1], rows):
        bottom = min(size[1], top + rows)
        first = max(0, math.floor(top * step) - margin)
        last = min(height, math.ceil(bottom * step) + margin)
        band = src.crop((0, first, width, last))
        if band.mode != mode:
            band = band.convert(mode)
        if premultiplied != mode:  # as ``resize`` itself does for alpha, but once for both passes
            band = band.convert(premultiplied)
        # Two explicit passes, so every band is resampled in the same order (a resize with a box may
        # pick either order, and with Lanczos's clipping the two differ visibly at band edges).
        if band.width != size[0]:
            band = band.resize((size[0], band.height), Image.Resampling.LANCZOS)
        box = (0.0, top * step - first, float(size[0]), bottom * step - first)
        piece = band.resize((size[0], bottom - top), Image.Resampling.LANCZOS, box)
        out.paste(piece.convert(mode) if premultiplied != mode else piece, (0, top))
    return out


def encoded(picture: Image.Image, max_bytes: int, fmt: str, **options: Any) -> bytes | None:
    """``picture`` saved as ``fmt``, or None when that is more than ``max_bytes``."""
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **options)
    return buffer.getvalue() if buffer.tell() <= max_bytes else None


# -- provenance: who made a picture, in the file itself --------------------------------------------------
#
# PNG: one iTXt chunk per field (UTF-8, made by Pillow's PngInfo), keyword ``seedream:<field>``, spliced in
# right after IHDR. JPEG: one XMP packet (APP1) after the file's leading APPn segments, fields as
# ``seedream:<field>`` elements in the namespace below, the prompt also as ``dc:description`` and the bot
# as ``xmp:CreatorTool``. Splicing copies the encoded image as it is (no decode, no quality loss) and only
# reads the segment headers, so it costs the same for a 1K and a 4K picture. The ``seedream:`` prefix
# keeps clear of other tools' keys (ComfyUI reads a PNG "prompt" chunk as its JSON workflow).

#: XMP namespace of the provenance fields (their PNG keywords carry the same names after ``seedream:``).
XMP_NAMESPACE = "urn:seedream-bot:provenance:1#"
PROVENANCE_PREFIX = "seedream:"
CREATOR_TOOL = "seedream-bot"
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
#: One JPEG APP1 segment holds 65,535 bytes including its length field and the XMP header.
MAX_XMP_BYTES = 65_535 - 2 - len(_XMP_HEADER)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,60}$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TEXT = (b"tEXt", b"iTXt", b"zTXt")

#: Pieces of an upload: byte ranges (start, end) of the stored file, and bytes spliced in between them.
Pieces = tuple[bytes | tuple[int, int], ...]


def _checked(fields: Mapping[str, str]) -> dict[str, str]:
    for name in fields:
        if not _FIELD_NAME.match(name):
            raise ValueError(f"provenance field names are lower-case identifiers, not {name!r}")
    return {name: _NOT_XML.sub("", value) for name, value in fields.items()}


def xmp_packet(fields: Mapping[str, str]) -> bytes:
    """An XMP packet holding ``fields`` that fits one JPEG APP1 segment (a very long prompt is cut, and says so)."""
    fields = _checked(fields)
    prompt = fields.get("prompt")
    packet = _xmp(fields, description=prompt)
    if len(packet) > MAX_XMP_BYTES:
        packet = _xmp(fields, description=None)
    while len(packet) > MAX_XMP_BYTES and prompt:
        prompt = prompt[: len(prompt) * 3 // 4]
        packet = _xmp({**fields, "prompt": prompt + "…", "prompt_truncated": "true"}, description=None)
    if len(packet) > MAX_XMP_BYTES:
        raise ValueError("provenance fields too long for an XMP packet")
    return packet


def _xmp(fields: Mapping[str, str], *, description: str | None) -> bytes:
    elements = "".join(f"<seedream:{name}>{escape(value)}</seedream:{name}>" for name, value in fields.items())
    if description is not None:
        elements += (
            '<dc:description><rdf:Alt><rdf:li xml:lang="x-default">'
            f"{escape(description)}</rdf:li></rdf:Alt></dc:description>"
        )
    text = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:seedream="{XMP_NAMESPACE}"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
        f"<xmp:CreatorTool>{CREATOR_TOOL}</xmp:CreatorTool>{elements}"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="r"?>'
    )
    return text.encode("utf-8")


def png_info(fields: Mapping[str, str]) -> PngInfo:
    """Pillow's PngInfo with one iTXt chunk per field (``seedream:<name>``)."""
    info = PngInfo()
    for name, value in _checked(fields).items():
        info.add_itxt(f"{PROVENANCE_PREFIX}{name}", value)
    return info


def png_text_chunks(fields: Mapping[str, str]) -> bytes:
    """The text chunks of ``png_info(fields)``, framed (length, type, data, CRC) to splice into a PNG."""
    return b"".join(
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        for kind, data, *_ in png_info(fields).chunks
    )


def jpeg_xmp_segment(fields: Mapping[str, str]) -> bytes:
    """An APP1 segment with the XMP packet of ``fields``."""
    body = _XMP_HEADER + xmp_packet(fields)
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def splice_plan(path: Path, fields: Mapping[str, str]) -> Pieces | None:
    """How to post ``path`` with ``fields`` in its metadata without re-encoding it; None if not a PNG or JPEG.

    Earlier provenance (``seedream:`` text chunks, an XMP packet in the JPEG header) is left out, so the
    file says one thing. Reads only the segment headers. Blocking.
    """
    with path.open("rb") as handle:
        head = handle.read(8)
        if head == _PNG_SIGNATURE:
            return _png_plan(handle, fields)
        if head[:3] == b"\xff\xd8\xff":
            return _jpeg_plan(handle, fields)
    return None


def _png_plan(handle: Any, fields: Mapping[str, str]) -> Pieces | None:
    handle.seek(8)
    length, kind = struct.unpack(">I4s", handle.read(8))
    if kind != b"IHDR":
        return None
    insert_at = 8 + 12 + length
    drop: list[tuple[int, int]] = []
    position = insert_at
    while True:
        handle.seek(position)
        header = handle.read(8)
        if len(header) < 8:
            break
        length, kind = struct.unpack(">I4s", header)
        if kind in _PNG_TEXT and handle.read(min(length, 80)).startswith(PROVENANCE_PREFIX.encode()):
            drop.append((position, position + 12 + length))
        position += 12 + length
        if kind == b"IEND":
            break
    return _pieces(position, insert_at, png_text_chunks(fields), drop)


def _jpeg_plan(handle: Any, fields: Mapping[str, str]) -> Pieces:
    """XMP goes after the leading APPn / COM segments (JFIF, Exif, ICC …), where readers look for it."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    position = 2
    drop: list[tuple[int, int]] = []
    while position + 4 <= size:
        handle.seek(position)
        marker, length = struct.unpack(">2sH", handle.read(4))
        if marker[0] != 0xFF or not (0xE0 <= marker[1] <= 0xEF or marker[1] == 0xFE):
            break
        if marker[1] == 0xE1 and handle.read(len(_XMP_HEADER)) == _XMP_HEADER:
            drop.append((position, position + 2 + length))
        position += 2 + length
    return _pieces(size, position, jpeg_xmp_segment(fields), drop)


def _pieces(size: int, insert_at: int, insert: bytes, drop: list[tuple[int, int]]) -> Pieces:
    pieces: list[bytes | tuple[int, int]] = []
    position = 0
    for start, end in [*(span for span in drop if span[1] <= insert_at), (insert_at, insert_at)]:
        if start > position:
            pieces.append((position, start))
        position = end
    pieces.append(insert)
    for start, end in [*(span for span in drop if span[0] >= insert_at), (size, size)]:
        if start > position:
            pieces.append((position, start))
        position = end
    return tuple(pieces)


def read_pieces(path: Path, pieces: Pieces) -> bytes:
    """The bytes ``pieces`` describe (see ``splice_plan``). Blocking."""
    out = bytearray()
    with path.open("rb") as handle:
        for piece in pieces:
            if isinstance(piece, bytes):
                out += piece
            else:
                handle.seek(piece[0])
                out += handle.read(piece[1] - piece[0])
    return bytes(out)


def pieces_size(pieces: Pieces) -> int:
    return sum(len(piece) if isinstance(piece, bytes) else piece[1] - piece[0] for piece in pieces)


def read_provenance(data: bytes) -> dict[str, str]:
    """The provenance fields of an image file (PNG text chunks, or the XMP packet of a JPEG / WebP); {} if none."""
    with Image.open(io.BytesIO(data)) as picture:
        if picture.format == "PNG":
            picture.load()  # text chunks after the pixels are read at the end
            text = getattr(picture, "text", {})
            return {
                key.removeprefix(PROVENANCE_PREFIX): str(value)
                for key, value in text.items()
                if key.startswith(PROVENANCE_PREFIX)
            }
        packet = picture.info.get("xmp")
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    if not isinstance(packet, bytes) or b"<!" in packet:  # no DTD, so no entity expansion (the attacks S314 warns of)
        return {}
    root = ElementTree.fromstring(packet)  # noqa: S314 - DTD-free, checked above
    return {
        element.tag.removeprefix("{" + XMP_NAMESPACE + "}"): element.text or ""
        for element in root.iter()
        if element.tag.startswith("{" + XMP_NAMESPACE + "}")
    }
