"""Provenance: a posted image says, in its own metadata, which prompt, model, seed and job made it.

Everything is read back from the bytes that would be posted (``UploadFile.read``) with Pillow and the
standard XML parser, not with the bot's own reader alone, and the stored original is checked untouched.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from PIL import Image

from bot.config import ArkConfig, GenerationSection, load_settings
from bot.images import XMP_NAMESPACE, ImageStore, StoredImage, read_provenance
from bot.providers.ark import ArkProvider
from bot.providers.base import GenerationRequest
from bot.uploads import OVERHEAD_BYTES, UploadFile, plan_parts, provenance_fields
from tests.fakeproviders.ark import FakeArkServer
from tests.provider_helpers import KEY_ENV

LIMIT = 25 * 1024 * 1024
REQUEST = GenerationRequest(prompt="a red fox «in the snow» & <moonlight> 狐狸", aspect_ratio="16:9", seed=1234)
XMP_APP1 = b"http://ns.adobe.com/xap/1.0/\x00"


def fields(job_id: str = "job42", request: GenerationRequest = REQUEST) -> dict[str, str]:
    return provenance_fields(job_id, request, model="seedream-5-5-261028", provider="ark")


def encoded(picture: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(width: int, height: int) -> Image.Image:
    """Incompressible pixels, so an image can be made bigger than an upload limit."""
    return Image.frombytes("RGB", (width, height), hashlib.shake_256(b"noise").digest(width * height * 3))


def png_text(data: bytes) -> dict[str, str]:
    with Image.open(io.BytesIO(data)) as picture:
        assert picture.format == "PNG"
        picture.load()
        return dict(picture.text)  # type: ignore[attr-defined]


def xmp_fields(data: bytes) -> dict[str, str]:
    """The ``seedream:`` elements of the file's XMP packet, parsed with the standard library."""
    with Image.open(io.BytesIO(data)) as picture:
        packet = picture.info["xmp"]
    root = ElementTree.fromstring(packet)
    prefix = "{" + XMP_NAMESPACE + "}"
    return {e.tag.removeprefix(prefix): e.text or "" for e in root.iter() if e.tag.startswith(prefix)}


def xmp_segments(data: bytes) -> int:
    """How many APP1 XMP segments a JPEG's header holds."""
    position, count = 2, 0
    while data[position] == 0xFF and 0xE0 <= data[position + 1] <= 0xEF:
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        count += data[position + 4 : position + 4 + len(XMP_APP1)] == XMP_APP1
        position += 2 + length
    return count


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as picture:
        return picture.convert("RGB").tobytes()


def one_upload(images: list[StoredImage], limit: int = LIMIT, **kwargs: Any) -> UploadFile:
    ((upload,),) = plan_parts(images, "job42", limit, **kwargs)
    return upload


async def test_a_png_result_carries_prompt_model_seed_and_job_id_in_text_chunks(store: ImageStore) -> None:
    image = await store.save_pillow(Image.new("RGB", (640, 360), (30, 90, 160)), provider="local")
    stored = image.path.read_bytes()

    upload = one_upload([image], provenance=fields())
    posted = upload.read()

    text = png_text(posted)
    assert text["seedream:prompt"] == "a red fox «in the snow» & <moonlight> 狐狸"
    assert text["seedream:model"] == "seedream-5-5-261028"
    assert text["seedream:seed"] == "1234"
    assert text["seedream:job_id"] == "job42"
    assert (text["seedream:aspect_ratio"], text["seedream:resolution"], text["seedream:image"]) == ("16:9", "2K", "1")
    assert read_provenance(posted) == {key.removeprefix("seedream:"): value for key, value in text.items()}
    assert upload.filename == "seedream-job42-1.png" and upload.size == len(posted) and upload.path is None
    assert pixels(posted) == pixels(stored), "spliced in, not re-encoded"
    assert image.path.read_bytes() == stored and hashlib.sha256(stored).hexdigest() == image.sha256
    assert png_text(stored) == {}, "the stored original stays as the provider made it"


async def test_a_jpeg_result_carries_them_in_one_xmp_packet(store: ImageStore) -> None:
    provider_xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    original = encoded(noise(320, 240), "JPEG", quality=90, xmp=provider_xmp)
    image = await store.save_bytes(original)

    posted = one_upload([image], provenance=fields()).read()

    assert xmp_fields(posted) == {**fields(), "image": "1"}
    assert xmp_segments(posted) == 1, "the provider's own packet is replaced, not shadowed"
    assert pixels(posted) == pixels(original)
    assert posted[-(len(original) - 200) :] == original[-(len(original) - 200) :], "the image data is copied"
    with Image.open(io.BytesIO(posted)) as picture:
        picture.load()
        assert picture.format == "JPEG" and picture.size == (320, 240)


