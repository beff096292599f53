"""Promises the bot makes that no other test would notice breaking: crafted button ids, moderators acting on
other members' jobs, DMs, /quota about someone else, the per-member cap, and throttled card edits.

Each test fails when its promise is taken out of the code (the commit that added this file names the line broken
for each); a test that cannot fail is a defect. A promise found broken is an xfail(strict=True) saying where.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bot.config import DiscordSection, LocalProviderConfig, QuotaSection
from bot.images import ImageStore
from bot.jobs import Job
from bot.jobs.engine import JobEngine
from bot.jobs.sink import RecordMessage
from bot.providers.base import GenerationRequest, GenerationResult, Submission
from bot.providers.local import LocalProvider
from bot.providers.registry import ProviderRegistry
from bot.quota import Ledger
from bot.storage import Database
from tests.botrunner import bot_settings, is_card, running_bot, wait_for_card
from tests.fakediscord import CommandNotAvailable, CommandType, FakeDiscord, FakeMessage, InteractionType, Perm

EPHEMERAL = 64


class Server:
    """A guild with an art channel, a moderator (Manage Messages only), and two plain members."""

    async def build(self, fake: FakeDiscord) -> Server:
        self.fake = fake
        self.guild = await fake.add_guild("Promises")
        self.channel = await fake.add_channel(self.guild, "art")
        self.mod_role = await fake.add_role(self.guild, "Moderators", Perm.MANAGE_MESSAGES)
        self.mod = fake.add_user("mod")
        self.alice = fake.add_user("alice")
        self.bob = fake.add_user("bob")
        await fake.add_member(self.guild, self.mod, roles=[self.mod_role])
        await fake.add_member(self.guild, self.alice)
        await fake.add_member(self.guild, self.bob)
        return self

    async def imagine(self, user, **options: Any) -> FakeMessage:  # type: ignore[no-untyped-def]
        """The job's public card."""
        handle = await self.fake.slash_command(
            "imagine", user=user, channel=self.channel, options={"prompt": "a koala", **options}
        )
        return await wait_for_card(handle)

    async def results(self, card: FakeMessage) -> FakeMessage:
        """The (first) result message of the job behind ``card``, once posted in the thread from the card."""

        def posted() -> FakeMessage | None:
            thread = next((t for t in self.fake.threads(self.channel) if t.id == card.id), None)
            return next((m for m in self.fake.bot_messages(thread) if m.attachments), None) if thread else None

        return await self.fake.wait_for(posted, timeout=10)


def job_of(card: FakeMessage) -> str:
    """The job id in a card's or result message's footer (``job <id>`` or ``job <id> · images …``)."""
    return card.embeds[0]["footer"]["text"].split()[1]


def button(message: FakeMessage, action: str) -> str:
    return next(
        c["custom_id"] for row in message.components for c in row["components"] if f":{action}:" in c["custom_id"]
    )


def craft(message: FakeMessage, custom_id: str) -> None:
    """What a modified client can do: send a press of a button the message never had. The fake only lets a test
    press a component the message shows, so the crafted one is added to the stored message first."""
    crafted = {"type": 2, "style": 1, "label": "crafted", "custom_id": custom_id}
    message.components = [*message.components, {"type": 1, "components": [crafted]}]


