"""Broken and hostile input never crashes the bot, never reaches a provider, and is explained politely."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image

from bot.errors import ImageRejected
from bot.fetch import ImageFetcher, origin_of
from bot.images import ImageStore
from bot.prompts import clean_prompt


def encode(fmt: str, size: tuple[int, int] = (32, 32), **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "blue").save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge canvas: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (encode("PNG")[:60], "damaged or truncated"),
        (b"%PDF-1.4 not an image at all", "not an image we can read"),
        (b"GIF89a" + b"\x00" * 20, "not an image we can read"),
        (png_header_claiming(60_000, 60_000), "pixels"),
    ],
    ids=["zero-bytes", "truncated", "not-an-image", "broken-gif", "decompression-bomb"],
)
async def test_bad_files_are_refused_with_a_reason(store: ImageStore, data: bytes, message: str) -> None:
    with pytest.raises(ImageRejected, match=message):
        await store.save_bytes(data)
    assert not list(store.root.rglob("*.part"))  # nothing half-written is left behind


async def test_a_mislabelled_file_is_stored_by_what_it_really_is(store: ImageStore) -> None:
    stored = await store.save_bytes(encode("JPEG"))  # arrived as "picture.png"
    assert stored.mime == "image/jpeg" and stored.path.suffix == ".jpg"


async def test_animated_images_keep_their_first_frame(store: ImageStore) -> None:
    frames = [Image.new("RGB", (40, 30), colour) for colour in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    stored = await store.save_bytes(buffer.getvalue())
    assert (stored.width, stored.height) == (40, 30)


async def test_byte_cap_stops_a_stream_early(tmp_path: Path) -> None:
    small = ImageStore(tmp_path, max_pixels=10_000_000, max_bytes=10_000)
    with pytest.raises(ImageRejected, match="larger than"):
        await small.save_bytes(encode("PNG", (400, 400), compress_level=0))


@pytest.mark.parametrize(
    "prompt",
    ["   ", "\u200b\u200b", "\x00\x01\x1b\x7f", "\u202e\u2066"],
    ids=["whitespace", "zero-width", "control", "bidi"],
)
def test_invisible_prompts_clean_to_empty(prompt: str) -> None:
    assert clean_prompt(prompt) == ""


def test_prompt_cleaning_keeps_visible_text() -> None:
    assert clean_prompt("a\u200b koala\x07 on  a\tskate\u00adboard\n") == "a koala on a skateboard"


class HostileServer:
    """An allow-listed host that redirects elsewhere, plus a second (forbidden) host that counts hits."""

    def __init__(self) -> None:
        self.forbidden_hits = 0

    async def start(self) -> tuple[str, str]:
        allowed, forbidden = web.Application(), web.Application()
        self.forbidden_url = ""

        async def redirect(_: web.Request) -> web.Response:
            raise web.HTTPFound(self.forbidden_url + "/secret.png")

        async def image(_: web.Request) -> web.Response:
            return web.Response(body=encode("PNG"), content_type="image/png")

        async def hit(_: web.Request) -> web.Response:
            self.forbidden_hits += 1
            return web.Response(body=encode("PNG"), content_type="image/png")

        async def huge(_: web.Request) -> web.Response:
            return web.Response(body=b"\x00" * 200_000, content_type="image/png")

        allowed.router.add_get("/redirect.png", redirect)
        allowed.router.add_get("/ok.png", image)
        allowed.router.add_get("/huge.png", huge)
        forbidden.router.add_get("/{name}", hit)
        self.runners = []
        urls = []
        for app in (allowed, forbidden):
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.runners.append(runner)
            urls.append(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")  # type: ignore[union-attr]
        self.forbidden_url = urls[1]
        return urls[0], urls[1]

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


async def test_fetcher_only_talks_to_allowed_origins(store: ImageStore) -> None:
    server = HostileServer()
    allowed, forbidden = await server.start()
    fetcher = ImageFetcher(store, [allowed], timeout_seconds=5, max_bytes=100_000)
    try:
        assert (await fetcher.fetch(f"{allowed}/ok.png")).mime == "image/png"
        for url in (
            f"{forbidden}/direct.png",  # another port on the same host is another origin
            f"{allowed}/redirect.png",  # a redirect to a forbidden origin
            "http://169.254.169.254/latest/meta-data/iam",  # cloud metadata
            "http://localhost/ok.png",
            "file:///etc/passwd",
            "ftp://cdn.discordapp.com/x.png",
        ):
            with pytest.raises(ImageRejected):
                await fetcher.fetch(url)
        with pytest.raises(ImageRejected, match="larger than"):
            await fetcher.fetch(f"{allowed}/huge.png")
        assert server.forbidden_hits == 0
    finally:
        await fetcher.close()
        await server.stop()


def test_origins_compare_scheme_host_and_port() -> None:
    assert origin_of("https://CDN.discordapp.com:443/a.png?x=1") == "https://cdn.discordapp.com"
    assert origin_of("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080"
    assert origin_of("https://cdn.discordapp.com.evil.example/x") == "https://cdn.discordapp.com.evil.example"
    assert origin_of("javascript:alert(1)") is None
    assert origin_of("https://user:pass@cdn.discordapp.com/x") == "https://cdn.discordapp.com"
