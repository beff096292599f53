"""User installs in the fake: who can reach a command where, the payload Discord sends (`context`,
`authorizing_integration_owners`, `app_permissions`), the bot token shut out where the bot is absent,
the follow-up cap and the 15-minute token."""

from __future__ import annotations

import discord
import pytest

from tests.fakediscord import CommandNotAvailable, ErrorCode, Limits
from tests.fakediscord_tests.conftest import World


async def test_a_user_install_reaches_dms_group_dms_and_servers_without_the_bot(online: World) -> None:
    fake, alice = online.fake, online.alice
    bob, carol = fake.add_user("bob"), fake.add_user("carol")
    elsewhere = await fake.add_guild("No Bot Here", with_bot=False)
    lounge = await fake.add_channel(elsewhere, "lounge")
    await fake.add_member(elsewhere, alice)
    places = {
        "dm": fake.dm_channel(alice),
        "private": fake.private_channel(alice, bob, carol),
        "guild": lounge,
    }
    for channel in (places["private"], lounge):  # not installed by alice: Discord does not offer it there
        with pytest.raises(CommandNotAvailable):
            await fake.slash_command("anywhere", user=alice, channel=channel)
    # the bot's DM is reachable through the server install alone (authorizing_integration_owners {"0": "0"})
    assert (await fake.slash_command("anywhere", user=alice, channel=places["dm"])).record.payload[
        "authorizing_integration_owners"
    ] == {"0": "0"}
    fake.install_for_user(alice)
    for name, channel in places.items():
        handle = await fake.slash_command("anywhere", user=alice, channel=channel)
        payload = handle.record.payload
        assert payload["authorizing_integration_owners"] == (
            {"0": "0", "1": str(alice.id)} if name == "dm" else {"1": str(alice.id)}
        )
        assert payload["context"] == {"dm": 1, "private": 2, "guild": 0}[name]
        reply = await handle.wait_for_response()
        assert reply.content == f"{name} user {'-'}"
    # A command without the user install type stays where the bot is
    with pytest.raises(CommandNotAvailable, match="not installed here"):
        await fake.slash_command("ping", user=alice, channel=lounge)
    guild_reply = await (await fake.slash_command("anywhere", user=alice, channel=online.general)).wait_for_response()
    assert guild_reply.content == "guild user guild"


async def test_the_bot_token_is_shut_out_where_the_bot_is_absent(online: World) -> None:
    fake, alice = online.fake, online.alice
    elsewhere = await fake.add_guild("No Bot Here", with_bot=False)
    lounge = await fake.add_channel(elsewhere, "lounge")
    group = fake.private_channel(alice, fake.add_user("bob"), fake.add_user("carol"))
    for channel in (lounge, group):
        partial = online.client.get_partial_messageable(channel.id)
        with pytest.raises(discord.Forbidden) as info:
            await partial.send("hello")
        assert info.value.code == ErrorCode.MISSING_ACCESS
    shy = fake.add_user("shy")
    shy.allows_dms = False
    user = await online.client.fetch_user(shy.id)
    with pytest.raises(discord.Forbidden) as info:
        await user.send("hi")
    assert info.value.code == ErrorCode.CANNOT_MESSAGE_USER
    assert (await (await online.client.fetch_user(alice.id)).send("hi")).content == "hi"


async def test_follow_ups_are_capped_for_user_installs_only(online: World) -> None:
    fake, alice = online.fake, online.alice
    fake.install_for_user(alice)
    dm = await fake.slash_command("anywhere", user=alice, channel=fake.dm_channel(alice), options={"followups": 6})
    group = fake.private_channel(alice, fake.add_user("bob"), fake.add_user("carol"))
    capped = await fake.slash_command("anywhere", user=alice, channel=group, options={"followups": 6})
    await capped.wait_for_response(lambda m: m.content.startswith("stopped"))
    assert fake.message(capped.record.original_message_id or 0).content == f"stopped: {ErrorCode.MAX_FOLLOWUP_MESSAGES}"
    assert len(capped.followups) == Limits.USER_INSTALL_FOLLOWUPS
    await dm.wait_for_followups(6)  # the bot's DM is also the guild install's ("0": "0"): no cap


async def test_the_interaction_token_dies_after_15_minutes_of_fake_time(online: World) -> None:
    fake, alice = online.fake, online.alice
    fake.install_for_user(alice)
    handle = await fake.slash_command("anywhere", user=alice, channel=fake.dm_channel(alice))
    await handle.wait_for_response()
    webhook = discord.Webhook.partial(fake.application_id, handle.token, client=online.client)
    await webhook.send("still fine")
    fake.advance_clock(15 * 60 + 1)
    with pytest.raises(discord.HTTPException) as info:
        await webhook.send("too late")
    assert info.value.status == 401 and info.value.code == ErrorCode.INVALID_WEBHOOK_TOKEN
