"""A member picks a Seedream model in /imagine: the choices name each model's strengths, follow what the server
allows, and the chosen model's own limits and price apply (end to end, fake Discord and a strict fake Ark)."""

from __future__ import annotations

from pathlib import Path

import aiosqlite
import pytest

from tests.botrunner import bot_settings, running_bot, wait_for_card
from tests.fakediscord import FakeDiscord
from tests.fakeproviders.ark import FakeArkServer

LITE = "seedream-5-0-260128"
PRO = "seedream-5-0-pro-260628"


async def charged(tmp_path: Path, user_id: int) -> int:
    query = "SELECT COALESCE(SUM(units), 0) FROM quota_ledger WHERE user_id = ? AND entry = 'reserve'"
    async with aiosqlite.connect(tmp_path / "bot.sqlite3") as conn, conn.execute(query, (user_id,)) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def test_members_choose_among_the_models_the_server_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHOICE_ARK_KEY", FakeArkServer.api_key)
    async with FakeDiscord() as fake, FakeArkServer() as ark:
        guild = await fake.add_guild("Models")
        channel = await fake.add_channel(guild, "art")
        alice = fake.add_user("alice")
        await fake.add_member(guild, alice)
        section = {"kind": "ark", "base_url": f"{ark.base_url}/api/v3", "api_key_env": "CHOICE_ARK_KEY"}
        providers = {
            "local": {"kind": "local"},
            "lite": {**section, "model": LITE},
            "pro": {**section, "model": PRO},
        }
        settings = bot_settings(fake, guild, tmp_path, providers=providers, quota={"default_limit": 50})
        async with running_bot(fake, settings) as bot:
            offered = await fake.autocomplete(
                "imagine",
                user=alice,
                channel=channel,
                options={"prompt": "a koala", "provider": ""},
                focused="provider",
            )
            await offered.wait_for_callback()
            names = {c["value"]: c["name"] for c in (offered.callback_data or {})["choices"]}
            assert set(names) == {"local", "lite", "pro"}
            assert "5.0 Pro" in names["pro"] and "5.0 Lite" in names["lite"]  # each says what it is

            # Pro costs two credits an image, and renders at most 2K
            pro = await fake.slash_command(
                "imagine", user=alice, channel=channel, options={"prompt": "a koala", "provider": "pro", "count": 1}
            )
            await wait_for_card(pro)
            assert await charged(tmp_path, alice.id) == 2
            too_big = await fake.slash_command(
                "imagine", user=alice, channel=channel, options={"prompt": "x", "provider": "lite", "resolution": "1K"}
            )
            refusal = await too_big.wait_for_response(lambda m: bool(m.flags & 64) and bool(m.content))
            assert "2K" in refusal.content and "3K" in refusal.content  # what Lite renders, said politely
            assert await charged(tmp_path, alice.id) == 2  # the refusal charged nothing

            await bot.services.moderation.set_allowed_providers(guild.id, alice.id, ["local", "lite"])
            narrowed = await fake.autocomplete(
                "imagine",
                user=alice,
                channel=channel,
                options={"prompt": "a koala", "provider": ""},
                focused="provider",
            )
            await narrowed.wait_for_callback()
            assert {c["value"] for c in (narrowed.callback_data or {})["choices"]} == {"local", "lite"}