async def rows(tmp_path: Path, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    async with aiosqlite.connect(tmp_path / "bot.sqlite3") as conn, conn.execute(query, params) as cursor:
        return [tuple(row) for row in await cursor.fetchall()]


async def jobs_of(tmp_path: Path, user_id: int) -> list[str]:
    found = await rows(tmp_path, "SELECT state FROM jobs WHERE requester_id = ? ORDER BY created_at", (user_id,))
    return [r[0] for r in found]


async def all_done(tmp_path: Path, user_id: int) -> list[str]:
    """The member's job states once none is still on its way."""
    async with asyncio.timeout(10):
        while True:
            states = await jobs_of(tmp_path, user_id)
            if all(s in ("done", "failed", "cancelled") for s in states):
                return states
            await asyncio.sleep(0.02)


async def ledger(tmp_path: Path, user_id: int) -> dict[str, int]:
    query = "SELECT entry, SUM(units) FROM quota_ledger WHERE user_id = ? GROUP BY entry"
    return {r[0]: r[1] for r in await rows(tmp_path, query, (user_id,))}


def private(message: FakeMessage) -> bool:
    return bool(message.flags & EPHEMERAL) and bool(message.content)


# -- 1. button custom ids crafted by a client --------------------------------------------------------------
async def test_a_crafted_button_with_another_jobs_id_starts_nothing_and_charges_nothing(tmp_path: Path) -> None:
    """Bob presses Reroll / Vary / Edit carrying Alice's job id on his own result message: refused privately,
    no card, no job, no credit; a well-formed id of a job that does not exist is refused the same way."""
    async with FakeDiscord() as fake:
        server = await Server().build(fake)
        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path)):
            alices = await server.results(await server.imagine(server.alice))
            bobs = await server.results(await server.imagine(server.bob))
            assert await all_done(tmp_path, server.alice.id) == await all_done(tmp_path, server.bob.id) == ["done"]
            before = await ledger(tmp_path, server.bob.id)
            target = job_of(alices)
            for crafted in (f"sd:1:reroll:{target}", f"sd:1:vary:{target}:0", "sd:1:reroll:0123456789abcdef012"):
                craft(bobs, crafted)
                handle = await fake.click_button(bobs, crafted, user=server.bob)
                refusal = await handle.wait_for_response(private)
                assert refusal.content == "This button does not belong to a job here.", crafted
                assert handle.original is None, crafted  # the public "thinking…" message was withdrawn: no card
            craft(bobs, f"sd:1:edit:{target}:0")
            pressed = await fake.click_button(bobs, f"sd:1:edit:{target}:0", user=server.bob)
            await pressed.wait_for_callback()
            assert pressed.modal is not None  # a modal must be the first answer; the job is checked on submit
            (instruction,) = (c["custom_id"] for row in pressed.modal["components"] for c in row["components"])
            submitted = await pressed.submit_modal({instruction: "make it blue"})
            assert (await submitted.wait_for_response(private)).content == "This button does not belong to a job here."
            assert submitted.original is None
            assert await jobs_of(tmp_path, server.bob.id) == ["done"]
            assert await ledger(tmp_path, server.bob.id) == before == {"reserve": 1, "commit": 1}
            assert await jobs_of(tmp_path, server.alice.id) == ["done"]
            thread = next(t for t in fake.threads(server.channel) if t.id == bobs.channel_id)
            assert not [m for m in fake.bot_messages(thread) if is_card(m)]


GARBAGE_IDS = (
    "sd:1:reroll:not-a-job",
    "sd:1:explode:{job}",
    "sd:0:reroll:{job}",  # an older format, as buttons from an earlier version of the bot would carry
    "garbage",
    "sd:1:reroll:{job}:" + "9" * 68,  # overlong: 100 characters, the most Discord allows
)


async def test_button_ids_that_match_no_button_are_refused_politely(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Server().build(fake)
        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path)):
            results = await server.results(await server.imagine(server.alice))
            assert await all_done(tmp_path, server.alice.id) == ["done"]
            handles = {}
            for template in GARBAGE_IDS:
                crafted = template.format(job=job_of(results))
                assert len(crafted) <= 100
                craft(results, crafted)
                handles[crafted] = await fake.click_button(results, crafted, user=server.alice)
            assert await jobs_of(tmp_path, server.alice.id) == ["done"]  # nothing started
            assert await ledger(tmp_path, server.alice.id) == {"reserve": 1, "commit": 1}  # nothing charged
            with contextlib.suppress(TimeoutError):  # Discord's 3 s to acknowledge
                await fake.wait_for(lambda: all(h.callback_type for h in handles.values()), timeout=3.5)
            unanswered = [c for c, h in handles.items() if h.callback_type is None]
            assert not unanswered, f"no answer at all to {unanswered}"
            for crafted, handle in handles.items():
                refusal = await handle.wait_for_response(private)
                assert "button" in refusal.content.lower(), crafted


