"""Tests of the fake Discord itself, driven by the real, unmodified discord.py client in-process.

The client is pointed at the fake only through cogs.endpoints (use_api_base before login, adopt_gateway in
setup_hook); everything else is discord.py talking HTTP and websocket to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
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
    CallbackType,
    ErrorCode,
    FakeChannel,
    FakeDiscord,
    FakeGuild,
    FakeUser,
    FileSpec,
    MessageFlag,
    Perm,
)


def png(width: int, height: int, color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


class Feedback(discord.ui.Modal, title="Feedback"):
    text: discord.ui.TextInput[Feedback] = discord.ui.TextInput(label="Your feedback", custom_id="feedback:text")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"got {self.text.value}", ephemeral=True)


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


async def start_bot(world: World, intents: discord.Intents | None = None) -> FakeBot:
    bot = FakeBot(world.fake.api_base, world.guild.id, intents)
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


# --- the happy paths ---------------------------------------------------------------------------------------


async def test_connect_sync_and_round_trip_is_fast(world: World) -> None:
    started = time.perf_counter()
    bot = await start_bot(world)
    handle = await world.fake.slash_command("ping", user=world.alice, channel=world.general)
    reply = await handle.wait_for_response()
    elapsed = time.perf_counter() - started
    ack = handle.ack_latency or 0.0
    print(f"\nconnect + sync + /ping round trip: {elapsed * 1000:.0f} ms (ack {ack * 1000:.1f} ms)")
    assert reply.content == "pong" and handle.callback_type == CallbackType.CHANNEL_MESSAGE_WITH_SOURCE
    assert elapsed < 3.0
    fake = world.fake
    assert bot.user is not None and bot.user.id == fake.bot.id
    assert [r.t for r in fake.dispatches()][:2] == ["READY", "GUILD_CREATE"]
    identify = fake.received_ops(2)[0].d
    assert identify["token"] == fake.token and identify["intents"] == discord.Intents.default().value
    assert fake.gateway.connections and next(iter(fake.gateway.connections)).compress == "zlib-stream"
    assert bot.get_guild(world.guild.id) is not None and bot.get_channel(world.general.id) is not None
    synced = {c["name"]: c for c in fake.commands(world.guild)}
    assert {"ping", "imagine", "menu", "feedback", "Describe"} <= set(synced)
    assert synced["imagine"]["options"][1]["type"] == 11  # attachment option
    assert fake.calls("GET /users/@me") and fake.calls("GET /gateway/bot")
    assert fake.calls("PUT /applications/{application_id}/guilds/{guild_id}/commands")
    assert not fake.unknown_routes


async def test_defer_followup_with_uploaded_png_and_attachment_input(online: World) -> None:
    fake = online.fake
    h = await fake.slash_command(
        "imagine",
        user=online.alice,
        channel=online.general,
        options={"prompt": "a cat"},
        attachments={"image": ("in.png", png(20, 10))},
    )
    assert h.record.payload["data"]["resolved"]["attachments"]
    msg = await h.wait_for_response()
    assert h.callback_type == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
    assert msg.content == "a cat from 20x10" and not msg.loading and msg.id == h.original.id  # type: ignore[union-attr]
    (att,) = msg.attachments
    assert (att.filename, att.content_type, att.width, att.height) == ("out.png", "image/png", 64, 32)
    with Image.open(io.BytesIO(await fake.fetch(att.url))) as img:
        assert img.format == "PNG" and img.size == (64, 32) and img.getpixel((0, 0)) == (0, 0, 255)
    assert msg.embeds[0]["image"]["url"] == att.url and msg.embeds[0]["title"] == "a cat"
    (upload,) = fake.calls("POST /webhooks/{webhook_id}/{webhook_token}")
    assert upload.files[0].field == "files[0]" and upload.json["attachments"][0]["filename"] == "out.png"
    assert fake.read_channel(online.general) == [msg]


async def test_button_click_updates_message(online: World) -> None:
    fake = online.fake
    h = await fake.slash_command("menu", user=online.alice, channel=online.general)
    msg = await h.wait_for_response()
    assert msg.custom_ids() == ["menu:go", "menu:defer"]
    click = await fake.click_button(msg, "menu:go", user=online.alice)
    await click.wait_for_callback()
    assert click.callback_type == CallbackType.UPDATE_MESSAGE
    assert fake.message(msg.id).content == "clicked" and fake.message(msg.id).components == []


async def test_deferred_component_update_edits_clicked_message(online: World) -> None:
    fake = online.fake
    msg = await (await fake.slash_command("menu", user=online.alice, channel=online.general)).wait_for_response()
    click = await fake.click_button(msg, "menu:defer", user=online.alice)
    (secret,) = await click.wait_for_followups()
    assert click.callback_type == CallbackType.DEFERRED_UPDATE_MESSAGE
    assert click.original is not None and click.original.id == msg.id and msg.content == "deferred edit"
    assert secret.content == "secret" and secret.ephemeral and secret.interaction_user_id == online.alice.id
    assert fake.calls("PATCH /webhooks/{webhook_id}/{webhook_token}/messages/{message_id}")[0].path.endswith(
        "@original"
    )


async def test_autocomplete_and_user_context_menu(online: World) -> None:
    fake = online.fake
    h = await fake.autocomplete(
        "imagine", user=online.alice, channel=online.general, options={"prompt": "ca"}, focused="prompt"
    )
    await h.wait_for_callback()
    assert h.autocomplete_choices == [{"name": "cat", "value": "cat"}, {"name": "car", "value": "car"}]
    h = await fake.user_context_menu("Profile", online.alice, user=online.alice, channel=online.general)
    assert (await h.wait_for_response()).content == "user alice in Test Guild"


async def test_direct_messages(online: World) -> None:
    fake, bot = online.fake, online.client
    dm = fake.dm_channel(online.alice)
    await fake.send_message(dm, online.alice, "psst")
    reply = await fake.wait_for_message(dm, lambda m: m.author_id == fake.bot.id)
    assert reply.content == "dm ok: psst"  # DMs carry content without the message_content intent
    h = await fake.slash_command("ping", user=online.alice, channel=dm)
    assert (await h.wait_for_response()).content == "pong" and "user" in h.record.payload
    await (await bot.fetch_user(online.alice.id)).send("hello")
    assert fake.read_channel(dm)[-1].content == "hello"


async def test_injected_errors_surface_as_discord_errors(online: World) -> None:
    fake = online.fake
    fake.inject_error("POST /channels/{channel_id}/messages", status=403, code=ErrorCode.MISSING_PERMISSIONS)
    with pytest.raises(discord.Forbidden) as info:
        await online.channel().send("nope")
    assert info.value.code == 50013 and info.value.text == "Missing Permissions"
    fake.inject_error(None, status=503, message="upstream connect error")
    with pytest.raises(discord.DiscordServerError):
        await online.client.fetch_channel(online.general.id)
    assert (await online.channel().send("fine")).content == "fine"
    assert [c.injected for c in fake.rest_log[-3:]] == ["error", "error", None]


async def test_modal_submit(online: World) -> None:
    fake = online.fake
    h = await fake.slash_command("feedback", user=online.alice, channel=online.general)
    await h.wait_for_callback()
    assert h.callback_type == CallbackType.MODAL and h.modal is not None and h.modal["title"] == "Feedback"
    submitted = await h.submit_modal({"feedback:text": "great bot"})
    reply = await submitted.wait_for_response()
    assert reply.content == "got great bot" and reply.ephemeral
    assert reply not in fake.read_channel(online.general)
    assert reply in fake.read_channel(online.general, user=online.alice)


async def test_message_context_menu(online: World) -> None:
    fake = online.fake
    target = await fake.send_message(online.general, online.alice, "hello there")
    h = await fake.message_context_menu("Describe", target, user=online.alice)
    assert h.record.payload["data"]["target_id"] == str(target.id)
    reply = await h.wait_for_response()
    assert reply.content == f"target {target.id}: hello there"  # resolved.messages carries content


async def test_mention_reply_thread_and_message_content_rule(online: World) -> None:
    fake, bot = online.fake, online.client
    await fake.send_message(online.general, online.alice, "no mention")
    mention = await fake.send_message(online.general, online.alice, f"{fake.bot.mention} hi", mentions=[fake.bot])
    thread = await fake.wait_for(lambda: next(iter(fake.threads(online.general)), None))
    assert [m.content for m in bot.seen] == ["", f"<@{fake.bot.id}> hi"]  # no message_content intent
    reply = next(m for m in fake.bot_messages(online.general))
    assert reply.content == f"you said: <@{fake.bot.id}> hi"
    assert reply.message_reference is not None and reply.message_reference["message_id"] == str(mention.id)
    assert thread.id == mention.id and thread.name == "discussion" and fake.dispatches("THREAD_CREATE")
    await fake.wait_for(lambda: bot.get_channel(thread.id))
    await bot.get_channel(thread.id).send("in thread")  # type: ignore[union-attr]
    assert [m.content for m in fake.read_channel(thread)] == ["in thread"]


async def test_resume_replays_missed_dispatches(online: World) -> None:
    fake, bot = online.fake, online.client
    session = bot.ws.session_id
    async with fake.gateway_outage():
        missed = await fake.send_message(online.general, online.alice, "while you were away")
    await fake.wait_for(lambda: any(m.id == missed.id for m in bot.seen))
    assert fake.received_ops(6)[0].d["session_id"] == session  # RESUME
    assert fake.received_ops(6)[0].path == "/resume"  # resume_gateway_url from READY
    assert fake.dispatches("RESUMED") and len(fake.received_ops(2)) == 1  # no second IDENTIFY
    assert bot.ws.session_id == session
    h = await fake.slash_command("ping", user=online.alice, channel=online.general)
    assert (await h.wait_for_response()).content == "pong"


async def test_invalid_session_reidentifies_through_adopted_gateway(online: World) -> None:
    fake, bot = online.fake, online.client
    await fake.invalidate_session()
    await fake.wait_for(lambda: len(fake.received_ops(2)) == 2)
    assert fake.received_ops(2)[1].path == "/gateway"  # DEFAULT_GATEWAY, set by adopt_gateway
    await fake.wait_for(lambda: bot.get_guild(online.guild.id) is not None and bot.ws.session_id != "")
    h = await fake.slash_command("ping", user=online.alice, channel=online.general)
    assert (await h.wait_for_response()).content == "pong"


# --- one test per rule -------------------------------------------------------------------------------------


async def test_late_ack_is_unknown_interaction(online: World) -> None:
    online.fake.config.interaction_ack_timeout = 0.2
    h = await online.fake.slash_command("slow", user=online.alice, channel=online.general)
    await online.fake.wait_for(lambda: h.attempts)
    assert (h.attempts[0].status, h.attempts[0].code) == (404, ErrorCode.UNKNOWN_INTERACTION)
    error = await online.fake.wait_for(lambda: online.client.errors and online.client.errors[0])
    assert isinstance(error, discord.NotFound) and error.code == 10062 and h.callback_type is None


async def test_double_ack_is_rejected(online: World) -> None:
    fake = online.fake
    h = await fake.slash_command("ping", user=online.alice, channel=online.general)
    await h.wait_for_callback()
    adapter = discord.webhook.async_.async_context.get()
    params = discord.http.handle_message_parameters(content="again")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(discord.HTTPException) as info:
            await adapter.create_interaction_response(h.id, h.token, session=session, params=params)
    assert (info.value.status, info.value.code) == (400, ErrorCode.ALREADY_ACKNOWLEDGED)
    assert info.value.text == "Interaction has already been acknowledged."
    assert [a.status for a in h.attempts] == [200, 400]


async def test_expired_token_is_invalid_webhook_token(online: World) -> None:
    online.fake.config.interaction_token_ttl = 0.3
    h = await online.fake.slash_command("later", user=online.alice, channel=online.general)
    error = await online.fake.wait_for(lambda: online.client.errors and online.client.errors[0])
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (401, 50027)
    assert error.text == "Invalid Webhook Token" and h.callback_type == 5


async def test_content_over_2000_is_invalid_form_body(online: World) -> None:
    with pytest.raises(discord.HTTPException) as info:
        await online.channel().send("x" * 2001)
    assert (info.value.status, info.value.code) == (400, ErrorCode.INVALID_FORM_BODY)
    assert "In content: Must be 2000 or fewer in length." in info.value.text
    assert online.fake.calls(status=400)[0].response["errors"] == {
        "content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}
    }


async def test_embed_limits(online: World) -> None:
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=online.general.id)
    with pytest.raises(discord.HTTPException) as info:
        await online.client.http.request(route, json={"embeds": [{"title": "t"}] * 11})
    assert info.value.code == 50035 and "In embeds: Must be 10 or fewer in length." in info.value.text
    long_embed = {
        "title": "t" * 257,
        "description": "d" * 4096,
        "fields": [{"name": "n", "value": "v" * 1025}],
        "footer": {"text": "f" * 1000},  # 6379 characters in total
    }
    with pytest.raises(discord.HTTPException) as info:
        await online.client.http.request(route, json={"embeds": [long_embed]})
    errors = online.fake.calls(status=400)[-1].response["errors"]["embeds"]
    assert errors["0"]["title"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    assert errors["0"]["fields"]["0"]["value"]["_errors"][0]["message"] == "Must be 1024 or fewer in length."
    assert errors["_errors"][0]["code"] == "MAX_EMBED_SIZE_EXCEEDED"


async def test_more_than_10_files_is_invalid_form_body(online: World) -> None:
    files = [discord.File(io.BytesIO(b"x"), filename=f"{i}.txt") for i in range(11)]
    with pytest.raises(discord.HTTPException) as info:
        await online.channel().send(files=files)
    assert info.value.code == 50035 and "Must be 10 or fewer in length." in info.value.text


async def test_components_limits(online: World) -> None:
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=online.general.id)
    button = {"type": 2, "style": 1, "label": "b", "custom_id": "x" * 101}
    with pytest.raises(discord.HTTPException) as info:
        await online.client.http.request(route, json={"components": [{"type": 1, "components": [button]}] * 6})
    errors = online.fake.calls(status=400)[-1].response["errors"]["components"]
    assert info.value.code == 50035 and errors["_errors"][0]["message"] == "Must be 5 or fewer in length."
    assert errors["0"]["components"]["0"]["custom_id"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"


async def test_oversize_upload_is_request_entity_too_large(online: World) -> None:
    online.guild.upload_limit_override = 1000
    with pytest.raises(discord.HTTPException) as info:
        await online.channel().send(file=discord.File(io.BytesIO(b"x" * 1001), filename="big.bin"))
    assert (info.value.status, info.value.code) == (413, ErrorCode.ENTITY_TOO_LARGE)
    online.guild.upload_limit_override = None
    online.guild.premium_tier = 2
    assert online.guild.upload_limit == 50 * 1024 * 1024


async def test_missing_permission_is_forbidden(online: World) -> None:
    fake = online.fake
    await fake.set_overwrite(online.general, fake.bot_role(online.guild), deny=Perm.SEND_MESSAGES)
    with pytest.raises(discord.Forbidden) as info:
        await online.channel().send("hi")
    assert (info.value.status, info.value.code) == (403, ErrorCode.MISSING_PERMISSIONS)
    await fake.set_overwrite(online.general, fake.bot_role(online.guild), deny=Perm.ATTACH_FILES)
    await online.channel().send("text is fine")
    with pytest.raises(discord.Forbidden):
        await online.channel().send(file=discord.File(io.BytesIO(b"x"), filename="a.txt"))
    assert fake.permissions(online.general, fake.bot) & Perm.SEND_MESSAGES


async def test_route_429_is_retried_by_discord_py(online: World) -> None:
    fake = online.fake
    fake.inject_rate_limit("POST /channels/{channel_id}/messages", times=2, retry_after=0.05)
    msg = await online.channel().send("eventually")
    statuses = [c.status for c in fake.calls("POST /channels/{channel_id}/messages")]
    assert statuses == [429, 429, 200] and msg.content == "eventually"
    limited = fake.calls(status=429)[0]
    assert limited.response == {"message": "You are being rate limited.", "retry_after": 0.05, "global": False}


async def test_global_429_is_retried_by_discord_py(online: World) -> None:
    fake = online.fake
    fake.inject_rate_limit(global_=True, times=1, retry_after=0.05)
    channel = await online.client.fetch_channel(online.general.id)
    assert channel.id == online.general.id
    assert [c.injected for c in fake.calls("GET /channels/{channel_id}")] == ["429-global", None]
    assert fake.calls(status=429)[0].response["global"] is True


async def test_unknown_route_is_404_and_recorded(online: World) -> None:
    with pytest.raises(discord.NotFound) as info:
        await online.client.http.request(Route("GET", "/definitely/not/a/route"))
    assert info.value.code == 0 and info.value.text == "404: Not Found"
    assert [(c.method, c.path) for c in online.fake.unknown_routes] == [("GET", "/definitely/not/a/route")]


async def test_unknown_channel_message_and_bad_token(world: World) -> None:
    bot = await start_bot(world)
    with pytest.raises(discord.NotFound) as info:
        await bot.fetch_channel(1234)
    assert info.value.code == ErrorCode.UNKNOWN_CHANNEL
    with pytest.raises(discord.NotFound) as info:
        await world.channel().fetch_message(1234)
    assert info.value.code == ErrorCode.UNKNOWN_MESSAGE
    intruder = discord.Client(intents=discord.Intents.default())
    with pytest.raises(discord.LoginFailure):
        await intruder.login("wrong-token")
    await intruder.close()
    assert world.fake.calls(status=401)[0].response == {"message": "401: Unauthorized", "code": 0}


# --- harness features --------------------------------------------------------------------------------------


async def test_rate_limit_headers_and_hostile_files(world: World) -> None:
    fake = world.fake
    spec = FileSpec("evil.png", b"not a png", content_type="image/png", declared_size=10, status=200)
    hosted = fake.host_file(world.general, spec)
    redirect = fake.host_file(world.general, FileSpec("r.png", b"", redirect_to="http://169.254.169.254/latest"))
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bot {fake.token}"}
        async with session.get(f"{fake.api_base}/users/@me", headers=headers) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
            for name in ("Limit", "Remaining", "Reset", "Reset-After", "Bucket"):
                assert f"X-RateLimit-{name}" in resp.headers
        async with session.get(hosted.url) as resp:
            assert await resp.read() == b"not a png" and resp.headers["Content-Type"] == "image/png"
        async with session.get(redirect.url, allow_redirects=False) as resp:
            assert resp.status == 302 and resp.headers["Location"] == "http://169.254.169.254/latest"
    assert hosted.size == 10


async def test_interaction_timings_are_recorded(online: World) -> None:
    h = await online.fake.slash_command("ping", user=online.alice, channel=online.general)
    await h.wait_for_callback()
    assert h.dispatched_at is not None and h.callback_at is not None and 0 < h.ack_latency < 1  # type: ignore[operator]
    assert h.record.attempts[0].type == CallbackType.CHANNEL_MESSAGE_WITH_SOURCE
    assert not h.original.flags & MessageFlag.EPHEMERAL  # type: ignore[union-attr]
