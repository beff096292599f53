"""Discord's rate limits in the fake (`discord_limits=True`): each bucket, the 429 it answers with, the global
limit and what it leaves out, and a real discord.py client living with them.

Raw-HTTP tests stretch the windows (never the counts) so a slow machine cannot roll a window over in the
middle of a count; the discord.py tests run on Discord's real windows or on short ones, as each says.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest

from tests.fakediscord import FakeChannel, FakeConfig, FakeDiscord
from tests.fakediscord.ratelimits import bucket_hash
from tests.fakediscord_tests.conftest import FakeBot, World, start_bot

SEND = "POST /channels/{channel_id}/messages"
EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"


class Raw:
    """Plain HTTP against the fake, as any Discord client would send it."""

    def __init__(self, fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
        self.fake, self.session = fake, session
        self.bot = {"Authorization": f"Bot {fake.token}"}

    async def __call__(
        self, method: str, path: str, body: Any = None, *, bot: bool = True
    ) -> tuple[int, Any, dict[str, str]]:
        headers = self.bot if bot else {}
        async with self.session.request(method, self.fake.api_base + path, json=body, headers=headers) as resp:
            data = await resp.json() if resp.status != 204 else None
            return resp.status, data, dict(resp.headers)


@pytest.fixture
async def limited() -> AsyncIterator[tuple[World, Raw]]:
    """A world under Discord's limits with 60 s windows: counts are Discord's, nothing rolls over mid-test."""
    async with FakeDiscord(discord_limits=True, message_window=60, webhook_window=60) as fake:
        fake.config.global_rate_limit_window = 60
        guild = await fake.add_guild("Limits")
        general = await fake.add_channel(guild, "general")
        alice = fake.add_user("alice")
        await fake.add_member(guild, alice)
        async with aiohttp.ClientSession() as session:
            yield World(fake, guild, general, alice), Raw(fake, session)


async def sync_ping(raw: Raw) -> None:
    status, _, _ = await raw(
        "PUT", f"/applications/{raw.fake.application_id}/commands", [{"name": "ping", "description": "Pong"}]
    )
    assert status == 200


def assert_route_429(status: int, body: Any, headers: dict[str, str], *, bucket: str, window: float) -> float:
    """A per-route 429 as Discord answers it; returns its retry_after."""
    assert status == 429
    retry_after = body["retry_after"]
    assert body == {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
    assert 0 < retry_after <= window
    assert headers["X-RateLimit-Scope"] == "user" and "X-RateLimit-Global" not in headers
    assert headers["X-RateLimit-Bucket"] == bucket and headers["X-RateLimit-Remaining"] == "0"
    assert float(headers["X-RateLimit-Reset-After"]) == retry_after
    assert headers["Retry-After"] == str(math.ceil(retry_after))
    return float(retry_after)


def test_default_figures_are_discords() -> None:
    cfg = FakeConfig()
    assert (cfg.message_limit, cfg.message_window) == (5, 5.0)
    assert (cfg.message_delete_limit, cfg.message_delete_window) == (5, 1.0)
    assert (cfg.webhook_limit, cfg.webhook_window) == (5, 2.0)
    assert (cfg.global_rate_limit, cfg.global_rate_limit_window) == (50, 1.0)


async def test_generic_mode_keeps_one_50_per_second_bucket_per_route() -> None:
    async with FakeDiscord(discord_limits=False) as fake, aiohttp.ClientSession() as session:
        general = await fake.add_channel(await fake.add_guild(), "general")
        raw = Raw(fake, session)
        answers = [await raw("POST", f"/channels/{general.id}/messages", {"content": str(i)}) for i in range(7)]
        answers += [await raw("GET", "/users/@me") for _ in range(50)]  # 57 bot requests: no global limit
    assert [status for status, _, _ in answers] == [200] * 57
    headers = answers[6][2]
    assert headers["X-RateLimit-Limit"] == "50" and headers["X-RateLimit-Remaining"] == "43"
    assert headers["X-RateLimit-Bucket"] == bucket_hash(SEND)
    assert fake.rate_limited() == []


async def test_sends_and_edits_have_a_5_per_5s_bucket_per_channel_and_threads_their_own(
    limited: tuple[World, Raw],
) -> None:
    w, raw = limited
    fake, general = w.fake, w.general
    other = await fake.add_channel(w.guild, "other")
    status, thread, headers = await raw("POST", f"/channels/{general.id}/threads", {"name": "t", "type": 11})
    # thread creation: no documented figure, the generic per-route limit, bucketed per parent channel
    assert status == 201 and headers["X-RateLimit-Limit"] == "50"

    sends = [await raw("POST", f"/channels/{general.id}/messages", {"content": f"m{i}"}) for i in range(6)]
    assert [s for s, _, _ in sends[:5]] == [200] * 5
    assert [h["X-RateLimit-Remaining"] for _, _, h in sends[:5]] == ["4", "3", "2", "1", "0"]
    assert {h["X-RateLimit-Limit"] for _, _, h in sends[:5]} == {"5"}
    send_bucket = sends[0][2]["X-RateLimit-Bucket"]
    assert_route_429(*sends[5], bucket=send_bucket, window=60)
    posted = [m.content for m in fake.bot_messages(general) if m.type == 0]  # not the thread-created notice
    assert posted == [f"m{i}" for i in range(5)]  # the 6th was refused

    # the same bucket shape (same hash) in another channel, and in the thread, counts on its own
    for channel_id in (other.id, int(thread["id"])):
        status, _, headers = await raw("POST", f"/channels/{channel_id}/messages", {"content": "fine"})
        assert status == 200 and headers["X-RateLimit-Remaining"] == "4"
        assert headers["X-RateLimit-Bucket"] == send_bucket

    # edits: one bucket for all the channel's messages, apart from sends (still exhausted above)
    ids = [body["id"] for _, body, _ in sends[:5]]
    edits = [await raw("PATCH", f"/channels/{general.id}/messages/{ids[i % 5]}", {"content": "e"}) for i in range(6)]
    assert [s for s, _, _ in edits[:5]] == [200] * 5
    assert [h["X-RateLimit-Remaining"] for _, _, h in edits[:5]] == ["4", "3", "2", "1", "0"]
    edit_bucket = edits[0][2]["X-RateLimit-Bucket"]
    assert edit_bucket != send_bucket
    assert_route_429(*edits[5], bucket=edit_bucket, window=60)

    # deletes: 5 per 1 s per channel, a third bucket
    status, _, headers = await raw("DELETE", f"/channels/{general.id}/messages/{ids[0]}")
    assert status == 204 and headers["X-RateLimit-Limit"] == "5" and headers["X-RateLimit-Remaining"] == "4"
    assert float(headers["X-RateLimit-Reset-After"]) <= 1.0
    assert headers["X-RateLimit-Bucket"] not in (send_bucket, edit_bucket)

    limited_calls = fake.rate_limited()
    assert [(c.route, c.ratelimit_scope, c.bucket, c.major) for c in limited_calls] == [
        (SEND, "user", send_bucket, str(general.id)),
        (EDIT, "user", edit_bucket, str(general.id)),
    ]
    assert fake.call_counts(auth="bot")[SEND] == 8 and fake.call_counts(status=429) == {SEND: 1, EDIT: 1}


async def test_global_limit_is_50_bot_requests_and_leaves_out_interaction_and_webhook_routes(
    limited: tuple[World, Raw],
) -> None:
    w, raw = limited
    fake = w.fake
    await sync_ping(raw)
    paths = ["/users/@me", f"/channels/{w.general.id}"]  # two routes: neither route bucket (50 each) fills up
    answers = []
    for i in range(60):
        answers.append(await raw("GET", paths[i % 2]))
        if answers[-1][0] == 429:
            break
    status, body, headers = answers[-1]
    assert len(answers) == 50  # the PUT above was the first of the 50
    assert status == 429 and body == {"message": "You are being rate limited.", "retry_after": body["retry_after"],
                                      "global": True}  # fmt: skip
    assert 0 < body["retry_after"] <= 60
    assert headers["X-RateLimit-Global"] == "true" and headers["X-RateLimit-Scope"] == "global"
    assert headers["Retry-After"] == str(math.ceil(body["retry_after"]))
    assert "X-RateLimit-Limit" not in headers  # a global refusal is no route's bucket

    # while the bot token is globally limited, the interaction routes (no bot token) still work
    h = await fake.slash_command("ping", user=w.alice, channel=w.general)
    status, _, headers = await raw("POST", f"/interactions/{h.id}/{h.token}/callback", {"type": 5}, bot=False)
    assert status == 204 and headers["X-RateLimit-Limit"] == "50"  # per interaction, generic
    hook = f"/webhooks/{fake.application_id}/{h.token}"
    assert (await raw("PATCH", hook + "/messages/@original", {"content": "edited"}, bot=False))[0] == 200
    assert (await raw("POST", hook + "?wait=true", {"content": "followup"}, bot=False))[0] == 200
    assert (await raw("GET", "/users/@me"))[0] == 429  # and the bot token is still limited

    assert [c.auth for c in fake.rate_limited(scope="global")] == ["bot", "bot"]
    assert fake.call_counts("auth") == {"bot": 52, "interaction": 1, "webhook": 2}
    assert fake.call_counts("auth", status=200) == {"bot": 50, "webhook": 2}  # the PUT and 49 GETs; callback: 204
    assert fake.rate_limited(scope="user") == []


async def test_webhook_token_routes_share_a_5_per_2s_bucket_per_webhook_token(limited: tuple[World, Raw]) -> None:
    w, raw = limited
    fake = w.fake
    await sync_ping(raw)
    first = await fake.slash_command("ping", user=w.alice, channel=w.general)
    second = await fake.slash_command("ping", user=w.alice, channel=w.general)
    for h in (first, second):
        assert (await raw("POST", f"/interactions/{h.id}/{h.token}/callback", {"type": 5}, bot=False))[0] == 204
    hook = f"/webhooks/{fake.application_id}/{first.token}"
    answers = []
    for i in range(6):  # followups and edits of @original draw on the same bucket
        if i % 2:
            answers.append(await raw("PATCH", hook + "/messages/@original", {"content": f"e{i}"}, bot=False))
        else:
            answers.append(await raw("POST", hook + "?wait=true", {"content": f"f{i}"}, bot=False))
    assert [s for s, _, _ in answers[:5]] == [200] * 5
    assert [h["X-RateLimit-Remaining"] for _, _, h in answers[:5]] == ["4", "3", "2", "1", "0"]
    assert {h["X-RateLimit-Limit"] for _, _, h in answers[:5]} == {"5"}
    bucket = answers[0][2]["X-RateLimit-Bucket"]
    assert {h["X-RateLimit-Bucket"] for _, _, h in answers[:5]} == {bucket}
    assert_route_429(*answers[5], bucket=bucket, window=60)
    assert fake.config.webhook_window == 60

    other = f"/webhooks/{fake.application_id}/{second.token}"
    status, _, headers = await raw("POST", other + "?wait=true", {"content": "own bucket"}, bot=False)
    assert status == 200 and headers["X-RateLimit-Remaining"] == "4" and headers["X-RateLimit-Bucket"] == bucket
    assert [(c.auth, c.major) for c in fake.rate_limited()] == [("webhook", f"{fake.application_id}+{first.token}")]


# --- a real discord.py client under the limits ---------------------------------------------------------------


@pytest.fixture
async def strict(world: World) -> World:
    """The conftest world with Discord's limits switched on (real windows unless a test shrinks them)."""
    world.fake.config.discord_limits = True
    await start_bot(world)
    return world


