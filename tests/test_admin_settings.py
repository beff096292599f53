"""The server settings moderators change with /seedream-admin settings and limits clear: the core's rules first
(real SQLite), then end to end through the fake Discord: each change takes effect on the next /imagine, is
audited and posted to the log channel, and bad input gets a polite private answer."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiosqlite
import pytest

from bot.errors import InvalidRequest, NotAllowed
from bot.moderation import ModelFacts, providers_serving, settings_overview, timezone_suggestions
from bot.quota import AllowanceExceeded, calendar_bounds
from bot.sizes import RESOLUTIONS
from bot.storage import Database
from bot.storage.database import migration_files
from tests import pg
from tests.botrunner import bot_settings, is_card, running_bot
from tests.fakediscord import CommandNotAvailable, FakeDiscord, FakeMessage
from tests.test_e2e_moderation import Server, jobs_of
from tests.test_policy import ART, GUILD, MOD, ROLE_A, ROLE_B, World, build, member
from tests.test_quota import at, count, reserve_job


@pytest.fixture(params=pg.STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every ``db`` test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


TIERS = ", ".join(RESOLUTIONS)
MODELS = [
    ModelFacts(name="local", model="placeholder", resolutions=("1K", "2K", "4K"), max_count=8),
    ModelFacts(name="pro", model="seedream-4.5", resolutions=("2K", "4K"), max_count=4),
]


@pytest.fixture
def world(db: Database) -> World:
    return build(db)


async def actions(db: Database) -> list[str]:
    rows = await db.fetchall("SELECT action FROM audit_log ORDER BY id")
    return [str(r[0]) for r in rows]


# -- the quota window --------------------------------------------------------------------------------
async def test_the_window_changes_only_what_is_given_in_the_time_zone_databases_spelling(world: World) -> None:
    await world.mod.set_limit(GUILD, MOD, "guild", None, 1)
    assert await world.mod.set_window(GUILD, MOD, kind="weekly", timezone=" asia/tokyo ") == {
        "window_kind": "weekly",
        "timezone": "Asia/Tokyo",
    }
    await world.mod.set_window(GUILD, MOD, rolling_hours=48)
    settings = await world.policy.store.settings(GUILD)
    assert (settings.window_kind, settings.timezone, settings.rolling_hours) == ("weekly", "Asia/Tokyo", 48)
    await reserve_job(world.db, world.ledger, user=5, units=1, guild=GUILD, limit=1)
    with pytest.raises(AllowanceExceeded) as refused:
        await world.submit(member())
    assert refused.value.resets_at == at(2025, 6, 9, 0, zone=ZoneInfo("Asia/Tokyo"))  # Monday, Tokyo midnight
    await world.mod.set_window(GUILD, MOD, kind="rolling")
    with pytest.raises(AllowanceExceeded) as refused:
        await world.submit(member())
    assert refused.value.resets_at.timestamp() == world.clock() + 48 * 3600  # the stored hours now count
    assert await actions(world.db) == ["limit.set", "window.set", "window.set", "window.set"]


async def test_bad_window_input_is_refused_politely_and_nothing_is_written(world: World) -> None:
    with pytest.raises(InvalidRequest, match=r"“Mars/Olympus” is not a time zone I know\. Please use a name"):
        await world.mod.set_window(GUILD, MOD, timezone="Mars/Olympus")
    with pytest.raises(InvalidRequest, match="Did you mean Europe/Berlin"):
        await world.mod.set_window(GUILD, MOD, timezone="Europe/Berlni")
    for bad in ("../../etc/passwd", "Europe/", "localtime", "Factory", "UTC\x00"):
        with pytest.raises(InvalidRequest, match="not a time zone"):
            await world.mod.set_window(GUILD, MOD, timezone=bad)
    with pytest.raises(InvalidRequest, match="Please give a time zone"):
        await world.mod.set_window(GUILD, MOD, timezone="  ")
    with pytest.raises(InvalidRequest, match="“hourly” is not a quota window; choose one of daily, weekly"):
        await world.mod.set_window(GUILD, MOD, kind="hourly")
    for hours in (0, 24 * 31 + 1):
        with pytest.raises(InvalidRequest, match="between 1 and 744 hours"):
            await world.mod.set_window(GUILD, MOD, kind="rolling", rolling_hours=hours)
    with pytest.raises(InvalidRequest, match="Please choose a window"):
        await world.mod.set_window(GUILD, MOD)
    assert await count(world.db, "SELECT COUNT(*) FROM guild_settings") == 0
    assert await actions(world.db) == []


def test_time_zone_suggestions_start_with_what_was_typed() -> None:
    assert timezone_suggestions("berl")[0] == "Europe/Berlin"
    assert timezone_suggestions("TOKYO") == ["Asia/Tokyo"]
    assert "UTC" in timezone_suggestions("") and len(timezone_suggestions("a")) == 25
    assert timezone_suggestions("no such place") == []


# -- allowed providers and models ----------------------------------------------------------------------
async def test_allowed_providers_change_one_step_at_a_time_and_a_no_op_writes_nothing(world: World) -> None:
    change = world.mod.change_allowed_providers
    assert await change(GUILD, MOD, "disallow", ["local"]) == (("pro",), True)  # all but local
    with pytest.raises(NotAllowed, match="'local' model is not enabled on this server; allowed: pro"):
        await world.check(member())
    assert await change(GUILD, MOD, "allow", ["local"]) == (("local", "pro"), True)
    await world.check(member())
    assert await change(GUILD, MOD, "only", ["pro"], model="seedream-4.5") == (("pro",), True)
    with pytest.raises(InvalidRequest, match=r"leave no model allowed.*use /seedream-admin pause"):
        await change(GUILD, MOD, "disallow", ["pro"])
    with pytest.raises(InvalidRequest, match="no provider called 'nope'; it has local, pro"):
        await change(GUILD, MOD, "only", ["nope"])
    with pytest.raises(InvalidRequest, match="which model to allow"):
        await change(GUILD, MOD, "only", [])
    assert await change(GUILD, MOD, "all") == (None, True)
    assert await change(GUILD, MOD, "all") == (None, False)
    assert await change(GUILD, MOD, "allow", ["pro"]) == (None, False)  # already allowed: every model is
    entries = [e for e in reversed(await world.policy.store.audit(GUILD)) if e.action == "providers.set"]
    assert [e.details for e in entries] == [
        {"step": "disallow", "chosen": ["local"], "providers": ["pro"]},
        {"step": "allow", "chosen": ["local"], "providers": ["local", "pro"]},
        {"step": "only", "chosen": ["pro"], "model": "seedream-4.5", "providers": ["pro"]},
        {"step": "all", "providers": None},
    ]


def test_a_model_is_every_configured_provider_that_serves_it() -> None:
    catalog = {"novita": "seedream-4.5", "leo": "Seedream-4.5", "ark": "seedream-4-0-250828"}
    assert providers_serving(" SEEDREAM-4.5", catalog) == ["leo", "novita"]
    with pytest.raises(InvalidRequest, match=r"no model called “seedream-9”; it has Seedream-4\.5, seedream-4-0"):
        providers_serving("seedream-9", catalog)


# -- largest request, jobs in flight, resetting -----------------------------------------------------------
async def test_largest_request_is_checked_whole_before_anything_is_written(world: World) -> None:
    mod = world.mod
    assert await mod.set_request_max(GUILD, MOD, resolution="2k", count=2, largest=8) == {
        "max_resolution": "2K",
        "max_count": 2,
    }
    with pytest.raises(InvalidRequest, match="up to 2K"):
        await world.check(member(), resolution="4K")
    with pytest.raises(InvalidRequest, match=f"“8K” is not a resolution tier; please choose one of {TIERS}"):
        await mod.set_request_max(GUILD, MOD, resolution="8K", count=3, largest=8)
    for bad in (0, 9):
        with pytest.raises(InvalidRequest, match=f"between 1 and 8 .the most a model here makes.*not {bad}"):
            await mod.set_request_max(GUILD, MOD, resolution="4K", count=bad, largest=8)
    with pytest.raises(InvalidRequest, match="Please choose a largest resolution"):
        await mod.set_request_max(GUILD, MOD)
    settings = await world.policy.store.settings(GUILD)
    assert (settings.max_resolution, settings.max_count) == ("2K", 2)  # the refused calls changed nothing
    assert await actions(world.db) == ["max_resolution.set", "max_count.set"]


async def test_every_tier_the_bot_knows_can_be_the_largest_and_older_rows_survive_the_migration(
    tmp_path: Path,
) -> None:
    older = [m for m in migration_files() if m[0] < 6]
    db = await Database(tmp_path / "old.sqlite3").open()
    try:
        await db.migrate(older)
        await db.write(
            "INSERT INTO guild_settings (guild_id, timezone, allowed_providers, max_resolution, max_count, updated_at)"
            " VALUES (?, 'Europe/Berlin', '[\"pro\"]', '2K', 3, 1.0)",
            (GUILD,),
        )
        await db.migrate()
        world = build(db)
        settings = await world.policy.store.settings(GUILD)
        assert (settings.timezone, settings.allowed_providers, settings.max_resolution, settings.max_count) == (
            "Europe/Berlin",
            ("pro",),
            "2K",
            3,
        )
        for tier in RESOLUTIONS:  # 3K came with Seedream 5.x; 0003's CHECK knew only 1K, 2K and 4K
            await world.mod.set_request_max(GUILD, MOD, resolution=tier)
            assert (await world.policy.store.settings(GUILD)).max_resolution == tier
    finally:
        await db.close()


async def test_reset_returns_settings_to_the_defaults_and_says_which_were_set(world: World) -> None:
    await world.mod.set_window(GUILD, MOD, kind="monthly", timezone="Europe/Berlin")
    await world.mod.set_request_max(GUILD, MOD, count=1)
    await world.mod.set_max_in_flight(GUILD, MOD, 1)
    with pytest.raises(InvalidRequest, match="at most 1 image"):
        await world.check(member(), count=2)
    assert await world.mod.reset_settings(GUILD, MOD, ["window", "max-count", "models"]) == ["window", "max-count"]
    settings = await world.policy.store.settings(GUILD)
    assert (settings.window_kind, settings.timezone, settings.max_count, settings.max_in_flight) == (
        None,
        None,
        None,
        1,
    )
    await world.check(member(), count=2)
    assert (await world.ledger.window_for(GUILD)).kind == "daily"  # the cached window was forgotten
    assert await world.mod.reset_settings(GUILD, MOD, ["window"]) == []
    with pytest.raises(InvalidRequest, match="Choose what to reset"):
        await world.mod.reset_settings(GUILD, MOD, ["everything-else"])
    audit = await world.policy.store.audit(GUILD)
    assert [e.action for e in audit].count("settings.reset") == 1
    assert audit[0].details == {"settings": ["window", "max-count"]}


# -- the settings view -------------------------------------------------------------------------------------
async def test_the_overview_names_each_source_and_which_role_applies_to_whom(world: World) -> None:
    mod = world.mod
    await mod.set_limit(GUILD, MOD, "role", ROLE_A, 5)
    await mod.set_limit(GUILD, MOD, "role", ROLE_B, 25)
    await mod.set_limit(GUILD, MOD, "channel", ART, 3)
    await mod.set_limit(GUILD, MOD, "user", 7, 40)
    await mod.set_window(GUILD, MOD, kind="weekly")
    await world.check(member(user=5, roles=(ROLE_A, ROLE_B)))  # B, the more generous
    await world.check(member(user=6, roles=(ROLE_A,)))  # A
    await world.check(member(user=7, roles=(ROLE_A,)))  # their own limit
    await mod.change_allowed_providers(GUILD, MOD, "only", ["pro"])
    overview = await settings_overview(world.policy, GUILD, MODELS, member=member(user=5, roles=(ROLE_A, ROLE_B)))
    sections = dict(overview.sections)
    window = sections["Quota window"]
    assert "Kind: **weekly** · set on this server" in window
    assert "Time zone: **UTC** · bot default" in window
    assert f"resets <t:{int(at(2025, 6, 9, 0, zone=ZoneInfo('UTC')).timestamp())}:R>" in window
    allowances = sections["Allowances (credits per window)"]
    assert "Where nothing below applies: **10** · bot default" in allowances
    assert f"Channel <#{ART}>: **3**" in allowances and "Member <@7>: **40**" in allowances
    assert "most generous" in allowances
    roles = sections["Roles with a limit (the most generous role wins)"].splitlines()
    assert roles[0] == f"<@&{ROLE_B}>: **25** → in force for <@5>"
    assert roles[1] == (
        f"<@&{ROLE_A}>: **5** → in force for <@6>; 2 other members with it get their own limit or a more "
        "generous role's"
    )
    assert sections["Models"].splitlines() == [
        "Allowed: **pro (seedream-4.5)** · set on this server",
        "Not allowed: local (placeholder)",
    ]
    assert sections["Largest request"] == (
        "Resolution: **4K** · what the models render (no server maximum)\n"
        "Images per request: **8** · what the models make (no server maximum)"
    )
    assert sections["Jobs in progress per member"] == "**10** · bot default"
    assert sections["For <@5>"] == (
        f"<@5> in <#{member().channel_id}>: **25** credits per window, from the role <@&{ROLE_B}>, the most "
        f"generous of their roles with a limit (<@&{ROLE_A}> 5, <@&{ROLE_B}> 25)."
    )
    assert "Generation is running" in overview.description
    assert all(len(value) <= 1024 for value in sections.values())
    # the same view in a German moderator's language
    german = await settings_overview(
        world.policy, GUILD, MODELS, member=member(user=5, roles=(ROLE_A, ROLE_B)), locale="de"
    )
    in_german = dict(german.sections)
    assert "Art: **wöchentlich** · auf diesem Server gesetzt" in in_german["Kontingentzeitraum"]
    assert in_german["Modelle"].splitlines()[1] == "Nicht erlaubt: local (placeholder)"
    assert "Die Bilderstellung läuft auf diesem Server." in german.description


async def test_long_lists_are_cut_to_fit_discords_embed_limits(world: World) -> None:
    for n in range(100):
        await world.mod.set_limit(GUILD, MOD, "user", 10_000_000_000_000_000 + n, 1)
        await world.mod.set_limit(GUILD, MOD, "role", 20_000_000_000_000_000 + n, n)
    await world.mod.set_allowed_channels(GUILD, MOD, range(30_000_000_000_000_000, 30_000_000_000_000_200))
    many = [ModelFacts(name=f"provider-{n}", model=f"model-{n}", resolutions=("2K",), max_count=4) for n in range(60)]
    overview = await settings_overview(world.policy, GUILD, many, member=member())
    sections = dict(overview.sections)
    for name in ("Allowances (credits per window)", "Roles with a limit (the most generous role wins)"):
        assert sections[name].splitlines()[-1].startswith("… and ")
    assert (
        sections["Where and who"].startswith("Channels: <#30000000000000000>, ") and ", …" in sections["Where and who"]
    )
    assert all(len(value) <= 1024 for value in sections.values())
    total = len(overview.description) + sum(len(name) + len(value) for name, value in overview.sections)
    assert total < 6000 - 300  # Discord's limit for a whole embed, with room for the title


# -- end to end ------------------------------------------------------------------------------------------
class Moderated(Server):
    async def build(self, fake: FakeDiscord) -> Moderated:
        await super().build(fake)
        self.log = await fake.add_channel(self.guild, "mod-log")
        return self

    async def set_log(self) -> None:
        await self.run("seedream-admin log-channel", self.mod, channel=self.log)

    async def logged(self, lines: int) -> list[str]:
        """The log channel's lines once it has ``lines`` of them (a post follows the moderator's answer)."""
        await self.fake.wait_for(lambda: len(self.fake.bot_messages(self.log)) >= lines or None, timeout=5)
        return [m.content for m in self.fake.bot_messages(self.log)]

    async def admin(self, name: str, **options: Any) -> str:
        """A moderator's command; its private answer's text."""
        answer = await self.run(f"seedream-admin {name}", self.mod, **options)
        assert answer.flags & 64, answer.content  # ephemeral
        return answer.content


async def audit_rows(tmp_path: Path, action: str) -> list[dict[str, Any]]:
    query = "SELECT actor_id, target, details FROM audit_log WHERE action = ? ORDER BY id"
    async with aiosqlite.connect(tmp_path / "bot.sqlite3") as conn, conn.execute(query, (action,)) as cursor:
        return [{"actor": r[0], "target": r[1], **json.loads(r[2])} for r in await cursor.fetchall()]


TWO_MODELS = {"local": {"kind": "local"}, "fast": {"kind": "local", "model": "flash"}}


async def test_window_and_time_zone_change_the_next_refusals_reset_time(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Moderated().build(fake)
        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path, quota={"default_limit": 1})):
            await server.set_log()
            assert "Queued" in await server.imagine(server.bob)
            daily = await server.imagine(server.bob)
            assert f"<t:{int(calendar_bounds('daily', 'UTC', time.time())[1])}:R>" in daily

            said = await server.admin("settings window", kind="weekly", timezone="asia/TOKYO")
            end = int(calendar_bounds("weekly", "Asia/Tokyo", time.time())[1])
            assert said.startswith("Quota window changed (window weekly, time zone Asia/Tokyo)")
            refusal = await server.imagine(server.bob)
            assert "0 of 1 left" in refusal and f"<t:{end}:R>" in refusal
            assert f"🛡️ <@{server.mod.id}>: {said}" in await server.logged(2)
            assert await audit_rows(tmp_path, "window.set") == [
                {"actor": server.mod.id, "target": None, "window_kind": "weekly", "timezone": "Asia/Tokyo"}
            ]

            said = await server.admin("settings window", kind="rolling", hours=2)
            assert "now a rolling 2 h window" in said
            refusal = await server.imagine(server.bob)
            back = int(await first_reservation(tmp_path, server.bob.id) + 2 * 3600)
            assert any(f"<t:{t}:R>" in refusal for t in (back - 1, back, back + 1))  # 2 h after it was spent

            for bad, words in (
                ("Mars/Olympus", "“Mars/Olympus” is not a time zone I know."),
                ("Europe/Pariss", "Did you mean Europe/Paris?"),
            ):
                assert words in await server.admin("settings window", timezone=bad)
            assert "between 1 and 744 hours" in await server.admin("settings window", hours=1000)
            assert "not a quota window" in await server.admin("settings window", kind="fortnightly")
            assert len(await audit_rows(tmp_path, "window.set")) == 2  # the refusals wrote nothing
            assert len(await server.logged(3)) == 3  # log channel set, two changes

            suggestions = await fake.autocomplete(
                "seedream-admin settings window", user=server.mod, channel=server.channel,
                options={"timezone": "berl"}, focused="timezone",
            )  # fmt: skip
            await suggestions.wait_for_callback()
            assert (suggestions.autocomplete_choices or [])[0] == {"name": "Europe/Berlin", "value": "Europe/Berlin"}


async def first_reservation(tmp_path: Path, user_id: int) -> float:
    query = "SELECT MIN(created_at) FROM quota_ledger WHERE user_id = ? AND entry = 'reserve'"
    async with aiosqlite.connect(tmp_path / "bot.sqlite3") as conn, conn.execute(query, (user_id,)) as cursor:
        row = await cursor.fetchone()
        assert row is not None
        return float(row[0])


async def test_allowed_providers_and_models_decide_the_next_imagine(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Moderated().build(fake)
        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path, providers=TWO_MODELS)):
            await server.set_log()
            said = await server.admin("settings providers", action="only", provider="fast")
            assert said == "Models allowed on this server: fast (flash)."
            assert await server.imagine(server.alice) == (
                "The 'local' model is not enabled on this server; allowed: fast."
            )  # the default provider
            assert "Queued" in await server.imagine(server.alice, provider="fast")

            said = await server.admin("settings models", action="allow", model="placeholder")
            assert said == "Models allowed on this server: fast (flash), local (placeholder)."
            assert "Queued" in await server.imagine(server.alice)
            await server.admin("settings models", action="disallow", model="FLASH")
            assert "'fast' model is not enabled" in await server.imagine(server.alice, provider="fast")

            assert "Nothing changed" in await server.admin("settings models", action="allow", model="placeholder")
            assert "leave no model allowed" in await server.admin(
                "settings providers", action="disallow", provider="local"
            )
            assert await server.admin("settings providers", action="only", provider="nope") == (
                "This bot has no provider called 'nope'; it has local, fast."
            )
            assert await server.admin("settings models", action="only", model="seedream-9") == (
                "This bot has no model called “seedream-9”; it has flash, placeholder."
            )
            assert "which model to allow" in await server.admin("settings models", action="only")
            await server.admin("settings providers", action="all")
            assert "Queued" in await server.imagine(server.alice, provider="fast")

            assert [row["providers"] for row in await audit_rows(tmp_path, "providers.set")] == [
                ["fast"],
                ["fast", "local"],
                ["local"],
                None,
            ]
            logged = await server.logged(5)
            assert len(logged) == 5 and logged[-1].endswith("Models allowed on this server: every model the bot has.")

            choices = await fake.autocomplete(
                "seedream-admin settings models", user=server.mod, channel=server.channel,
                options={"step": "only", "model": "fl"}, focused="model",
            )  # fmt: skip
            await choices.wait_for_callback()
            assert choices.autocomplete_choices == [{"name": "flash (via fast)", "value": "flash"}]


async def test_largest_request_applies_to_the_next_imagine_and_resets(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Moderated().build(fake)
        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path)):
            await server.set_log()
            said = await server.admin("settings max", resolution="1K", count=2)
            assert said == "Largest request on this server: resolution up to 1K and at most 2 images."
            assert "at most 2 image(s)" in await server.imagine(server.bob, count=3)
            assert "up to 1K" in await server.imagine(server.bob, resolution="2K")
            assert "Queued" in await server.imagine(server.bob, resolution="1K", count=2)

            assert await server.admin("settings max", resolution="8K") == (
                f"“8K” is not a resolution tier; please choose one of {TIERS}."
            )
            for bad in (0, 9, 100):
                assert await server.admin("settings max", count=bad) == (
                    f"The largest image count must be between 1 and 8 (the most a model here makes in one "
                    f"request), not {bad}."
                )
            assert "Please choose" in await server.admin("settings max")
            assert [(r["max_resolution"], r["actor"]) for r in await audit_rows(tmp_path, "max_resolution.set")] == [
                ("1K", server.mod.id)
            ]

            said = await server.admin("settings reset", setting="max-count")
            assert said == "Back to the bot default: largest image count."
            assert "Queued" in await server.imagine(server.bob, resolution="1K", count=3)
            assert "Nothing changed" in await server.admin("settings reset", setting="max-count")
            assert await audit_rows(tmp_path, "settings.reset") == [
                {"actor": server.mod.id, "target": None, "settings": ["max-count"]}
            ]
            assert [line.split(": ", 1)[1] for line in (await server.logged(3))[1:]] == [
                "Largest request on this server: resolution up to 1K and at most 2 images.",
                "Back to the bot default: largest image count.",
            ]


async def test_the_in_flight_cap_applies_to_the_next_imagine(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Moderated().build(fake)
        slow = bot_settings(
            fake,
            server.guild,
            tmp_path,
            providers={"local": {"kind": "local", "delay_seconds": 1.5}},
            quota={"max_queued_per_user": 4},
        )
        async with running_bot(fake, slow):
            await server.set_log()
            said = await server.admin("settings in-flight", jobs=1)
            assert said == "Each member may now have 1 job in progress at once."
            assert "Queued" in await server.imagine(server.alice)
            refusal = await server.imagine(server.alice)
            assert "You already have 1 picture job in progress here (the limit is 1)" in refusal
            assert await server.admin("settings in-flight", jobs=5) == (
                "Jobs in progress per member must be between 1 and 4 (the bot's own limit), not 5."
            )
            assert "between 1 and 4" in await server.admin("settings in-flight", jobs=0)
            await server.admin("settings reset", setting="in-flight")
            assert "Queued" in await server.imagine(server.alice)
            assert [r["max_in_flight"] for r in await audit_rows(tmp_path, "max_in_flight.set")] == [1]
            assert f"🛡️ <@{server.mod.id}>: {said}" in await server.logged(3)
            async with asyncio.timeout(15):
                while await jobs_of(tmp_path, server.alice.id) != ["done", "done"]:
                    await asyncio.sleep(0.1)


async def test_limits_clear_removes_any_scopes_limit(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Moderated().build(fake)
        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path)):
            await server.set_log()
            await server.run("seedream-admin limits set", server.mod, scope="user", units=0, member=server.bob)
            await server.run("seedream-admin limits set", server.mod, scope="role", units=0, role=server.small)
            await server.run("seedream-admin limits set", server.mod, scope="channel", units=0, channel=server.channel)
            assert "0 of 0 left" in await server.imagine(server.bob)
            said = await server.admin("limits clear", scope="user", member=server.bob, reason="appeal")
            assert (
                said
                == f"Limit for <@{server.bob.id}> cleared; their roles, the channel, the server or the default decide."
            )
            assert "0 of 0 left" in await server.imagine(server.bob)  # now the channel's limit
            await server.admin("limits clear", scope="channel", channel=server.channel)
            assert "Queued" in await server.imagine(server.bob)
            assert "0 of 0 left" in await server.imagine(server.alice)  # the Small role's limit
            await server.admin("limits clear", scope="role", role=server.small)
            assert "Queued" in await server.imagine(server.alice)

            assert await server.admin("limits clear", scope="guild") == (
                "There was no limit for the server, so nothing changed."
            )
            assert await server.admin("limits clear", scope="role") == "Please choose the role this limit is for."
            assert await audit_rows(tmp_path, "limit.clear") == [
                {"actor": server.mod.id, "target": f"user:{server.bob.id}"},
                {"actor": server.mod.id, "target": f"channel:{server.channel.id}"},
                {"actor": server.mod.id, "target": f"role:{server.small.id}"},
            ]
            assert sum("cleared" in line for line in await server.logged(7)) == 3


async def test_settings_show_is_a_private_embed_of_everything_in_force(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Moderated().build(fake)
        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path, providers=TWO_MODELS)):
            await server.set_log()
            await server.run("seedream-admin limits set", server.mod, scope="role", units=2, role=server.small)
            await server.run("seedream-admin limits set", server.mod, scope="role", units=5, role=server.big)
            await server.admin("settings window", kind="monthly", timezone="Europe/Berlin")
            await server.admin("settings providers", action="only", provider="local")
            await server.admin("settings in-flight", jobs=3)
            assert "Queued" in await server.imagine(server.alice)  # the bot now knows alice's roles

            handle = await fake.slash_command(
                "seedream-admin settings show",
                user=server.mod,
                channel=server.channel,
                options={"member": server.alice},
            )
            shown = await handle.wait_for_response(lambda m: bool(m.embeds), timeout=10)
            assert shown.flags & 64 and not is_card(shown)
            embed = shown.embeds[0]
            fields = {f["name"]: f["value"] for f in embed["fields"]}
            assert embed["title"] == "Seedream settings on Mods"
            assert "Kind: **monthly** · set on this server" in fields["Quota window"]
            assert "Time zone: **Europe/Berlin** · set on this server" in fields["Quota window"]
            assert "Where nothing below applies: **50** · bot default" in fields["Allowances (credits per window)"]
            roles = fields["Roles with a limit (the most generous role wins)"]
            assert f"<@&{server.big.id}>: **5** → in force for <@{server.alice.id}>" in roles
            assert f"<@&{server.small.id}>: **2** → in force for no member seen yet; 1 other member" in roles
            assert fields["Models"].startswith("Allowed: **local (placeholder)** · set on this server")
            assert "Not allowed: fast (flash)" in fields["Models"]
            assert fields["Jobs in progress per member"] == "**3** · set on this server (the bot's own limit is 10)"
            assert f"<@{server.alice.id}>" in fields[f"For <@{server.alice.id}>"]
            assert "from the role" in fields[f"For <@{server.alice.id}>"]
            assert (shown.allowed_mentions or {}).get("parse") == []


async def test_members_cannot_see_or_use_the_settings_commands(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = await Moderated().build(fake)
        async with running_bot(fake, bot_settings(fake, server.guild, tmp_path)):
            offered = {c["name"]: c for c in fake.available_commands(server.mod, server.channel)}
            admin = offered["seedream-admin"]
            groups = {o["name"]: {s["name"] for s in o.get("options", [])} for o in admin["options"] if o["type"] == 2}
            assert groups["settings"] == {"show", "window", "providers", "models", "max", "in-flight", "reset"}
            assert "clear" in groups["limits"]
            assert "seedream-admin" not in {c["name"] for c in fake.available_commands(server.alice, server.channel)}
            with pytest.raises(CommandNotAvailable):
                await server.run("seedream-admin settings window", server.alice, kind="weekly")
            fake.set_command_permission(server.guild, "seedream-admin", server.alice)  # Integrations: allowed
            for name, options in (
                ("settings window", {"kind": "weekly"}),
                ("settings show", {}),
                ("settings max", {"count": 1}),
                ("limits clear", {"scope": "guild"}),
            ):
                refused: FakeMessage = await server.run(f"seedream-admin {name}", server.alice, **options)
                assert "Manage Server" in refused.content and refused.flags & 64
            query = "SELECT COUNT(*) FROM audit_log"
            async with aiosqlite.connect(tmp_path / "bot.sqlite3") as conn, conn.execute(query) as cursor:
                assert (await cursor.fetchone()) == (0,)