# -- 2. a moderator's Cancel and Delete on another member's job ----------------------------------------------
async def press(fake: FakeDiscord, message: FakeMessage, action: str, user) -> str:  # type: ignore[no-untyped-def]
    """Press a job button; the private answer's words."""
    handle = await fake.click_button(message, button(message, action), user=user)
    return (await handle.wait_for_response(private)).content


async def test_moderators_cancel_and_delete_other_members_jobs_and_members_cannot(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Server().build(fake)  # mod: Manage Messages
        admin = fake.add_user("admin")  # Manage Server
        await fake.add_member(
            server.guild, admin, roles=[await fake.add_role(server.guild, "Admins", Perm.MANAGE_GUILD)]
        )

        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path)):
            results = await server.results(await server.imagine(server.alice))
            assert await all_done(tmp_path, server.alice.id) == ["done"]
            refused = await press(fake, results, "delete", server.bob)
            assert refused == f"Only <@{server.alice.id}> or a moderator can delete this job."
            assert not fake.message(results.id).deleted
            assert await press(fake, results, "delete", admin) == "Deleted."
            assert fake.message(results.id).deleted

        slow = bot_settings(
            fake,
            server.guild,
            tmp_path,
            providers={"local": {"kind": "local", "delay_seconds": 30}},
            generation={"default_resolution": "1K", "per_user_in_flight": 1},
        )
        async with running_bot(fake, slow) as bot:
            running = await server.imagine(server.alice, count=2)
            queued = await server.imagine(server.alice, count=3)
            ids = job_of(running), job_of(queued)
            await fake.wait_for(lambda: bot.engine.running_count == 1 or None, timeout=5)
            assert [(await bot.engine.jobs.get(i)).state.value for i in ids] == ["submitted", "queued"]  # type: ignore[union-attr]
            for card in (running, queued):
                await fake.wait_for(lambda card=card: card.components or None, timeout=5)
                refused = await press(fake, card, "cancel", server.bob)
                assert refused == f"Only <@{server.alice.id}> or a moderator can cancel this job."
            assert await jobs_of(tmp_path, server.alice.id) == ["done", "submitted", "queued"]

            assert (await press(fake, queued, "cancel", server.mod)).startswith("Cancelled")
            assert (await press(fake, running, "cancel", admin)).startswith("Cancelled")
            for card in (running, queued):
                await fake.wait_for(lambda card=card: "Cancelled." in card.embeds[0]["description"] or None, 5)
                assert card.components == []  # no live button left on the card
            assert await jobs_of(tmp_path, server.alice.id) == ["done", "cancelled", "cancelled"]
            assert [await job_ledger(tmp_path, i) for i in ids] == [
                {"reserve": 2, "refund": 2},
                {"reserve": 3, "refund": 3},
            ]


async def job_ledger(tmp_path: Path, job_id: str) -> dict[str, int]:
    query = "SELECT entry, SUM(units) FROM quota_ledger WHERE job_id = ? GROUP BY entry"
    return {r[0]: r[1] for r in await rows(tmp_path, query, (job_id,))}


# -- 3. direct messages ------------------------------------------------------------------------------------
REFUSED_IN_DMS = "I only make pictures inside servers, not in direct messages."


