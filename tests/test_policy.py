"""Who may generate, where, and with which allowance; and that every moderator action is audited."""

from __future__ import annotations

import json
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from pydantic import Field

from bot.config import QuotaSection
from bot.errors import InvalidRequest, NotAllowed, TooManyJobs
from bot.moderation import MemberContext, ModeratorActions, PolicyService, banned_word_in
from bot.providers.base import GenerationRequest
from bot.quota import AllowanceExceeded, Ledger
from bot.storage import Database
from tests import pg
from tests.test_quota import FakeClock, at, count, reserve_job, settle


@pytest.fixture(params=pg.STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every ``db`` test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


GUILD, MOD = 100, 900
ROLE_A, ROLE_B, ROLE_VIP = 11, 12, 13
GENERAL, ART, ELSEWHERE = 21, 22, 23


class AllowlistQuota(QuotaSection):
    """The config with the guild allowlist key the policy reads defensively."""

    guild_allowlist: list[int] = Field(default_factory=list)


@dataclass
class World:
    db: Database
    clock: FakeClock
    ledger: Ledger
    policy: PolicyService
    mod: ModeratorActions

    async def check(self, ctx: MemberContext, prompt: str = "a lighthouse at dusk", **request: object) -> int | None:
        """The server's rules only: the allowance that applies (nothing is written)."""
        decision = await self.policy.check(ctx, GenerationRequest.model_validate({"prompt": prompt, **request}), None)
        return decision.quota_limit

    async def submit(self, ctx: MemberContext, **request: object) -> str:
        """What /imagine does: the server's rules, then the job written and its units reserved by the store's one
        quota rule (the in-flight caps, the allowance, the daily cap); returns the job's id."""
        generation = GenerationRequest.model_validate({"prompt": "a lighthouse at dusk", **request})
        decision = await self.policy.check(ctx, generation, None)
        weight = {"local": 1, "pro": 2}[decision.provider_name]
        return await reserve_job(
            self.db,
            self.ledger,
            user=ctx.user_id,
            guild=ctx.guild_id,
            units=self.ledger.units_for(generation.count, generation.resolution, weight),
            limit=decision.quota_limit,
            queued_cap=self.policy.config.max_queued_per_user,
        )


def build(db: Database, quota: QuotaSection | None = None) -> World:
    clock = FakeClock(at(2025, 6, 2, 15))
    config = quota or QuotaSection(default_limit=10)
    ledger = Ledger(db, config, clock)
    policy = PolicyService(db, ledger, config, default_provider="local")
    return World(db, clock, ledger, policy, ModeratorActions(db, ledger, provider_names=["local", "pro"]))


@pytest.fixture
def world(db: Database) -> World:
    return build(db)


def member(
    user: int = 5, roles: tuple[int, ...] = (), channel: int = GENERAL, *, is_moderator: bool = False
) -> MemberContext:
    """A member as Discord reports them: their roles always include @everyone (id = the guild's)."""
    return MemberContext(
        guild_id=GUILD, user_id=user, role_ids=(GUILD, *roles), channel_id=channel, is_moderator=is_moderator
    )


# -- which allowance applies --------------------------------------------------------------------------
async def test_the_most_specific_scope_wins_user_then_role_then_channel_then_guild_then_default(world: World) -> None:
    ctx = member(roles=(ROLE_A,), channel=ART)
    assert await world.check(ctx) == 10  # nothing set: the bot's default
    await world.mod.set_limit(GUILD, MOD, "guild", None, 20)
    assert await world.check(ctx) == 20
    await world.mod.set_limit(GUILD, MOD, "channel", ART, 30)
    assert await world.check(ctx) == 30
    await world.mod.set_limit(GUILD, MOD, "role", ROLE_A, 40)
    assert await world.check(ctx) == 40
    await world.mod.set_limit(GUILD, MOD, "user", 5, 50)
    assert await world.check(ctx) == 50
    assert await world.check(member(user=6, roles=(ROLE_A,), channel=ART)) == 40  # overrides are per member
    assert await world.check(member(user=6, channel=ART)) == 30
    assert await world.check(member(user=6, channel=GENERAL)) == 20
    assert await world.mod.clear_limit(GUILD, MOD, "user", 5)
    assert await world.check(ctx) == 40
    other_guild = MemberContext(guild_id=GUILD + 1, user_id=5, role_ids=(ROLE_A,), channel_id=ART)
    assert await world.check(other_guild) == 10


async def test_a_member_with_several_roles_gets_the_most_generous_and_unlimited_beats_all(world: World) -> None:
    await world.mod.set_limit(GUILD, MOD, "role", ROLE_A, 5)
    await world.mod.set_limit(GUILD, MOD, "role", ROLE_B, 25)
    await world.mod.set_limit(GUILD, MOD, "role", ROLE_VIP, None)
    decision = await world.policy.check(member(roles=(ROLE_A, ROLE_B)), GenerationRequest(prompt="a cat"), None)
    assert (decision.quota_limit, decision.limit.scope, decision.limit.scope_id) == (25, "role", ROLE_B)
    assert await world.check(member(roles=(ROLE_A, ROLE_VIP, ROLE_B))) is None
    await world.mod.set_limit(GUILD, MOD, "user", 5, 3)  # a member override still beats an unlimited role
    assert await world.check(member(roles=(ROLE_VIP,))) == 3


async def test_an_everyone_role_limit_cannot_shadow_the_server_limit(world: World) -> None:
    with pytest.raises(InvalidRequest, match="guild scope"):
        await world.mod.set_limit(GUILD, MOD, "role", GUILD, 1)
    await world.mod.set_limit(GUILD, MOD, "guild", None, 7)
    assert await world.check(member()) == 7  # the member's @everyone role (id = guild id) is not a role scope


async def test_the_allowance_is_enforced_with_the_reset_time(world: World) -> None:
    await world.mod.set_limit(GUILD, MOD, "guild", None, 4)
    await world.mod.set_window(GUILD, MOD, "weekly", "Europe/Berlin")
    await reserve_job(world.db, world.ledger, user=5, units=3, guild=GUILD, limit=4)
    with pytest.raises(AllowanceExceeded, match="you have 1 of 4 left") as refused:
        await world.submit(member(), count=1, resolution="4K")  # a 4K image costs 2
    assert refused.value.resets_at == at(2025, 6, 9, 0)  # next Monday, Berlin midnight
    await world.submit(member(), resolution="1K")
    status = await world.policy.status(member())
    assert (status.balance.used, status.balance.left, status.in_flight) == (4, 0, 2)


async def test_status_shows_used_left_reset_and_jobs_in_flight(world: World) -> None:
    job = await reserve_job(world.db, world.ledger, user=5, units=4, guild=GUILD)
    await reserve_job(world.db, world.ledger, user=5, units=1, guild=GUILD)
    await settle(world.db, world.ledger, job, 4)
    status = await world.policy.status(member())
    assert (status.balance.used, status.balance.left, status.balance.limit) == (5, 5, 10)
    assert status.balance.resets_at == at(2025, 6, 3, 0, zone=ZoneInfo("UTC"))
    assert (status.in_flight, status.in_flight_cap, status.block, status.paused) == (2, 10, None, False)


async def test_too_many_jobs_in_flight_is_refused(world: World) -> None:
    await world.mod.set_max_in_flight(GUILD, MOD, 2)
    for _ in range(2):
        await reserve_job(world.db, world.ledger, user=5, units=1, guild=GUILD)
    with pytest.raises(TooManyJobs, match=r"You already have 2 picture jobs in progress here \(the limit is 2\)"):
        await world.submit(member())
    await world.submit(member(user=6))  # per member


async def test_a_servers_in_flight_cap_can_lower_the_bots_limit_but_never_raise_it(db: Database) -> None:
    world = build(db, QuotaSection(default_limit=10, max_queued_per_user=3))
    with pytest.raises(InvalidRequest, match=r"between 1 and 3 \(the bot's own limit\), not 4"):
        await world.mod.set_max_in_flight(GUILD, MOD, 4, ceiling=3)
    await world.mod.set_max_in_flight(GUILD, MOD, 50)  # e.g. stored before the bot's owner lowered the limit
    for _ in range(3):
        await reserve_job(world.db, world.ledger, user=5, units=1, guild=GUILD)
    with pytest.raises(TooManyJobs, match=r"You already have 3 picture jobs in progress \(the limit is 3\)"):
        await world.submit(member())
    assert (await world.policy.status(member())).in_flight_cap == 3
    await world.mod.set_max_in_flight(GUILD, MOD, 2, ceiling=3)
    assert (await world.policy.status(member())).in_flight_cap == 2


# -- who may generate at all --------------------------------------------------------------------------
async def test_a_block_with_expiry_ends_on_its_own(world: World) -> None:
    until = world.clock() + 3600
    await world.mod.block(GUILD, MOD, 5, "spamming the channel", until=until)
    with pytest.raises(NotAllowed, match="spamming the channel") as refused:
        await world.check(member())
    assert f"<t:{int(until)}:f>" in refused.value.user_message
    await world.check(member(user=6))
    world.clock.advance(3601)
    assert await world.check(member()) == 10


async def test_unblock_lifts_a_block_at_once(world: World) -> None:
    await world.mod.block(GUILD, MOD, 5, "test")
    assert await world.mod.unblock(GUILD, MOD, 5, "sorted out")
    await world.check(member())
    assert not await world.mod.unblock(GUILD, MOD, 5)
    with pytest.raises(InvalidRequest):
        await world.mod.block(GUILD, MOD, 5, "   ")  # a reason is required
    with pytest.raises(InvalidRequest):
        await world.mod.block(GUILD, MOD, 5, "late", until=world.clock() - 1)


async def test_pause_stops_members_but_not_moderators_until_resumed(world: World) -> None:
    await world.mod.pause(GUILD, MOD, "provider outage")
    with pytest.raises(NotAllowed, match=r"paused on this server.*provider outage"):
        await world.check(member())
    await world.check(member(is_moderator=True))
    assert (await world.policy.status(member())).paused
    await world.mod.resume(GUILD, MOD)
    await world.check(member())


async def test_only_allowed_channels_and_their_threads(world: World) -> None:
    await world.mod.set_allowed_channels(GUILD, MOD, [ART, GENERAL])
    with pytest.raises(NotAllowed, match=f"<#{GENERAL}>, <#{ART}>"):
        await world.check(member(channel=ELSEWHERE))
    await world.check(member(channel=ART))
    thread = MemberContext(guild_id=GUILD, user_id=5, channel_id=999, parent_channel_id=ART)
    await world.check(thread)
    await world.check(member(channel=ELSEWHERE, is_moderator=True))
    await world.mod.set_allowed_channels(GUILD, MOD, [])
    await world.check(member(channel=ELSEWHERE))


async def test_only_allowed_providers(world: World) -> None:
    await world.mod.set_allowed_providers(GUILD, MOD, ["pro"])
    with pytest.raises(NotAllowed, match=r"'local' model is not enabled.*allowed: pro"):
        await world.check(member())  # no provider named: the default one is checked
    decision = await world.policy.check(member(), GenerationRequest(prompt="x", resolution="4K"), "pro")
    assert decision.provider_name == "pro"
    with pytest.raises(InvalidRequest, match="no provider called 'nope'; it has local, pro"):
        await world.mod.set_allowed_providers(GUILD, MOD, ["nope"])
    await world.mod.set_allowed_providers(GUILD, MOD, None)
    await world.check(member())


async def test_max_resolution_and_count(world: World) -> None:
    await world.mod.set_max_resolution(GUILD, MOD, "2K")
    await world.mod.set_max_count(GUILD, MOD, 2)
    with pytest.raises(InvalidRequest, match="up to 2K"):
        await world.check(member(), resolution="4K")
    with pytest.raises(InvalidRequest, match="at most 2 image"):
        await world.check(member(), count=3)
    await world.check(member(), resolution="2K", count=2)


async def test_the_guild_allowlist_from_the_config(db: Database) -> None:
    world = build(db, AllowlistQuota(guild_allowlist=[GUILD]))
    await world.check(member())
    with pytest.raises(NotAllowed, match="not enabled on this server"):
        await world.check(MemberContext(guild_id=GUILD + 1, user_id=5))


# -- banned words ------------------------------------------------------------------------------------
def test_banned_words_match_whole_words_ignoring_case() -> None:
    words = ["ass", "red flag"]
    assert banned_word_in("a class of glass, assorted", words) is None
    assert banned_word_in("Kick ASS!", words) == "ass"
    assert banned_word_in("bad-ass", words) == "ass"
    assert banned_word_in("a RED   Flag waving", words) == "red flag"
    assert banned_word_in("redflag", words) is None


async def test_a_banned_word_is_refused_politely_and_names_the_word(world: World) -> None:
    assert await world.mod.add_banned_words(GUILD, MOD, ["Gore", "gore ", "blood"]) == ["blood", "gore"]
    assert await world.policy.store.banned_words(GUILD) == ["blood", "gore"]
    with pytest.raises(InvalidRequest, match=r"not allowed on this server: “gore”\. Please rephrase"):
        await world.check(member(), prompt="GORE everywhere")
    await world.check(member(), prompt="a gorgeous sunset over bloodstone cliffs")
    assert await world.mod.remove_banned_words(GUILD, MOD, ["gore", "absent"]) == ["gore"]
    await world.check(member(), prompt="gore")


# -- the audit log ------------------------------------------------------------------------------------
async def test_every_moderator_action_is_audited_with_who_what_when_why(world: World) -> None:
    job = await reserve_job(world.db, world.ledger, user=5, units=3, guild=GUILD)
    await settle(world.db, world.ledger, job, 3)
    m = world.mod
    await m.set_limit(GUILD, MOD, "role", ROLE_A, 30, reason="artists")
    await m.clear_limit(GUILD, MOD, "role", ROLE_A)
    await m.block(GUILD, MOD, 5, "spam", until=world.clock() + 60)
    await m.unblock(GUILD, MOD, 5)
    await m.set_allowed_channels(GUILD, MOD, [ART])
    await m.set_allowed_channels(GUILD, MOD, [])
    await m.add_banned_words(GUILD, MOD, ["gore"])
    await m.remove_banned_words(GUILD, MOD, ["gore"])
    await m.pause(GUILD, MOD, "outage")
    await m.resume(GUILD, MOD)
    await m.refund(GUILD, MOD, 5, 2, "blurry results")
    await m.set_log_channel(GUILD, MOD, 77)
    await m.set_window(GUILD, MOD, "monthly", "Europe/Berlin")
    await m.set_allowed_providers(GUILD, MOD, ["local"])
    await m.set_max_resolution(GUILD, MOD, "2K")
    await m.set_max_count(GUILD, MOD, 2)
    await m.set_max_in_flight(GUILD, MOD, 1)
    entries = await world.policy.store.audit(GUILD, limit=100)
    assert [e.action for e in reversed(entries)] == [
        "limit.set",
        "limit.clear",
        "member.block",
        "member.unblock",
        "channels.set",
        "channels.clear",
        "banned_words.add",
        "banned_words.remove",
        "generation.pause",
        "generation.resume",
        "quota.refund",
        "log_channel.set",
        "window.set",
        "providers.set",
        "max_resolution.set",
        "max_count.set",
        "max_in_flight.set",
    ]
    assert all(e.actor_id == MOD and e.created_at == world.clock() and e.guild_id == GUILD for e in entries)
    refund = next(e for e in entries if e.action == "quota.refund")
    assert (refund.target, refund.reason, refund.details) == ("user:5", "blurry results", {"units": 2})
    limit = entries[-1]
    assert (limit.target, limit.reason, limit.details) == (f"role:{ROLE_A}", "artists", {"units": 30})
    settings = await world.policy.store.settings(GUILD)
    assert (settings.log_channel_id, settings.window_kind, settings.timezone) == (77, "monthly", "Europe/Berlin")
    assert settings.allowed_providers == ("local",)


async def test_a_refused_action_writes_nothing(world: World) -> None:
    with pytest.raises(InvalidRequest, match="not a time zone"):
        await world.mod.set_window(GUILD, MOD, "daily", "Mars/Olympus")
    with pytest.raises(InvalidRequest):
        await world.mod.set_limit(GUILD, MOD, "user", 5, -1)
    with pytest.raises(InvalidRequest, match="at most 0"):
        await world.mod.refund(GUILD, MOD, 5, 1, "nothing was charged")
    assert await count(world.db, "SELECT COUNT(*) FROM audit_log") == 0
    assert await count(world.db, "SELECT COUNT(*) FROM guild_settings") == 0


async def test_the_roles_a_member_used_are_remembered_for_reports(world: World) -> None:
    await world.check(member(roles=(ROLE_B, ROLE_A)))
    assert await world.policy.store.member_roles(GUILD, 5) == (ROLE_A, ROLE_B)
    await world.check(member(roles=(ROLE_VIP,)))
    row = await world.db.fetchone("SELECT role_ids FROM member_roles WHERE user_id = 5")
    assert row is not None and json.loads(row[0]) == [ROLE_VIP]