async def test_the_metadata_survives_the_re_encode_that_fits_the_upload_limit(store: ImageStore) -> None:
    images = [await store.save_bytes(encoded(noise(900, 700), "PNG")) for _ in range(2)]
    limit = OVERHEAD_BYTES + 600_000
    assert all(image.size_bytes > limit for image in images)

    parts = plan_parts(images, "job7", limit, 3, provenance=fields("job7"))

    files = [upload for part in parts for upload in part]
    assert [f.filename for f in files] == ["seedream-job7-3.jpg", "seedream-job7-4.jpg"]
    for number, upload in enumerate(files, start=3):
        posted = upload.read()
        assert len(posted) == upload.size <= limit - OVERHEAD_BYTES
        assert upload.reencoded_from == (900, 700)
        assert xmp_fields(posted) == {**fields("job7"), "image": str(number)}


async def test_a_file_that_fits_only_without_metadata_is_re_encoded_rather_than_posted_bare(
    store: ImageStore,
) -> None:
    image = await store.save_bytes(encoded(noise(400, 300), "PNG"))
    limit = OVERHEAD_BYTES + image.size_bytes + 10  # the PNG fits; with its text chunks it does not
    assert one_upload([image], limit).path == image.path

    upload = one_upload([image], limit, provenance=fields())
    posted = upload.read()
    assert upload.reencoded_from == (400, 300) and len(posted) <= limit - OVERHEAD_BYTES
    assert xmp_fields(posted)["job_id"] == "job42"


async def test_other_formats_become_lossless_png_with_the_text(store: ImageStore) -> None:
    original = encoded(noise(200, 100), "WEBP", lossless=True)
    image = await store.save_bytes(original)

    upload = one_upload([image], provenance=fields())
    posted = upload.read()

    assert upload.filename == "seedream-job42-1.png"
    assert png_text(posted)["seedream:job_id"] == "job42"
    assert pixels(posted) == pixels(original)


async def test_a_prompt_too_long_for_a_jpeg_packet_is_cut_and_says_so(store: ImageStore) -> None:
    long = GenerationRequest(prompt="fox & hound " * 6000)  # 72,000 characters, 102,000 bytes escaped
    jpeg = await store.save_bytes(encoded(noise(64, 64), "JPEG"))
    png = await store.save_bytes(encoded(noise(64, 64), "PNG"))

    from_jpeg = xmp_fields(one_upload([jpeg], provenance=fields(request=long)).read())
    from_png = read_provenance(one_upload([png], provenance=fields(request=long)).read())

    assert from_jpeg["prompt_truncated"] == "true" and from_jpeg["prompt"].endswith("…")
    assert long.prompt.strip().startswith(from_jpeg["prompt"][:-1]) and len(from_jpeg["prompt"]) > 10_000
    assert from_png["prompt"] == long.prompt.strip(), "PNG text chunks have no such limit"


async def test_without_provenance_the_stored_file_is_posted_as_it_is(store: ImageStore) -> None:
    image = await store.save_pillow(Image.new("RGB", (64, 64), (1, 2, 3)))
    upload = one_upload([image])  # the call cogs/delivery.py makes today
    assert upload.path == image.path and upload.read() == image.path.read_bytes()
    assert read_provenance(upload.read()) == {}


def test_provenance_is_on_by_default_and_off_with_a_config_key(tmp_path: Path) -> None:
    assert GenerationSection().provenance is True
    config = tmp_path / "config.toml"
    config.write_text("[generation]\nprovenance = false\n")
    assert load_settings(config).generation.provenance is False


def test_random_seeds_and_options_are_said_as_such() -> None:
    request = GenerationRequest(prompt=" koala ", style="Cinematic", enhance=True, transparent=True)
    assert provenance_fields("j", request, model="m", provider="p") == {
        "prompt": "koala",
        "model": "m",
        "seed": "random",
        "job_id": "j",
        "provider": "p",
        "aspect_ratio": "1:1",
        "resolution": "2K",
        "style": "Cinematic",
        "enhance": "true",
        "transparent": "true",
    }


@pytest.fixture
async def ark(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeArkServer]:
    server = FakeArkServer()
    await server.start()
    monkeypatch.setenv(KEY_ENV, server.api_key)
    yield server
    await server.stop()


async def test_a_5x_result_from_the_provider_is_posted_with_its_provenance(
    ark: FakeArkServer, store: ImageStore
) -> None:
    """From the provider's answer to the bytes posted: Seedream 5.0 Lite answers in JPEG by default."""
    config = ArkConfig(base_url=f"{ark.base_url}/api/v3", api_key_env=KEY_ENV, model="seedream-5-0-260128")
    provider = ArkProvider("ark-lite", config, store, retry_base_seconds=0.001)
    request = GenerationRequest(prompt="two lighthouses", resolution="3K", count=2)
    try:
        result = await provider.generate(request)
    finally:
        await provider.close()
    assert [image.mime for image in result.images] == ["image/jpeg", "image/jpeg"]

    tags = provenance_fields("job9", request, model=provider.capabilities.model, provider=provider.name)
    (part,) = plan_parts(result.images, "job9", LIMIT, provenance=tags)

    read_back = [read_provenance(upload.read()) for upload in part]
    assert read_back == [{**tags, "image": "1"}, {**tags, "image": "2"}]
    assert read_back[0]["model"] == "seedream-5-0-260128" and read_back[0]["seed"] == "random"
