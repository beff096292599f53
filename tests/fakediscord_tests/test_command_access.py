"""Who may invoke a synced command: `default_member_permissions` (guild-level permissions; owner and
Administrator have all) and the guild-only rules (`contexts`, `dm_permission`), enforced by the fake as by
Discord's client: `CommandNotAvailable` instead of an interaction."""

from __future__ import annotations

import discord
import pytest
from discord import app_commands

from tests.fakediscord import CommandNotAvailable, CommandType, Perm
from tests.fakediscord_tests.conftest import FakeBot, World, start_bot


class GuardedBot(FakeBot):
    def _register(self) -> None:
        super()._register()
        tree = self.tree

        @tree.command(description="Needs Manage Server")
        @app_commands.default_permissions(manage_guild=True)
        async def settings(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("settings")

        @tree.command(description="Administrators only")
        @app_commands.default_permissions()
        async def nuke(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("nuked")

        @tree.command(description="Not in DMs")
        @app_commands.guild_only()
        async def where(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("here")

        @tree.command(description="Guild context only, dm_permission left true")
        @app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
        async def guildctx(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("guild context")

        @tree.context_menu(name="Moderate")
        @app_commands.default_permissions(manage_messages=True)
        async def moderate(interaction: discord.Interaction, message: discord.Message) -> None:
            await interaction.response.send_message("moderated", ephemeral=True)


@pytest.fixture
async def guarded(world: World) -> World:
    await start_bot(world, bot_class=GuardedBot)
    return world


def names(commands: list[dict[str, object]]) -> set[object]:
    return {c["name"] for c in commands}


async def test_synced_permissions_and_contexts_are_kept_as_discord_echoes_them(guarded: World) -> None:
    synced = {c["name"]: c for c in guarded.fake.commands()}  # global
    assert synced["settings"]["default_member_permissions"] == str(Perm.MANAGE_GUILD) == "32"
    assert synced["nuke"]["default_member_permissions"] == "0"
    assert synced["ping"]["default_member_permissions"] is None
    assert synced["where"]["dm_permission"] is False and synced["where"]["contexts"] == [0]
    assert synced["guildctx"]["dm_permission"] is True and synced["guildctx"]["contexts"] == [0]


async def test_member_without_default_member_permissions_cannot_invoke(guarded: World) -> None:
    fake, alice, general = guarded.fake, guarded.alice, guarded.general
    before = len(fake.interactions)
    with pytest.raises(CommandNotAvailable) as info:
        await fake.slash_command("settings", user=alice, channel=general)
    assert info.value.name == "settings" and "default_member_permissions 32" in info.value.reason
    with pytest.raises(CommandNotAvailable):
        await fake.slash_command("nuke", user=alice, channel=general)
    msg = await fake.send_message(general, alice, "hello")
    with pytest.raises(CommandNotAvailable):
        await fake.message_context_menu("Moderate", msg, user=alice)
    assert len(fake.interactions) == before and not fake.dispatches("INTERACTION_CREATE")  # nothing dispatched

    visible = fake.available_commands(alice, general, CommandType.CHAT_INPUT)
    assert names(visible) == {
        "ping",
        "imagine",
        "menu",
        "feedback",
        "upload",
        "anywhere",
        "slow",
        "later",
        "where",
        "guildctx",
    }
    assert "Moderate" not in names(fake.available_commands(alice, general))
    assert "Describe" in names(fake.available_commands(alice, general, CommandType.MESSAGE))

    # a channel overwrite does not grant it: the check is on guild-level permissions
    await fake.set_overwrite(general, alice, allow=Perm.MANAGE_GUILD)
    with pytest.raises(CommandNotAvailable):
        await fake.slash_command("settings", user=alice, channel=general)
    h = await fake.slash_command("ping", user=alice, channel=general)
    assert (await h.wait_for_response()).content == "pong"


async def test_role_owner_and_administrator_unlock_commands(guarded: World) -> None:
    fake, guild, general = guarded.fake, guarded.guild, guarded.general
    managers = await fake.add_role(guild, "managers", Perm.MANAGE_GUILD)
    admins = await fake.add_role(guild, "admins", Perm.ADMINISTRATOR)
    bob, carol = fake.add_user("bob"), fake.add_user("carol")
    await fake.add_member(guild, bob, roles=[managers])
    await fake.add_member(guild, carol, roles=[admins])
    owner = fake.state.users[guild.owner_id]

    h = await fake.slash_command("settings", user=bob, channel=general)
    assert (await h.wait_for_response()).content == "settings"
    with pytest.raises(CommandNotAvailable):  # "0": nobody but administrators and the owner
        await fake.slash_command("nuke", user=bob, channel=general)
    for user in (carol, owner):
        h = await fake.slash_command("nuke", user=user, channel=general)
        assert (await h.wait_for_response()).content == "nuked"
        assert {"settings", "nuke", "Moderate"} <= names(fake.available_commands(user, general))
    assert "nuke" not in names(fake.available_commands(bob, general))

    await fake.set_role_permissions(managers, 0)  # permissions are read at invocation time
    with pytest.raises(CommandNotAvailable):
        await fake.slash_command("settings", user=bob, channel=general)


async def test_guild_only_commands_cannot_be_invoked_in_a_dm(guarded: World) -> None:
    fake, alice = guarded.fake, guarded.alice
    dm = fake.dm_channel(alice)
    with pytest.raises(CommandNotAvailable) as info:
        await fake.slash_command("where", user=alice, channel=dm)
    assert "contexts [0]" in info.value.reason
    with pytest.raises(CommandNotAvailable):  # contexts decide even with dm_permission true
        await fake.slash_command("guildctx", user=alice, channel=dm)
    where = next(c for c in fake.commands() if c["name"] == "where")
    where["contexts"] = None  # as synced by a client that only sends dm_permission
    with pytest.raises(CommandNotAvailable) as info:  # without contexts, dm_permission false still forbids
        await fake.slash_command("where", user=alice, channel=dm)
    assert "dm_permission" in info.value.reason

    in_dm = names(fake.available_commands(alice, dm, CommandType.CHAT_INPUT))
    assert "where" not in in_dm and "guildctx" not in in_dm
    assert {"ping", "settings"} <= in_dm  # default_member_permissions does not apply in DMs
    h = await fake.slash_command("ping", user=alice, channel=dm)
    assert (await h.wait_for_response()).content == "pong"


async def test_server_admin_overwrites_override_default_member_permissions(guarded: World) -> None:
    fake, guild, general, alice = guarded.fake, guarded.guild, guarded.general, guarded.alice
    managers = await fake.add_role(guild, "managers", Perm.MANAGE_GUILD)
    bob = fake.add_user("bob")
    await fake.add_member(guild, bob, roles=[managers])

    fake.set_command_permission(guild, "settings", alice)  # Integrations: allow alice
    h = await fake.slash_command("settings", user=alice, channel=general)
    assert (await h.wait_for_response()).content == "settings"
    fake.set_command_permission(guild, "settings", managers, allow=False)  # deny the role: bob loses it
    with pytest.raises(CommandNotAvailable) as info:
        await fake.slash_command("settings", user=bob, channel=general)
    assert "overwrite" in info.value.reason
    fake.set_command_permission(guild, "settings", general, allow=False)  # and nobody has it in #general
    with pytest.raises(CommandNotAvailable):
        await fake.slash_command("settings", user=alice, channel=general)
    other = await fake.add_channel(guild, "other")
    assert "settings" in names(fake.available_commands(alice, other))
    assert "settings" not in names(fake.available_commands(bob, other))
