"""A small real discord.py bot and a world in the fake Discord, shared by the harness's own tests.

The client is pointed at the fake only through cogs.endpoints (use_api_base before login, adopt_gateway in
setup_hook); everything else is discord.py talking HTTP and websocket to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import discord
import discord.gateway
import discord.http
import pytest
from discord import app_commands
from discord.ext import commands
from discord.http import Route
from PIL import Image

from cogs.endpoints import adopt_gateway, use_api_base
from tests.fakediscord import (
    FakeChannel,
    FakeDiscord,
    FakeGuild,
    FakeUser,
)


def png(width: int, height: int, color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


class Feedback(discord.ui.Modal, title="Feedback"):
    text: discord.ui.TextInput[Feedback] = discord.ui.TextInput(label="Your feedback", custom_id="feedback:text")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"got {self.text.value}", ephemeral=True)


class Upload(discord.ui.Modal, title="Upload"):
    files: discord.ui.Label[Upload] = discord.ui.Label(
        text="Your pictures", component=discord.ui.FileUpload(custom_id="upload:files", min_values=1, max_values=2)
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        assert isinstance(self.files.component, discord.ui.FileUpload)
        got = ", ".join([f"{a.filename} {a.size} {len(await a.read())}" for a in self.files.component.values])
        await interaction.response.send_message(f"got {got}", ephemeral=True)


class Menu(discord.ui.View):
    @discord.ui.button(label="Go", custom_id="menu:go")
    async def go(self, interaction: discord.Interaction, button: discord.ui.Button[Menu]) -> None:
        await interaction.response.edit_message(content="clicked", view=None)

    @discord.ui.button(label="Later", custom_id="menu:defer")
    async def later(self, interaction: discord.Interaction, button: discord.ui.Button[Menu]) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content="deferred edit")
        await interaction.followup.send("secret", ephemeral=True)


class FakeBot(commands.Bot):
    """A small bot exercising every feature the fake must support."""

    def __init__(self, api_base: str, guild_id: int, intents: discord.Intents | None = None) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents or discord.Intents.default(),
            guild_ready_timeout=0.05,
        )
        self.api_base = api_base
        self.guild_id = guild_id
        self.seen: list[discord.Message] = []
        self.errors: list[BaseException] = []
        self.tree.on_error = self._on_tree_error  # type: ignore[method-assign]
        self._register()

    async def _on_tree_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        self.errors.append(getattr(error, "original", error))

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every re-IDENTIFY (Discord's identify rate limit); not needed here."""

    async def setup_hook(self) -> None:
        await adopt_gateway(self, self.api_base)
        guild = discord.Object(self.guild_id)
        self.tree.copy_global_to(guild=guild)
        await self.tree.sync(guild=guild)
        await self.tree.sync()  # global too, for DMs

    async def on_message(self, message: discord.Message) -> None:
        if message.author.id == self.user.id:  # type: ignore[union-attr]
            return
        self.seen.append(message)
        if message.guild is None:
            await message.channel.send(f"dm ok: {message.content}")
        elif self.user in message.mentions:
            await message.reply(f"you said: {message.content}")
            await message.create_thread(name="discussion")

    def _register(self) -> None:
        tree = self.tree

        @tree.command(description="Direct response")
        async def ping(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("pong")

        @tree.command(description="Defer, read the input image, reply with a generated PNG")
        async def imagine(
            interaction: discord.Interaction, prompt: str, image: discord.Attachment | None = None
        ) -> None:
            await interaction.response.defer(thinking=True)
            note = ""
            if image is not None:
                with Image.open(io.BytesIO(await image.read())) as img:
                    note = f" from {img.size[0]}x{img.size[1]}"
            file = discord.File(io.BytesIO(png(64, 32, "blue")), filename="out.png")
            embed = discord.Embed(title=prompt).set_image(url="attachment://out.png")
            await interaction.followup.send(f"{prompt}{note}", file=file, embed=embed)

        @imagine.autocomplete("prompt")
        async def prompt_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=p, value=p) for p in ("cat", "car", "dog") if p.startswith(current)]

        @tree.command(description="A button")
        async def menu(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("choose", view=Menu())

        @tree.command(description="A modal")
        async def feedback(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(Feedback())

        @tree.command(description="A modal with a file upload")
        async def upload(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(Upload())

        @tree.command(description="Works wherever a member installed the app; answers with N follow-ups")
        @app_commands.allowed_installs(guilds=True, users=True)
        @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
        async def anywhere(interaction: discord.Interaction, followups: int = 0) -> None:
            await interaction.response.defer(thinking=True)
            where = "guild" if interaction.context.guild else "dm" if interaction.context.dm_channel else "private"
            user = "user" if interaction.is_user_integration() else "-"
            guild = "guild" if interaction.is_guild_integration() else "-"
            await interaction.edit_original_response(content=f"{where} {user} {guild}")
            try:
                for n in range(followups):
                    await interaction.followup.send(f"part {n + 1}")
            except discord.HTTPException as exc:
                await interaction.edit_original_response(content=f"stopped: {exc.code}")

        @tree.command(description="Acknowledges too late")
        async def slow(interaction: discord.Interaction) -> None:
            await asyncio.sleep(0.3)
            await interaction.response.send_message("too late")

        @tree.command(description="Follows up after the token expired")
        async def later(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await asyncio.sleep(0.4)
            await interaction.followup.send("too late")

        @tree.context_menu(name="Describe")
        async def describe(interaction: discord.Interaction, message: discord.Message) -> None:
            await interaction.response.send_message(f"target {message.id}: {message.content}", ephemeral=True)

        @tree.context_menu(name="Profile")
        async def profile(interaction: discord.Interaction, member: discord.Member) -> None:
            await interaction.response.send_message(f"user {member.name} in {member.guild.name}")


@dataclass
class World:
    fake: FakeDiscord
    guild: FakeGuild
    general: FakeChannel
    alice: FakeUser
    bot: FakeBot | None = None
    task: asyncio.Task[None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def client(self) -> FakeBot:
        assert self.bot is not None
        return self.bot

    def channel(self) -> discord.TextChannel:
        found = self.client.get_channel(self.general.id)
        assert isinstance(found, discord.TextChannel)
        return found


@pytest.fixture(autouse=True)
def _restore_discord_endpoints() -> Any:
    """use_api_base/adopt_gateway set process-wide class attributes; put Discord's back after each test."""
    base, gateway = Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    yield
    Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


async def start_bot(
    world: World, intents: discord.Intents | None = None, *, bot_class: type[FakeBot] = FakeBot
) -> FakeBot:
    bot = bot_class(world.fake.api_base, world.guild.id, intents)
    use_api_base(world.fake.api_base)
    await bot.login(world.fake.token)
    world.bot = bot
    world.task = asyncio.create_task(bot.connect(reconnect=True))
    await asyncio.wait_for(bot.wait_until_ready(), 5)
    return bot


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with FakeDiscord(interaction_ack_timeout=3.0) as fake:
        guild = await fake.add_guild("Test Guild")
        general = await fake.add_channel(guild, "general")
        alice = fake.add_user("alice")
        await fake.add_member(guild, alice)
        w = World(fake, guild, general, alice)
        try:
            yield w
        finally:
            if w.bot is not None:
                await w.bot.close()
            if w.task is not None:
                await asyncio.wait_for(w.task, 5)


@pytest.fixture
async def online(world: World) -> World:
    await start_bot(world)
    return world