async def thread_of(w: World) -> discord.Thread:
    return await w.channel().create_thread(name="side", type=discord.ChannelType.public_thread)


def sends_to(fake: FakeDiscord, channel: FakeChannel | discord.abc.Snowflake) -> list[Any]:
    return [c for c in fake.calls(SEND) if c.path == f"/channels/{channel.id}/messages"]


async def test_discord_py_sends_7_to_a_channel_and_7_to_its_thread_in_one_real_window(strict: World) -> None:
    fake = strict.fake
    assert (fake.config.message_limit, fake.config.message_window) == (5, 5.0)
    channel, thread = strict.channel(), await thread_of(strict)
    started = time.perf_counter()
    sent = await asyncio.gather(*(channel.send(f"c{i}") for i in range(7)), *(thread.send(f"t{i}") for i in range(7)))
    elapsed = time.perf_counter() - started
    assert sorted(m.content for m in sent) == sorted([f"c{i}" for i in range(7)] + [f"t{i}" for i in range(7)])
    posted = [m.content for m in fake.bot_messages(strict.general) if m.type == 0]
    assert sorted(posted) == [f"c{i}" for i in range(7)]
    assert fake.rate_limited() == []  # discord.py waited on the headers instead of running into 429s
    # 5 go at once, the last 2 wait for the window (5 s); a thread sharing the channel's bucket would need 10 s
    assert 4.5 < elapsed < 9.0
    for target in (strict.general, thread):
        calls = sends_to(fake, target)
        assert len(calls) == 7 and calls[5].started - calls[0].started >= 4.9


