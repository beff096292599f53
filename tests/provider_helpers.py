"""Helpers the Novita, HighwayAPI and Ark provider tests share: references, data URIs, the CLI run."""

from __future__ import annotations

import asyncio
import base64
import io
import re
from pathlib import Path

from PIL import Image

from bot.images import ImageStore
from bot.providers.base import StoredImage

KEY_ENV = "TEST_PROVIDER_API_KEY"


async def reference(
    store: ImageStore, width: int, height: int, *, fmt: str = "PNG", colour: tuple[int, int, int] = (200, 80, 40)
) -> StoredImage:
    """A stored reference image, as the bot holds one after downloading and validating it."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format=fmt)
    return await store.save_bytes(buffer.getvalue())


def decode_data_uri(uri: str) -> tuple[str, tuple[int, int]]:
    """(mime, pixel size) of a ``data:image/...;base64,...`` reference as a provider would decode it."""
    match = re.fullmatch(r"data:(image/[a-z]+);base64,(.+)", uri, re.DOTALL)
    assert match, f"not a data URI: {uri[:60]}"
    with Image.open(io.BytesIO(base64.b64decode(match[2]))) as picture:
        assert Image.MIME[picture.format or ""] == match[1], "the data URI's type must match its bytes"
        return match[1], picture.size


async def run_cli(tmp_path: Path, provider_toml: str, argv: list[str]) -> tuple[int, list[Path]]:
    """Run ``seedream-bot generate`` with one configured provider named ``p``; return (exit code, files)."""
    from bot.cli import main

    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[storage]
database = "{tmp_path / "bot.sqlite3"}"
data_dir = "{tmp_path / "data"}"

[generation]
default_provider = "p"

[providers.p]
api_key_env = "{KEY_ENV}"
{provider_toml}
"""
    )
    out = tmp_path / "out"
    # main runs its own event loop; ours keeps serving the fake meanwhile.
    code = await asyncio.to_thread(main, ["generate", *argv, "--config", str(config), "--out", str(out)])
    return code, sorted(out.iterdir()) if out.exists() else []
