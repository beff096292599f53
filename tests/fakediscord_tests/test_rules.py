"""Discord's rules in the fake: each limit answers with Discord's own error body, and discord.py copes."""

from __future__ import annotations

import io

import aiohttp
import discord
import discord.gateway
import discord.http
import pytest
from discord.http import Route

from tests.fakediscord import (
    CallbackType,
    ErrorCode,
    FileSpec,
    MessageFlag,
    Perm,
)
from tests.fakediscord_tests.conftest import World, start_bot

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
