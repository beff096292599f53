"""Bot-wide actions belong to the bot's owner: a server's moderators act for their own server only."""

from __future__ import annotations

import pytest

from bot.errors import NotAllowed
from bot.moderation import ModeratorActions
from bot.provider_health import ProviderHealth
from bot.storage import Database
from tests import pg
from tests.test_policy import GUILD, MOD, World, build, member
from tests.test_quota import count


@pytest.fixture(params=pg.STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every ``db`` test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


OWNER = 1
OTHER_GUILD = GUILD + 1


@pytest.fixture
def world(db: Database) -> World:
    return build(db)


def paused_health(world: World, *providers: str, minutes: float = 30) -> ProviderHealth:
    health = ProviderHealth(dict.fromkeys(providers, minutes * 60), world.clock)
    for name in providers:
        assert health.pause_for_credit(name)
    return health


# -- ProviderHealth itself refuses -------------------------------------------------------------------
def test_a_providers_credit_pause_is_lifted_only_by_the_owner(world: World) -> None:
    health = paused_health(world, "leonardo")
    world.clock.advance(5 * 60 + 1)
    with pytest.raises(NotAllowed) as refused:
        health.resume("leonardo", by_owner=False)
    assert refused.value.user_message == (
        "Only the bot's owner can resume provider leonardo for every server (it ran out of credit); "
        "it resumes by itself after 25 minutes."
    )
    assert health.is_paused("leonardo")
    with pytest.raises(NotAllowed):
        health.resume(by_owner=False)  # "all providers" is no way round it
    assert health.paused() == ["leonardo"]
    assert health.resume(by_owner=True) == ["leonardo"]
    assert health.paused() == [] and not health.is_paused("leonardo")


def test_nothing_paused_means_nothing_to_refuse(world: World) -> None:
    health = ProviderHealth({"local": 60.0}, world.clock)
    assert health.resume(by_owner=False) == []
    assert health.resume("local", by_owner=False) == []


def test_the_pause_ends_by_itself_and_members_are_told_when(world: World) -> None:
    health = paused_health(world, "novita", minutes=10)
    with pytest.raises(NotAllowed) as refused:
        health.ensure_available("novita")
    message = refused.value.user_message
    assert "paused for every server" in message and "about 10 minutes" in message and "owner" in message
    world.clock.advance(9 * 60 + 30)
    assert "after 1 minute." in str(health.owner_only(["novita"]))
    world.clock.advance(31)
    health.ensure_available("novita")
    assert health.paused() == [] and str(health.owner_only(["novita"])) == ""


# -- ModeratorActions.resume: the server's pause for anyone, the providers' for the owner --------------
async def test_a_server_moderator_resumes_only_their_server(world: World) -> None:
    health = paused_health(world, "leonardo", "novita")
    await world.mod.pause(GUILD, MOD, "break")
    await world.mod.pause(OTHER_GUILD, MOD + 1, "their own break")
    outcome = await world.mod.resume(GUILD, MOD, health=health, is_owner=False)
    assert outcome.providers_resumed == ()
    assert outcome.still_paused == ("leonardo", "novita")
    assert outcome.note is not None
    note = str(outcome.note)  # in English; the moderator reads it in their language
    assert "Only the bot's owner can resume provider leonardo for every server" in note
    assert "Only the bot's owner can resume provider novita for every server" in note
    assert "after 30 minutes" in note
    assert health.paused() == ["leonardo", "novita"]
    assert not (await world.policy.store.settings(GUILD)).paused
    assert (await world.policy.store.settings(OTHER_GUILD)).paused  # another server's pause is theirs
    await world.check(member())  # this server generates again
    actions = [e.action for e in await world.policy.store.audit(GUILD)]
    assert actions == ["generation.resume", "generation.pause"]


async def test_the_owner_lifts_the_providers_for_every_server_and_it_is_audited(world: World) -> None:
    health = paused_health(world, "leonardo")
    outcome = await world.mod.resume(GUILD, OWNER, "topped up", health=health, is_owner=True)
    assert outcome.providers_resumed == ("leonardo",)
    assert outcome.still_paused == () and outcome.note is None
    assert health.paused() == []
    newest = (await world.policy.store.audit(GUILD))[0]
    assert (newest.action, newest.actor_id, newest.reason) == ("providers.resume", OWNER, "topped up")
    assert newest.details == {"providers": ["leonardo"]}


async def test_resume_without_provider_pauses_says_nothing_about_providers(world: World) -> None:
    health = paused_health(world, "leonardo", minutes=1)
    world.clock.advance(61)  # the cool-down has passed
    for is_owner in (False, True):
        outcome = await world.mod.resume(GUILD, MOD, health=health, is_owner=is_owner)
        assert (outcome.providers_resumed, outcome.still_paused, outcome.note) == ((), (), None)
    assert await count(world.db, "SELECT COUNT(*) FROM audit_log WHERE action = 'providers.resume'") == 0


async def test_resume_without_health_is_the_server_pause_only(world: World) -> None:
    actions = ModeratorActions(world.db, world.ledger)
    await actions.pause(GUILD, MOD)
    outcome = await actions.resume(GUILD, MOD)
    assert outcome.note is None and not (await world.policy.store.settings(GUILD)).paused
