"""Every member's language, end to end: the commands Discord stores carry every locale's names and descriptions
(the fake refuses what Discord refuses), and the same command is answered in the member's language, else the
server's, else English."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bot.i18n import DEFAULT_LOCALE, LOCALES
from tests.botrunner import bot_settings, running_bot, wait_for_card
from tests.fakediscord import FakeDiscord

TRANSLATED = {locale for locale in LOCALES if locale != DEFAULT_LOCALE}
#: Choices that read the same in every language (sizes, ratios, counts) carry no localization.
UNIVERSAL_CHOICE = re.compile(r"^[\d:]+K?$")


def untranslated(command: dict[str, Any]) -> list[str]:
    """Every name or description of ``command`` (options and choices too) that lacks one of our locales."""
    missing: list[str] = []

    def check(item: dict[str, Any], path: str, described: bool) -> None:
        if TRANSLATED - set(item.get("name_localizations") or {}):
            missing.append(f"{path} name")
        if described and TRANSLATED - set(item.get("description_localizations") or {}):
            missing.append(f"{path} description")
        for option in item.get("options") or []:
            check(option, f"{path} {option['name']}", True)
        for choice in item.get("choices") or []:
            if not UNIVERSAL_CHOICE.match(choice["name"]) and TRANSLATED - set(choice.get("name_localizations") or {}):
                missing.append(f"{path} choice {choice['name']}")

    check(command, command["name"], command.get("type", 1) == 1)
    return missing


async def test_commands_are_synced_in_every_language_and_answered_in_the_members(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        guild = await fake.add_guild("Koalas")
        channel = await fake.add_channel(guild, "art")
        french_server = await fake.add_guild("Koalas FR")
        french_server.locale = "fr"
        french_channel = await fake.add_channel(french_server, "art")
        members = {}
        for name, locale in (("anna", "de"), ("yuki", "ja"), ("minji", "ko"), ("sam", "en-GB")):
            members[name] = user = fake.add_user(name)
            user.locale = locale
            await fake.add_member(guild, user)
            await fake.add_member(french_server, user)
        settings = bot_settings(fake, guild, tmp_path).model_copy(deep=True)
        settings.discord.command_guilds = [guild.id, french_server.id]
        async with running_bot(fake, settings):
            synced = fake.commands(guild)
            assert {c["name"] for c in synced} >= {"imagine", "jobs", "help", "seedream-admin"}
            assert [gap for command in synced for gap in untranslated(command)] == []
            imagine = next(c for c in synced if c["name"] == "imagine")
            assert imagine["name_localizations"]["de"] == "bild" and imagine["name_localizations"]["ja"] == "画像生成"
            assert "en-US" not in imagine["name_localizations"]  # English is the default itself

            async def jobs(user: str, where: Any) -> str:
                handle = await fake.slash_command("jobs", user=members[user], channel=where)
                return str((await handle.wait_for_response(lambda m: bool(m.content))).content)

            assert await jobs("anna", channel) == "Du hast hier noch keine Aufträge. Probier `/bild` aus!"
            assert await jobs("yuki", channel) == "ここにはまだジョブがありません。`/画像生成` を試してみてください！"
            # no Korean catalog: the server's language, and where we lack that too, English
            assert await jobs("minji", french_channel) == "Vous n'avez encore aucun travail ici. Essayez `/imaginer` !"
            assert await jobs("minji", channel) == "You have no jobs here yet. Try `/imagine`!"
            assert await jobs("sam", french_channel) == "You have no jobs here yet. Try `/imagine`!"


async def test_a_german_members_card_and_results_are_german_with_the_footers_unchanged(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        guild = await fake.add_guild("Koalas")
        channel = await fake.add_channel(guild, "art")
        anna, yuki = fake.add_user("anna"), fake.add_user("yuki")
        anna.locale, yuki.locale = "de", "ja"
        for user in (anna, yuki):
            await fake.add_member(guild, user)
        async with running_bot(fake, bot_settings(fake, guild, tmp_path)):
            handle = await fake.slash_command("imagine", user=anna, channel=channel, options={"prompt": "ein Koala"})
            card = await wait_for_card(handle)
            thread = await fake.wait_for(lambda: next(iter(fake.threads(channel)), None), timeout=10)
            result = await fake.wait_for(
                lambda: next((m for m in fake.bot_messages(thread) if m.attachments), None), 10
            )
            await fake.wait_for(lambda: "Fertig" in (card.embeds[0].get("description") or "") or None, 10)
            embed = card.embeds[0]
            assert embed["title"] == "ein Koala"  # the prompt, as it was typed
            assert embed["description"].startswith("✅ Fertig in ") and embed["description"].endswith(": 1 Bild.")
            assert [f["name"] for f in embed["fields"]] == ["Angefragt von", "Anbieter"]
            assert re.fullmatch(r"job [0-9a-f]{19}", embed["footer"]["text"])  # machine-read: never translated
            shown = result.embeds[0]
            assert re.fullmatch(r"job [0-9a-f]{19} · images 1–1 of 1", shown["footer"]["text"])
            assert {"Angefragt von", "Seed"} <= {f["name"] for f in shown["fields"]}
            labels = [c["label"] for row in result.components for c in row["components"]]
            assert labels[:3] == ["🎲 Neu würfeln", "✏️ Bearbeiten", "🗑️ Löschen"]

            # bad input, in the member's language, privately, and nothing queued
            refused = await fake.slash_command("imagine", user=yuki, channel=channel, options={"prompt": "   "})
            answer = await refused.wait_for_response(lambda m: bool(m.content))
            assert answer.content == "作りたい画像を説明してください。プロンプトが空です。" and answer.flags & 64