async def test_imagine_is_not_offered_in_dms_and_refused_if_sent_anyway(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Server().build(fake)
        dm = fake.dm_channel(server.alice)
        globally = bot_settings(fake, server.guild, tmp_path, discord={"command_guilds": []})  # DMs see global ones
        async with running_bot(fake, globally):
            assert "imagine" in {c["name"] for c in fake.available_commands(server.alice, server.channel)}
            assert "imagine" not in {c["name"] for c in fake.available_commands(server.alice, dm)}
            with pytest.raises(CommandNotAvailable):
                await fake.slash_command("imagine", user=server.alice, channel=dm, options={"prompt": "a koala"})

            # A modified client sends it anyway: the interaction Discord would carry, built from the synced command.
            command = fake.find_command("imagine", dm)
            data = {
                "id": command["id"],
                "name": "imagine",
                "type": CommandType.CHAT_INPUT,
                "options": [{"name": "prompt", "type": 3, "value": "a koala"}],
            }
            handle = await fake._interact(InteractionType.APPLICATION_COMMAND, server.alice, dm, data)
            assert (await handle.wait_for_response(private)).content == REFUSED_IN_DMS
            assert not [m for m in fake.bot_messages(dm) if not m.flags & EPHEMERAL]  # no card, nothing public
            assert await jobs_of(tmp_path, server.alice.id) == []
            assert await ledger(tmp_path, server.alice.id) == {}


async def mention_in_dm(fake: FakeDiscord, bot, user) -> FakeMessage:  # type: ignore[no-untyped-def]
    me = fake.state.users[bot.user.id]
    return await fake.send_message(fake.dm_channel(user), user, f"{me.mention} make it blue", mentions=[me])


async def test_a_mention_in_a_dm_stays_silent_when_the_bot_works_in_servers_only(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Server().build(fake)
        dm = fake.dm_channel(server.alice)
        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path)) as bot:
            await mention_in_dm(fake, bot, server.alice)
            await asyncio.sleep(1.0)  # silence can only be observed by waiting; the control below answers at once
            assert fake.bot_messages(dm) == []
            assert await jobs_of(tmp_path, server.alice.id) == []

        # The control: the same mention where DMs are allowed is answered, so the silence above is the rule's.
        dms_allowed = bot_settings(fake, server.guild, tmp_path, discord={"guilds_only": False})
        async with running_bot(fake, dms_allowed) as bot:
            await mention_in_dm(fake, bot, server.alice)
            answer = await fake.wait_for(lambda: next(iter(fake.bot_messages(dm)), None), timeout=5)
            assert answer.content


# -- 4. /quota about another member ------------------------------------------------------------------------
async def test_quota_about_another_member_is_for_moderators_only(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Server().build(fake)
        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path, quota={"default_limit": 5})):
            await server.imagine(server.alice, count=2)
            assert await all_done(tmp_path, server.alice.id) == ["done"]

            async def quota(user, member) -> FakeMessage:  # type: ignore[no-untyped-def]
                handle = await fake.slash_command(
                    "quota", user=user, channel=server.channel, options={"member": member}
                )
                return await handle.wait_for_response(private, timeout=10)

            seen = await quota(server.mod, server.alice)
            assert seen.content.startswith(f"**<@{server.alice.id}>**: 2 of 5 used, 3 left")
            refused = await quota(server.bob, server.alice)
            assert refused.content == "Only moderators can look at someone else's allowance."
            own = await quota(server.bob, server.bob)  # naming oneself is fine
            assert own.content.startswith("**You**: 0 of 5 used, 5 left")


# -- 5. the per-member cap in the dispatcher ----------------------------------------------------------------
class GatedProvider(LocalProvider):
    """The local provider, holding each prompt in collect until the test opens its gate; records who runs."""

    def __init__(self, store: ImageStore) -> None:
        super().__init__("local", LocalProviderConfig(max_concurrent=8), store)
        self.gates: dict[str, asyncio.Event] = {}
        self.generating: set[str] = set()
        self.started: list[str] = []
        self.peak: dict[str, int] = {}  # member (first word of the prompt) -> most of their jobs generating at once

    def open(self, *prompts: str) -> None:
        for prompt in prompts:
            self.gates.setdefault(prompt, asyncio.Event()).set()

    async def collect(self, request: GenerationRequest, submission: Submission) -> GenerationResult:
        prompt, member = request.prompt, request.prompt.split()[0]
        self.generating.add(prompt)
        self.started.append(prompt)
        mine = sum(p.split()[0] == member for p in self.generating)
        self.peak[member] = max(self.peak.get(member, 0), mine)
        try:
            await self.gates.setdefault(prompt, asyncio.Event()).wait()
            return await super().collect(request, submission)
        finally:
            self.generating.discard(prompt)