async def test_discord_py_sends_12_messages_then_6_edits_with_short_windows(strict: World) -> None:
    fake = strict.fake
    fake.config.message_window = 0.5
    channel = strict.channel()
    started = time.perf_counter()
    sent = await asyncio.gather(*(channel.send(f"m{i}") for i in range(12)))
    assert time.perf_counter() - started >= 0.95  # 5 + 5 + 2: two window waits
    assert sorted(m.content for m in fake.bot_messages(strict.general)) == sorted(f"m{i}" for i in range(12))
    await asyncio.gather(*(m.edit(content=f"edited {m.content}") for m in sent[:6]))
    edits = fake.calls(EDIT)
    assert [c.status for c in edits] == [200] * 6 and edits[5].started - edits[0].started >= 0.45
    assert fake.rate_limited() == []


async def test_discord_py_obeys_a_route_429_retry_after(strict: World) -> None:
    fake = strict.fake
    fake.config.message_window = 0.5
    async with aiohttp.ClientSession() as session:
        raw = Raw(fake, session)
        for i in range(5):  # someone else (another process with the token) empties the channel's bucket
            assert (await raw("POST", f"/channels/{strict.general.id}/messages", {"content": f"x{i}"}))[0] == 200
    msg = await strict.channel().send("after the 429")
    assert msg.content == "after the 429"
    [limited] = fake.rate_limited()
    assert (limited.route, limited.ratelimit_scope, limited.auth) == (SEND, "user", "bot")
    retried = sends_to(fake, strict.general)[-1]
    assert retried.status == 200 and retried.started - limited.finished >= limited.retry_after - 0.01  # type: ignore[operator]


