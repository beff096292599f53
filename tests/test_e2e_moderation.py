"""Quotas and moderation end to end: what members and moderators see through the fake Discord."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import aiosqlite
import pytest
from PIL import Image

from tests.botrunner import bot_settings, is_card, running_bot, wait_for_card
from tests.fakediscord import CommandNotAvailable, FakeDiscord, FakeMessage, Perm


class Server:
    async def build(self, fake: FakeDiscord) -> Server:
        self.fake = fake
        self.guild = await fake.add_guild("Mods")
        self.channel = await fake.add_channel(self.guild, "art")
        self.mod_role = await fake.add_role(self.guild, "Moderators", Perm.MANAGE_GUILD)
        self.small = await fake.add_role(self.guild, "Small", 0)
        self.big = await fake.add_role(self.guild, "Big", 0)
        self.mod = fake.add_user("mod")
        self.alice = fake.add_user("alice")
        self.bob = fake.add_user("bob")
        await fake.add_member(self.guild, self.mod, roles=[self.mod_role])
        await fake.add_member(self.guild, self.alice, roles=[self.small, self.big])
        await fake.add_member(self.guild, self.bob)
        return self

    async def run(self, name: str, user, **options) -> FakeMessage:  # type: ignore[no-untyped-def]
        handle = await self.fake.slash_command(name, user=user, channel=self.channel, options=options)
        return await handle.wait_for_response(
            lambda m: is_card(m) or (bool(m.content) and "thinking" not in m.content), timeout=10
        )

    async def imagine(self, user, prompt: str = "a koala", **options) -> str:  # type: ignore[no-untyped-def]
        """ "Queued" when the answer is the job's public card, else the private refusal's words."""
        answer = await self.run("imagine", user, prompt=prompt, **options)
        return "Queued" if is_card(answer) else answer.content


async def ledger(tmp_path: Path, user_id: int) -> dict[str, int]:
    query = "SELECT entry, SUM(units) FROM quota_ledger WHERE user_id = ? GROUP BY entry"
    async with aiosqlite.connect(tmp_path / "bot.sqlite3") as conn, conn.execute(query, (user_id,)) as cursor:
        return {row[0]: row[1] for row in await cursor.fetchall()}


async def jobs_of(tmp_path: Path, user_id: int) -> list[str]:
    query = "SELECT state FROM jobs WHERE requester_id = ? ORDER BY created_at"
    async with aiosqlite.connect(tmp_path / "bot.sqlite3") as conn, conn.execute(query, (user_id,)) as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def refusals(tmp_path: Path, user_id: int) -> list[str]:
    """The rule each refused prompt of the member matched, oldest first, from the moderators' audit log."""
    query = (
        "SELECT json_extract(details, '$.rule') FROM audit_log WHERE action = 'prompt.refused' AND actor_id = ?"
        " ORDER BY id"
    )
    async with aiosqlite.connect(tmp_path / "bot.sqlite3") as conn, conn.execute(query, (user_id,)) as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def test_over_quota_is_refused_with_the_reset_time_and_nothing_queued(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Server().build(fake)
        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path, quota={"default_limit": 3})):
            assert "Queued" in await server.imagine(server.bob, count=2)
            refusal = await server.imagine(server.bob, count=2)
            assert "1 of 3 left" in refusal and "<t:" in refusal  # when it resets, as a Discord timestamp
            assert len(await jobs_of(tmp_path, server.bob.id)) == 1
            quota = await server.run("quota", server.bob)
            assert "2 of 3 used, 1 left" in quota.content and quota.flags & 64


async def test_roles_resolve_to_the_most_generous_and_members_cannot_moderate(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Server().build(fake)
        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path)):
            with pytest.raises(CommandNotAvailable):  # Discord offers /seedream-admin to Manage Server only
                await server.run("seedream-admin limits set", server.alice, scope="guild", units=100)
            fake.set_command_permission(server.guild, "seedream-admin", server.alice)  # Integrations: allowed
            refused = await server.run("seedream-admin limits set", server.alice, scope="guild", units=100)
            assert "Manage Server" in refused.content  # the bot checks again when the command runs
            await server.run("seedream-admin limits set", server.mod, scope="role", units=2, role=server.small)
            await server.run("seedream-admin limits set", server.mod, scope="role", units=5, role=server.big)
            await server.run("seedream-admin limits set", server.mod, scope="guild", units=1)
            assert "of 5" in (await server.run("quota", server.alice)).content
            assert "of 1" in (await server.run("quota", server.bob)).content
            shown = await server.run("seedream-admin limits show", server.mod)
            assert f"<@&{server.big.id}>: 5" in shown.content