class QuietSink:
    """Results go nowhere; the engine's own state is what the test reads."""

    async def progress(self, job: Job, position: int) -> None:
        return None

    async def deliver(self, job: Job, record_message: RecordMessage) -> None:
        for index in range(len(job.posted_message_ids), len(job.results)):
            await record_message(9000 + index)

    async def finished(self, job: Job) -> None:
        return None

    async def failed(self, job: Job, message: str) -> None:
        return None

    async def alert(self, job: Job, message: str) -> None:
        return None


async def test_one_member_runs_one_job_at_a_time_while_another_member_starts_at_once(
    db: Database, store: ImageStore
) -> None:
    """``per_user_in_flight = 1`` with four workers: Alice's three jobs run one after another, Bob's job
    (asked for last) starts alongside Alice's first instead of waiting behind her."""
    provider = GatedProvider(store)
    registry = ProviderRegistry({"local": provider}, "local")
    engine = JobEngine(
        db, registry, Ledger(db, QuotaSection()), QuietSink(), workers=4, per_user_in_flight=1, max_queued_per_user=10
    )

    async def enqueue(prompt: str, user: int) -> Job:
        request = GenerationRequest(prompt=prompt, count=1, resolution="1K")
        job, _ = await engine.enqueue(
            kind="imagine",
            requester_id=user,
            guild_id=1,
            channel_id=2,
            provider_name=None,
            request=request,
            quota_limit=None,
        )
        return job

    alice = [await enqueue(f"alice {n}", 1) for n in (1, 2, 3)]
    bob = await enqueue("bob 1", 2)

    async def generating_only(*prompts: str) -> None:
        """Wait until exactly these prompts are generating and the engine runs nothing else."""
        async with asyncio.timeout(5):
            while provider.generating != set(prompts) or engine.running_count != len(prompts):
                await asyncio.sleep(0.005)

    async def states() -> list[str]:
        return [(await engine.jobs.get(j.id)).state.value for j in (*alice, bob)]  # type: ignore[union-attr]

    await engine.start()
    try:
        await generating_only("alice 1", "bob 1")
        assert await states() == ["submitted", "queued", "queued", "submitted"]
        provider.open("alice 1")
        await generating_only("alice 2", "bob 1")
        assert await states() == ["done", "submitted", "queued", "submitted"]
        provider.open("alice 2")
        await generating_only("alice 3", "bob 1")
        provider.open("alice 3", "bob 1")
        async with asyncio.timeout(5):
            while await states() != ["done"] * 4:
                await asyncio.sleep(0.005)
    finally:
        provider.open(*(f"alice {n}" for n in (1, 2, 3)), "bob 1")
        await engine.stop()
    assert provider.peak == {"alice": 1, "bob": 1}
    assert provider.started[:2] in (["alice 1", "bob 1"], ["bob 1", "alice 1"])
    assert [p for p in provider.started if p.startswith("alice")] == ["alice 1", "alice 2", "alice 3"]


# -- 6. card edits are throttled under production settings ---------------------------------------------------
CARD_EDITS = (
    "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
    "PATCH /channels/{channel_id}/messages/{message_id}",
)


async def card_edits(fake: FakeDiscord, server: Server, tmp_path: Path, interval: float) -> int:
    """PATCHes of the card of one job that takes about a second, with ``status_edit_seconds = interval``."""
    settings = bot_settings(
        fake,
        server.guild,
        tmp_path,
        discord={"status_edit_seconds": interval},
        providers={"local": {"kind": "local", "delay_seconds": 1.0}},
    )
    async with running_bot(fake, settings):
        card = await server.imagine(server.alice)
        await fake.wait_for(lambda: "Done" in card.embeds[0]["description"] or None, timeout=10)
    return sum(1 for route in CARD_EDITS for call in fake.calls(route) if call.path.endswith(f"/{card.id}"))


async def test_card_edits_are_throttled_with_the_production_interval(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Server().build(fake)
        assert DiscordSection().status_edit_seconds == 5  # what production runs with
        throttled = await card_edits(fake, server, tmp_path, 5)
        assert throttled == 2  # the first render of the card and its final "Done"
        unthrottled = await card_edits(fake, server, tmp_path, 0)
        assert unthrottled > throttled  # the same job shows its progress when nothing holds edits back
