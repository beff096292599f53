"""A busy channel under Discord's real limits (5 messages and 5 edits per 5 s per channel, 50 bot-token
requests per second): every member sees their card at once and their pictures within seconds, the parent
channel holds one message per job (its card), and every outcome reaches the member."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from bot.jobs import JobState
from cogs.delivery import DiscordSink
from tests.botrunner import bot_settings, running_bot, wait_for_card
from tests.fakediscord import FakeChannel, FakeDiscord, FakeMessage, FakeUser

THREAD_FROM_MESSAGE = "POST /channels/{channel_id}/messages/{message_id}/threads"
POST_MESSAGE = "POST /channels/{channel_id}/messages"
EDIT_MESSAGE = "PATCH /channels/{channel_id}/messages/{message_id}"
EDIT_WITH_TOKEN = "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"
HISTORY = "GET /channels/{channel_id}/messages"


class Crowd:
    """One guild, one busy channel, many members."""

    async def build(self, fake: FakeDiscord, members: int) -> Crowd:
        self.fake = fake
        self.guild = await fake.add_guild("Busy")
        self.channel = await fake.add_channel(self.guild, "art")
        self.users: list[FakeUser] = [fake.add_user(f"member{i}") for i in range(members)]
        for user in self.users:
            await fake.add_member(self.guild, user)
        return self

    def results(self) -> list[FakeMessage]:
        return [m for t in self.fake.threads(self.channel) for m in self.fake.bot_messages(t) if m.attachments]


def bot_token_requests(fake: FakeDiscord, since: int, *, answered: bool = False) -> Counter[str]:
    """Bot-token requests since ``since`` by route (``answered``: only those Discord carried out)."""
    counts: Counter[str] = Counter()
    for call in fake.state.rest_log[since:]:
        if call.auth == "bot" and (not answered or call.status < 400):
            counts[call.route or f"{call.method} {call.path}"] += 1
    return counts


def described(card: FakeMessage) -> str:
    return str(card.embeds[0].get("description", "")) if card.embeds else ""


async def test_forty_members_at_once_in_one_channel_all_get_their_pictures(tmp_path: Path) -> None:
    members = 40
    async with FakeDiscord() as fake:  # Discord's real limits, by default
        crowd = await Crowd().build(fake, members)
        settings = bot_settings(fake, crowd.guild, tmp_path, discord={"status_edit_seconds": 5.0})
        async with running_bot(fake, settings) as bot:
            since = len(fake.state.rest_log)
            started = time.monotonic()
            handles = await asyncio.gather(
                *(
                    fake.slash_command("imagine", user=user, channel=crowd.channel, options={"prompt": f"koala {i}"})
                    for i, user in enumerate(crowd.users)
                )
            )
            cards = await asyncio.gather(*(wait_for_card(h) for h in handles))
            await fake.wait_for(lambda: len(crowd.results()) >= members or None, timeout=45)
            await fake.wait_for(lambda: all("Done" in described(c) for c in cards) or None, timeout=15)
            elapsed = time.monotonic() - started
            print(f"\n{members} jobs in one channel: all results visible after {elapsed:.1f} s")

            assert all(h.ack_latency is not None and h.ack_latency < 3.0 for h in handles)
            assert all(c.components == [] for c in cards)  # no live Cancel on a finished card
            # the parent channel holds the cards and nothing else; each job's results are in its own thread
            assert {m.id for m in fake.bot_messages(crowd.channel)} == {c.id for c in cards}
            assert {t.id for t in fake.threads(crowd.channel)} == {c.id for c in cards}
            assert len({m.embeds[0]["footer"]["text"] for m in crowd.results()}) == members

            done = bot_token_requests(fake, since, answered=True)
            assert done[THREAD_FROM_MESSAGE] == members
            assert done[POST_MESSAGE] == members  # the result posts, each in its own thread
            assert done[EDIT_MESSAGE] == 0  # every card edit went through its interaction token
            sent = bot_token_requests(fake, since)  # with any 429s that were waited out and sent again
            assert sum(sent.values()) <= 3 * members, sent
            jobs = await bot.engine.jobs.recent_for(crowd.users[0].id, crowd.guild.id)
            assert jobs[0].state == JobState.DONE


async def test_a_provider_refusal_in_a_busy_channel_reaches_every_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakeproviders.common import Fault
    from tests.fakeproviders.novita import FakeNovitaServer

    members = 12
    monkeypatch.setenv("BUSY_NOVITA_KEY", FakeNovitaServer.api_key)
    async with FakeDiscord() as fake, FakeNovitaServer() as novita:
        crowd = await Crowd().build(fake, members)
        refusal = Fault(400, {"code": 400, "reason": "ILLEGAL_PROMPT", "message": "no", "metadata": {}})
        novita.inject("create", refusal, times=members)
        provider = {"kind": "novita", "base_url": novita.base_url, "api_key_env": "BUSY_NOVITA_KEY"}
        settings = bot_settings(
            fake,
            crowd.guild,
            tmp_path,
            generation={"default_provider": "novita", "default_resolution": "2K"},
            providers={"novita": provider},
            discord={"status_edit_seconds": 5.0},
        )
        async with running_bot(fake, settings):
            handles = await asyncio.gather(
                *(
                    fake.slash_command("imagine", user=user, channel=crowd.channel, options={"prompt": "a koala"})
                    for user in crowd.users
                )
            )
            cards = await asyncio.gather(*(wait_for_card(h) for h in handles))
            await fake.wait_for(lambda: all("did not complete" in described(c) for c in cards) or None, timeout=20)
            assert all(c.components == [] for c in cards)  # no live Cancel button on any card
            notices = await asyncio.gather(
                *(h.wait_for_response(lambda m: bool(m.flags & 64) and bool(m.content)) for h in handles)
            )
            assert all("refused" in n.content.lower() or "blocked" in n.content.lower() for n in notices)
            assert fake.threads(crowd.channel) == []  # a failed job opens no thread


async def test_after_fifteen_minutes_the_card_is_edited_with_the_bot_token(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        crowd = await Crowd().build(fake, 1)
        slow = bot_settings(fake, crowd.guild, tmp_path, providers={"local": {"kind": "local", "delay_seconds": 0.5}})
        async with running_bot(fake, slow) as bot:
            handle = await fake.slash_command(
                "imagine", user=crowd.users[0], channel=crowd.channel, options={"prompt": "x"}
            )
            card = await wait_for_card(handle)
            shift = 16 * 60.0
            bot.sink.wall_clock = lambda: time.time() + shift  # the token is past its 15 minutes for the bot
            since = len(fake.state.rest_log)
            await fake.wait_for(lambda: "Done" in described(card) or None, timeout=10)
            edits = Counter(c.route for c in fake.state.rest_log[since:] if c.route in (EDIT_MESSAGE, EDIT_WITH_TOKEN))
            assert edits[EDIT_WITH_TOKEN] == 0 and edits[EDIT_MESSAGE] >= 1
            final = [c for c in fake.calls(EDIT_MESSAGE) if c.path.endswith(f"/messages/{card.id}")]
            assert final and final[-1].auth == "bot"


async def test_a_token_refused_by_discord_falls_back_to_the_bot_token(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        crowd = await Crowd().build(fake, 1)
        slow = bot_settings(fake, crowd.guild, tmp_path, providers={"local": {"kind": "local", "delay_seconds": 0.5}})
        async with running_bot(fake, slow):
            handle = await fake.slash_command(
                "imagine", user=crowd.users[0], channel=crowd.channel, options={"prompt": "x"}
            )
            card = await wait_for_card(handle)
            fake.config.interaction_token_ttl = 0.0  # Discord stops accepting it earlier than we expected
            await fake.wait_for(lambda: "Done" in described(card) or None, timeout=10)
            assert any(c.path.endswith(f"/messages/{card.id}") and c.status == 200 for c in fake.calls(EDIT_MESSAGE))


async def test_waiting_cards_show_their_place_moving_up(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        crowd = await Crowd().build(fake, 4)
        settings = bot_settings(
            fake,
            crowd.guild,
            tmp_path,
            providers={"local": {"kind": "local", "delay_seconds": 0.4}},
            generation={"workers": 1},
            discord={"status_edit_seconds": 0.2},
        )
        async with running_bot(fake, settings):
            cards = []
            for user in crowd.users:  # one after the other, so their places are 1..4
                handle = await fake.slash_command("imagine", user=user, channel=crowd.channel, options={"prompt": "x"})
                cards.append(await wait_for_card(handle))
            last = cards[-1]
            assert "position 3" in described(last) or "position 4" in described(last)
            await fake.wait_for(lambda: "position 1" in described(last) or None, timeout=10)
            await fake.wait_for(lambda: all("Done" in described(c) for c in cards) or None, timeout=15)
            per_card = Counter(c.path.rsplit("/", 1)[-1] for c in fake.calls(EDIT_WITH_TOKEN))
            assert per_card[str(last.id)] <= 12  # refreshed as the queue moved, not once per event


# -- restarts at each delivery step --------------------------------------------------------------------
STEPS = ("card answered", "thread opened", "first part posted", "last part posted")


async def _stop_after(step: str, monkeypatch: pytest.MonkeyPatch, reached: asyncio.Event) -> None:
    """Hold the job just after ``step`` (as if the process died there), and say when it got there."""
    from bot.jobs.engine import JobEngine

    async def hold() -> None:
        reached.set()
        await asyncio.Event().wait()  # until the bot is killed

    if step == "card answered":
        original_card = DiscordSink.show_card

        async def show_card(self: DiscordSink, job, position):  # type: ignore[no-untyped-def]
            await original_card(self, job, position)
            reached.set()

        monkeypatch.setattr(DiscordSink, "show_card", show_card)
    elif step == "thread opened":
        original_thread = DiscordSink._open_thread

        async def open_thread(self: DiscordSink, job):  # type: ignore[no-untyped-def]
            await original_thread(self, job)
            await hold()

        monkeypatch.setattr(DiscordSink, "_open_thread", open_thread)
    else:
        original_record = JobEngine._record_message

        async def record(self: JobEngine, job, message_id, delivery=None):  # type: ignore[no-untyped-def]
            await original_record(self, job, message_id, delivery)
            posted = job.delivery.posted_images
            if step == "first part posted" or posted == len(job.results):
                assert step == "last part posted" or posted < len(job.results), "the job must post several parts"
                await hold()

        monkeypatch.setattr(JobEngine, "_record_message", record)


@pytest.mark.parametrize("step", STEPS)
async def test_a_stop_after_each_delivery_step_ends_with_every_part_posted_once(
    step: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.botrunner import kill

    limit = 300_000  # four 4K images do not fit one message here: the job posts several parts
    async with FakeDiscord() as fake:
        guild = await fake.add_guild("Restarts", upload_limit=limit)
        channel: FakeChannel = await fake.add_channel(guild, "art")
        alice = fake.add_user("alice")
        await fake.add_member(guild, alice)
        provider = {"local": {"kind": "local", "delay_seconds": 0.3 if step == "card answered" else 0.0}}
        settings = bot_settings(fake, guild, tmp_path, providers=provider)
        reached = asyncio.Event()
        with monkeypatch.context() as patch:
            await _stop_after(step, patch, reached)
            async with running_bot(fake, settings) as bot:
                options = {"prompt": "a koala", "count": 4, "resolution": "4K"}
                handle = await fake.slash_command("imagine", user=alice, channel=channel, options=options)
                card = await wait_for_card(handle)
                await asyncio.wait_for(reached.wait(), timeout=15)
                await kill(bot)
        history_reads = len([c for c in fake.calls(HISTORY) if c.path == f"/channels/{channel.id}/messages"])
        async with running_bot(fake, bot_settings(fake, guild, tmp_path)) as bot:
            await fake.wait_for(lambda: "Done" in described(card) or None, timeout=20)
            async with asyncio.timeout(5):  # the card says "done" just before the job's row does
                while (await bot.engine.jobs.recent_for(alice.id, guild.id))[0].state != JobState.DONE:
                    await asyncio.sleep(0.02)
        (thread,) = fake.threads(channel)
        assert thread.id == card.id
        posted = [m for m in fake.bot_messages(thread) if m.attachments]
        shown = sorted(
            index
            for m in posted
            for first, last in [m.embeds[0]["footer"]["text"].split("images ")[1].split(" of ")[0].split("–")]
            for index in range(int(first), int(last) + 1)
        )
        assert len(posted) >= 2 and shown == [1, 2, 3, 4]  # every image once, none twice
        assert card.components == []
        assert [m.id for m in fake.bot_messages(channel)] == [card.id]
        # the card was found again by its stored id: nobody read the channel's history for it
        assert len([c for c in fake.calls(HISTORY) if c.path == f"/channels/{channel.id}/messages"]) == history_reads


async def pending_rows(tmp_path: Path) -> int:
    import aiosqlite

    async with (
        aiosqlite.connect(tmp_path / "bot.sqlite3") as conn,
        conn.execute("SELECT COUNT(*) FROM pending_answers") as cursor,
    ):
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def test_a_stop_between_the_acknowledgement_and_the_queue_still_answers_the_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.generation import GenerationService
    from tests.botrunner import kill

    async with FakeDiscord() as fake:
        crowd = await Crowd().build(fake, 2)
        settings = bot_settings(fake, crowd.guild, tmp_path, quota={"default_limit": 1})
        reached = asyncio.Event()

        async def stuck(self: GenerationService, order):  # type: ignore[no-untyped-def]
            reached.set()
            await asyncio.Event().wait()  # the process "dies" here, before the job is written

        with monkeypatch.context() as patch:
            patch.setattr(GenerationService, "submit", stuck)
            async with running_bot(fake, settings) as bot:
                handle = await fake.slash_command(
                    "imagine", user=crowd.users[0], channel=crowd.channel, options={"prompt": "x"}
                )
                await asyncio.wait_for(reached.wait(), timeout=10)
                await kill(bot)
        assert await pending_rows(tmp_path) == 1
        async with running_bot(fake, settings) as bot:
            notice = await handle.wait_for_response(lambda m: bool(m.flags & 64) and "restarted" in m.content)
            assert "nothing was charged" in notice.content
            assert await bot.engine.jobs.recent_for(crowd.users[0].id, crowd.guild.id) == []
            # the thinking message is gone, and answered and refused commands leave nothing behind
            assert fake.bot_messages(crowd.channel) == []
            first = await fake.slash_command(
                "imagine", user=crowd.users[1], channel=crowd.channel, options={"prompt": "y"}
            )
            await wait_for_card(first)
            refused = await fake.slash_command(
                "imagine", user=crowd.users[1], channel=crowd.channel, options={"prompt": "z"}
            )
            await refused.wait_for_response(lambda m: bool(m.flags & 64) and "left" in m.content)
            # the refusal is noted settled right after the member is told
            deadline = asyncio.get_running_loop().time() + 10
            while await pending_rows(tmp_path) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            assert await pending_rows(tmp_path) == 0