async def test_blocked_members_and_banned_words_are_refused(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Server().build(fake)
        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path)):
            await server.run("seedream-admin block", server.mod, member=server.bob, reason="spam")
            assert "spam" in await server.imagine(server.bob)
            await server.run("seedream-admin banned-words add", server.mod, words="gore, blood")
            refusal = await server.imagine(server.alice, prompt="lots of GORE here")
            assert "gore" in refusal.lower() and "Queued" not in refusal
            assert await server.imagine(server.alice, prompt="lots of g\u034fo\ufe0fr\u034fe here") == refusal
            assert await server.imagine(server.alice, prompt="lots of gоrе here") == refusal  # Cyrillic о, е
            assert "Queued" in await server.imagine(server.alice, prompt="a gorgeous sunset")
            assert await refusals(tmp_path, server.alice.id) == ["word", "normalised", "look-alike"]
            await server.run("seedream-admin unblock", server.mod, member=server.bob)
            assert "Queued" in await server.imagine(server.bob)


async def test_pause_stops_new_jobs_but_running_ones_finish(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Server().build(fake)
        slow = bot_settings(fake, server.guild, tmp_path, providers={"local": {"kind": "local", "delay_seconds": 0.8}})
        async with running_bot(fake, slow):
            assert "Queued" in await server.imagine(server.alice)
            await server.run("seedream-admin pause", server.mod, reason="budget")
            assert "paused" in (await server.imagine(server.bob)).lower()
            async with asyncio.timeout(10):
                while await jobs_of(tmp_path, server.alice.id) != ["done"]:
                    await asyncio.sleep(0.05)
            assert await jobs_of(tmp_path, server.bob.id) == []


async def test_cancel_refunds_exactly(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Server().build(fake)
        slow = bot_settings(fake, server.guild, tmp_path, providers={"local": {"kind": "local", "delay_seconds": 5}})
        async with running_bot(fake, slow):
            await server.imagine(server.alice, count=3)
            status = await fake.wait_for(
                lambda: next((m for m in fake.bot_messages(server.channel) if m.components), None), timeout=5
            )
            cancel = status.components[0]["components"][0]["custom_id"]
            assert ":cancel:" in cancel
            refused = await fake.click_button(status, cancel, user=server.bob)
            assert "Only" in (await refused.wait_for_response()).content
            handle = await fake.click_button(status, cancel, user=server.alice)
            assert "Cancelled" in (await handle.wait_for_response(lambda m: "Cancelled" in (m.content or ""))).content
            assert await ledger(tmp_path, server.alice.id) == {"reserve": 3, "refund": 3}
            assert await jobs_of(tmp_path, server.alice.id) == ["cancelled"]


async def test_usage_chart_is_a_png_and_actions_are_audited(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Server().build(fake)
        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path)):
            await server.imagine(server.alice, count=2)
            await fake.wait_for(
                lambda: any(m.attachments for t in fake.threads(server.channel) for m in fake.bot_messages(t)), 10
            )
            await server.run("seedream-admin refund", server.mod, member=server.alice, amount=1, reason="blurry")
            handle = await fake.slash_command(
                "seedream-admin usage", user=server.mod, channel=server.channel, options={"period": "day"}
            )
            report = await handle.wait_for_response(lambda m: bool(m.attachments), timeout=20)
            files = {a.filename: a for a in report.attachments}
            with Image.open(io.BytesIO(files["usage-day.png"].data)) as chart:
                assert chart.format == "PNG" and chart.width >= 300
            assert b"alice" in files["usage-day.csv"].data
            assert b"refund" in files["audit-day.csv"].data and b"blurry" in files["audit-day.csv"].data
            await asyncio.sleep(0)


async def test_provider_failure_refunds_exactly_and_says_why(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.fakeproviders.common import Fault
    from tests.fakeproviders.novita import FakeNovitaServer

    monkeypatch.setenv("E2E_NOVITA_KEY", FakeNovitaServer.api_key)
    async with FakeDiscord() as fake, FakeNovitaServer() as novita:
        server = await Server().build(fake)
        novita.inject("create", Fault(400, {"code": 400, "reason": "ILLEGAL_PROMPT", "message": "no", "metadata": {}}))
        settings = bot_settings(
            fake,
            server.guild,
            tmp_path,
            generation={"default_provider": "novita", "default_resolution": "2K"},
            providers={
                "novita": {
                    "kind": "novita",
                    "base_url": novita.base_url,
                    "api_key_env": "E2E_NOVITA_KEY",
                    "retry_base_seconds": 0.01,
                }
            },
        )
        async with running_bot(fake, settings):
            options = {"prompt": "a koala", "count": 2}
            handle = await fake.slash_command("imagine", user=server.alice, channel=server.channel, options=options)
            card = await wait_for_card(handle)
            async with asyncio.timeout(10):
                while await jobs_of(tmp_path, server.alice.id) != ["failed"]:
                    await asyncio.sleep(0.05)
            assert await ledger(tmp_path, server.alice.id) == {"reserve": 2, "refund": 2}
            # the card shows the outcome, with no live Cancel button, and the member is told privately
            await fake.wait_for(lambda: "did not complete" in card.embeds[0]["description"] or None, 5)
            assert card.components == []
            notice = await handle.wait_for_response(lambda m: bool(m.flags & 64) and bool(m.content))
            assert "refused" in notice.content.lower() or "blocked" in notice.content.lower()
            assert notice.allowed_mentions == {"parse": []}


async def test_only_the_bots_owner_lifts_a_providers_pause_for_every_server(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.fakeproviders.novita import FakeNovitaServer

    monkeypatch.setenv("E2E_NOVITA_KEY", FakeNovitaServer.api_key)
    async with FakeDiscord() as fake, FakeNovitaServer() as novita:
        server = await Server().build(fake)
        novita.credit = 0
        novita_only = {"novita": {"kind": "novita", "base_url": novita.base_url, "api_key_env": "E2E_NOVITA_KEY"}}
        settings = bot_settings(
            fake, server.guild, tmp_path, generation={"default_provider": "novita"}, providers=novita_only
        )
        async with running_bot(fake, settings):
            assert "Queued" in await server.imagine(server.alice)
            async with asyncio.timeout(10):
                while await jobs_of(tmp_path, server.alice.id) != ["failed"]:
                    await asyncio.sleep(0.05)
            assert "paused for every server" in await server.imagine(server.bob)
            novita.credit = None  # topped up; the pause still holds until the owner lifts it (or 30 minutes pass)

            by_mod = (await server.run("seedream-admin resume", server.mod)).content
            assert "Generation is resumed on this server." in by_mod
            assert "Only the bot's owner can resume provider novita for every server" in by_mod
            assert "after 30 minutes" in by_mod
            assert "paused for every server" in await server.imagine(server.bob)

            owner = fake.state.owner  # the application's owner (GET /oauth2/applications/@me), here the server's
            by_owner = (await server.run("seedream-admin resume", owner)).content
            assert "Providers paused for credit are back for every server: novita." in by_owner
            assert "Queued" in await server.imagine(server.bob)


async def test_owner_ids_in_the_config_name_the_owners(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Server().build(fake)
        settings = bot_settings(fake, server.guild, tmp_path, discord={"owner_ids": [server.mod.id]})
        async with running_bot(fake, settings) as bot:
            bot.engine.health.pause_for_credit("local")
            by_app_owner = (await server.run("seedream-admin resume", fake.state.owner)).content
            assert "Only the bot's owner can resume provider local" in by_app_owner  # the list replaces the app's owner
            by_listed = (await server.run("seedream-admin resume", server.mod)).content
            assert "back for every server: local" in by_listed
            assert not bot.engine.health.paused()


async def test_help_shows_what_is_possible_and_the_allowance(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Server().build(fake)
        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path, quota={"default_limit": 7})):
            text = (await server.run("help", server.bob)).content
            assert "/imagine" in text and "Edit with Seedream" in text and "local" in text
            assert "7 of 7 credits left" in text
