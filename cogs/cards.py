"""Starting a job from an interaction: the acknowledgement itself becomes the job's public card.

The command is deferred publicly at once (Discord's 3 s), so the "thinking…" message that Discord shows
is the message the card will be; the job is queued; the card is written through the interaction's token.
A refusal (quota, policy, bad input) removes that message and answers privately, so it leaves no card.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import discord

from bot.errors import NotAllowed
from bot.generation import Order
from bot.i18n import _
from bot.jobs import Job
from bot.jobs.models import Delivery
from cogs.errors import reply_error
from cogs.locales import locale_of
from cogs.places import is_personal

if TYPE_CHECKING:
    from cogs.app import SeedreamBot

log = logging.getLogger(__name__)
BuildOrder = Callable[[Delivery], Awaitable[Order]]
#: The left-behind command's language is not kept, so this answer is English.
RESTARTED = str(
    _(
        "The bot restarted before your request was queued, so nothing was made and nothing was charged. "
        "Please try again."
    )
)


def can_thread(channel: object, perms: discord.Permissions) -> bool:
    """Results go into a thread from the card where Discord allows one: a text channel (not a thread,
    forum, voice channel or DM) in which the bot may open public threads and post in them."""
    return (
        isinstance(channel, discord.TextChannel)
        and perms.create_public_threads
        and perms.send_messages_in_threads
        and perms.attach_files
    )


def can_post_results(channel: object, perms: discord.Permissions) -> bool:
    """Whether the results can land somewhere: a thread from the card, or the card's own channel."""
    if can_thread(channel, perms):
        return True
    if isinstance(channel, discord.Thread):
        return bool(perms.send_messages_in_threads and perms.attach_files)
    return bool(perms.send_messages and perms.attach_files)


class CardStarter:
    def __init__(self, bot: SeedreamBot) -> None:
        self.bot = bot

    async def start(self, interaction: discord.Interaction, build: BuildOrder) -> Job | None:
        """Acknowledge, queue what ``build`` asks for, and show the card; None when it was refused."""
        callback = await interaction.response.defer(thinking=True)
        await self.bot.ack_first.after_ack(interaction)
        ref = self.bot.sink.interaction_ref(interaction)
        try:
            card_id = callback.message_id if callback is not None else None
            if card_id is None:
                card_id = (await interaction.original_response()).id
            # Noted before any other work: a crash from here until the job is written is answered at the next start
            await self.bot.generation.pending.add(ref, card_id, interaction.channel_id, self.bot.sink.wall_clock())
            perms = interaction.app_permissions
            personal = is_personal(interaction)
            if not personal and interaction.guild_id is not None and not can_post_results(interaction.channel, perms):
                raise NotAllowed(
                    _(
                        "I can't post pictures in this channel, so nothing was queued and nothing was charged. "
                        "A moderator can give me Send Messages, Embed Links and Attach Files here."
                    )
                )
            delivery = Delivery(
                channel_id=interaction.channel_id,
                card_message_id=card_id,
                card_channel_id=interaction.channel_id,
                interaction=ref,
                threads_allowed=not personal and can_thread(interaction.channel, perms),
                via_interaction=personal,
                upload_limit=interaction.filesize_limit if personal else None,
                locale=locale_of(interaction),
            )
            order = await build(delivery)
            await self.bot.ack_first.after_ack(interaction)
            job, position = await self.bot.generation.submit(order)
        except Exception as exc:
            await self.withdraw(interaction, exc)
            try:
                await self.bot.generation.pending.settle(ref)
            except Exception:
                log.exception(
                    "interaction %s: its refusal was not noted; the next start answers it again", interaction.id
                )
            return None
        await self.bot.ack_first.after_ack(interaction)  # the card's edit waits while others wait for their defer
        try:
            await self.bot.sink.show_card(job, position)
        except discord.HTTPException as exc:
            log.info("job %s: card not shown yet (%s); the job goes on", job.id, exc)
        return job

    async def recover(self, before: float | None = None) -> None:
        """Answer the commands a previous run acknowledged but never queued (it stopped in between); with
        ``before``, only those acknowledged before then (other processes' recent ones are still in hand)."""
        try:
            await self._answer_left_behind(before)
        except Exception:
            log.exception("commands left by the last run were not answered; the next start tries again")

    async def _answer_left_behind(self, before: float | None) -> None:
        sink = self.bot.sink
        for left in await self.bot.generation.pending.left_behind(before):
            try:
                if sink.wall_clock() < left.interaction.usable_until:
                    webhook = sink.followup(left.interaction)
                    if left.message_id is not None:
                        try:
                            await webhook.delete_message(left.message_id)
                        except discord.NotFound:
                            pass
                    await webhook.send(RESTARTED, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
                elif left.message_id is not None and left.channel_id is not None:
                    channel = self.bot.get_partial_messageable(left.channel_id)
                    await channel.get_partial_message(left.message_id).edit(content=RESTARTED, embeds=[], view=None)
            except discord.HTTPException as exc:
                log.info("a command left by the last run could not be answered (%s)", exc)
            await self.bot.generation.pending.settle(left.interaction)

    async def withdraw(self, interaction: discord.Interaction, error: BaseException) -> None:
        """Remove the public "thinking…" message and explain privately: a refusal makes no card."""
        try:
            await interaction.delete_original_response()
        except discord.HTTPException as exc:
            log.info("interaction %s: thinking message not removed (%s)", interaction.id, exc)
        await reply_error(interaction, error)