async def test_discord_py_rides_out_the_global_limit_and_interactions_go_past_it(strict: World) -> None:
    fake = strict.fake
    bot = strict.client
    fake.reset_rate_limits()  # a fresh global window, whatever the bot did while starting
    users = [bot.fetch_user(strict.alice.id) for _ in range(30)]
    fetches = asyncio.gather(*users, *(bot.fetch_channel(strict.general.id) for _ in range(30)))
    await fake.wait_for(lambda: fake.rate_limited(scope="global"))
    h = await fake.slash_command("ping", user=strict.alice, channel=strict.general)
    await h.wait_for_callback()
    assert [a.status for a in h.attempts] == [200]  # the callback is not held back by the global limit
    results = await fetches
    assert {getattr(r, "id", None) for r in results} == {strict.alice.id, strict.general.id}
    globals_ = fake.rate_limited(scope="global")
    assert 1 <= len(globals_) <= 10 and {c.auth for c in globals_} == {"bot"}
    assert all(c.response["global"] is True and 0 < c.retry_after <= 1.0 for c in globals_)  # type: ignore[operator]
    assert fake.rate_limited(scope="user") == []


class BurstBot(FakeBot):
    def _register(self) -> None:
        super()._register()

        @self.tree.command(description="Defer, then 7 followups at once")
        async def burst(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await asyncio.gather(*(interaction.followup.send(f"part {i}") for i in range(7)))


async def test_discord_py_followups_wait_for_the_real_webhook_window(world: World) -> None:
    fake = world.fake
    fake.config.discord_limits = True
    await start_bot(world, bot_class=BurstBot)
    assert (fake.config.webhook_limit, fake.config.webhook_window) == (5, 2.0)
    h = await fake.slash_command("burst", user=world.alice, channel=world.general)
    await h.wait_for_followups(7, timeout=10)
    assert sorted(m.content for m in h.messages) == [f"part {i}" for i in range(7)]
    hooks = fake.calls("POST /webhooks/{webhook_id}/{webhook_token}")
    assert [c.status for c in hooks] == [200] * 7 and {c.auth for c in hooks} == {"webhook"}
    assert hooks[5].started - hooks[0].started >= 1.95  # the sixth waited for the 2 s window to reset
    assert fake.rate_limited() == [] and world.client.errors == []
