"""Edits asked for the way members talk: a reply or a mention with images, and the "Edit with Seedream" menu.

Thin adapter: ``bot.edits`` decides who is addressed and which images count; the Imagine cog's rules
(defaults, quota) and the job engine do the rest. A plain message has no ephemeral answer, so notices
and errors are short replies with a Dismiss button.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import edits as core
from bot.errors import ImageRejected, InvalidRequest, NotAllowed, SeedreamError
from bot.jobs import Job
from bot.moderation import MemberContext
from bot.prompts import clean_prompt
from bot.providers.base import GenerationRequest, StoredImage
from cogs.errors import reply, reply_error
from cogs.imagine import Imagine, is_moderator
from cogs.views import NO_MENTIONS

if TYPE_CHECKING:
    from cogs.app import SeedreamBot

log = logging.getLogger(__name__)
MENU_NAME = "Edit with Seedream"
Candidate = StoredImage | str


class DismissButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"sd:1:dismiss:(?P<user>\d{1,20})"):
    """Lets the member a notice is for (or a moderator) delete it, so notices never clutter a channel."""

    def __init__(self, user_id: int) -> None:
        super().__init__(
            discord.ui.Button(label="Dismiss", style=discord.ButtonStyle.secondary, custom_id=f"sd:1:dismiss:{user_id}")
        )
        self.user_id = user_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> DismissButton:
        return cls(int(match["user"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        if interaction.user.id != self.user_id and not is_moderator(interaction):
            await reply(interaction, f"Only <@{self.user_id}> or a moderator can dismiss this.")
            return
        await interaction.response.defer()
        if interaction.message is not None:
            with contextlib.suppress(discord.NotFound):
                await interaction.message.delete()


def dismiss_view(user_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(DismissButton(user_id))
    return view


def facts_of(message: discord.Message) -> core.MessageFacts:
    """The plain data ``bot.edits`` needs: text, files, and embed images (a thumbnail only for image links)."""
    embed_images: list[tuple[str, ...]] = []
    for embed in message.embeds:
        media = [embed.image] + ([embed.thumbnail] if embed.type in ("image", "gifv") else [])
        for item in media:
            urls = tuple(u for u in (item.url, item.proxy_url) if u)
            if urls:
                embed_images.append(urls)
    return core.MessageFacts(
        content=message.content,
        attachments=tuple(core.AttachmentFacts(a.url, a.filename, a.content_type, a.size) for a in message.attachments),
        embed_images=tuple(embed_images),
    )


@dataclass
class Gathered:
    """Reference candidates in order (our stored results first, then URLs to download) and what was skipped."""

    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[core.Skipped] = field(default_factory=list)
    parent: Job | None = None


class EditRequestModal(discord.ui.Modal, title=MENU_NAME):
    instruction: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="What should change?", style=discord.TextStyle.paragraph, max_length=1000, custom_id="instruction"
    )
    aspect: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Aspect ratio (optional)", placeholder="auto or 16:9", required=False, max_length=10, custom_id="aspect"
    )
    count: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="How many images (optional)", placeholder="1", required=False, max_length=2, custom_id="count"
    )

    def __init__(self, cog: Edits, gathered: Gathered) -> None:
        super().__init__()
        self.cog, self.gathered = cog, gathered

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.cog.edit_from_menu(interaction, self)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await reply_error(interaction, error)


class Edits(commands.Cog):
    def __init__(self, bot: SeedreamBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name=MENU_NAME, callback=self.edit_with_seedream)
        self.menu.guild_only = bot.settings.discord.guilds_only

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)
        self.bot.add_dynamic_items(DismissButton)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)
        self.bot.remove_dynamic_items(DismissButton)

    @property
    def imagine(self) -> Imagine:
        cog = self.bot.get_cog("Imagine")
        if not isinstance(cog, Imagine):
            raise NotAllowed("Editing is not available right now; please try again soon.")
        return cog

    # -- the message path ---------------------------------------------------------------------------
    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        try:
            await self._on_message(message)
        except Exception as exc:
            await self._answer_error(message, exc)

    @commands.Cog.listener()
    async def on_command_error(self, ctx: commands.Context[Any], error: commands.CommandError) -> None:
        """A mention that is an edit request is not a prefix command: do not log it as a failed one."""
        if not isinstance(error, commands.CommandNotFound):
            log.error("prefix command %s failed", ctx.command, exc_info=error)

    async def _on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if me is None or message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        mention_ids = [me.id]
        if message.guild is not None and message.guild.self_role is not None:
            mention_ids.append(message.guild.self_role.id)  # typing "@Seedream" often picks the bot's role
        text_mention = core.mentions_in_text(message.content, mention_ids)
        pinged = any(user.id == me.id for user in message.mentions)
        intent = self.bot.settings.discord.message_content_intent
        if not (text_mention or pinged or intent) or message.author.bot:
            return  # the common case, decided without any lookup
        replied = await self._replied(message)
        trigger = core.trigger_of(
            from_bot_or_webhook=message.author.bot or message.webhook_id is not None,
            text_mentions_bot=text_mention,
            pinged_by_reply=pinged,
            replies_to_our_result=replied is not None and replied.author.id == me.id and bool(replied.attachments),
            content_intent=intent,
        )
        if trigger is core.Trigger.IGNORE or not await self._works_in(message):
            return
        instruction = core.instruction_from(message.content, mention_ids)
        if not instruction and trigger is core.Trigger.REPLY_TO_RESULT:
            return  # nothing to read: an image-only reply, or content Discord did not give us
        gathered = await self._gather(replied, message)
        if not gathered.candidates:
            await self._notice(message, self._help(message.guild, gathered.skipped))
        elif not instruction:
            await self._notice(message, core.empty_instruction_text(self._name(message.guild)))
        else:
            await self._start_from_message(message, instruction, gathered)

    async def _works_in(self, message: discord.Message) -> bool:
        """Only where the bot may work: servers (unless DMs are allowed) it is enabled on, channels it can post
        in and that moderators opened to it. Elsewhere it stays silent rather than answer every mention."""
        guild, channel = message.guild, message.channel
        if guild is None:
            return not self.bot.settings.discord.guilds_only
        perms = channel.permissions_for(guild.me)
        can_send = perms.send_messages_in_threads if isinstance(channel, discord.Thread) else perms.send_messages
        if not (perms.view_channel and can_send):
            return False
        policy = self.bot.services.policy
        try:
            policy.ensure_guild_allowed(guild.id)
        except NotAllowed:
            return False
        allowed = await policy.store.allowed_channels(guild.id)
        ctx = self._member_context(message)
        return not allowed or ctx.is_moderator or bool(set(ctx.channels) & set(allowed))

    def _member_context(self, message: discord.Message) -> MemberContext:
        author = message.author
        perms = message.channel.permissions_for(author) if isinstance(author, discord.Member) else None
        is_mod = bool(perms and (perms.manage_guild or perms.manage_messages or perms.administrator))
        return self.imagine.member_context(message.guild.id if message.guild else None, author, message.channel, is_mod)

    async def _replied(self, message: discord.Message) -> discord.Message | None:
        """The message replied to (not a forward), from the event itself when Discord included it."""
        ref = message.reference
        if ref is None or ref.message_id is None or ref.type is discord.MessageReferenceType.forward:
            return None
        if isinstance(ref.resolved, discord.Message):
            return ref.resolved
        if ref.channel_id != message.channel.id:
            return None
        try:
            return await message.channel.fetch_message(ref.message_id)
        except discord.HTTPException:
            return None

    async def _start_from_message(self, message: discord.Message, instruction: str, gathered: Gathered) -> None:
        """Queue the edit (quota reserved), open a thread off the member's message, say what was left out."""
        provider = self._provider_for(gathered.parent)
        references, notes = await self._prepare_references(gathered, provider, count=1)
        if not references:
            await self._notice(message, "\n".join(notes))
            return
        request = self._request(provider, instruction, references)
        decision = await self.imagine.admit(self._member_context(message), request, provider)
        engine = self.bot.engine
        job, position = await engine.enqueue(
            kind="edit",
            requester_id=message.author.id,
            guild_id=message.guild.id if message.guild else None,
            channel_id=message.channel.id,
            provider_name=decision.provider_name,
            request=request,
            quota_limit=decision.quota_limit,
            delivery={"channel_id": message.channel.id, "thread_from_message_id": message.id},
            parent_job_id=gathered.parent.id if gathered.parent else None,
        )
        try:
            await self.bot.sink.prepare(job, position)
        except discord.HTTPException as exc:
            log.info("job %s: cannot post in channel %s (%s)", job.id, message.channel.id, exc)
            await engine.cancel(job.id)
            raise NotAllowed("I can't post here, so nothing was queued and nothing was charged.") from None
        if notes:
            target = self.bot.get_partial_messageable(int(job.delivery.get("target_id") or message.channel.id))
            try:
                await target.send("\n".join(notes), allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as exc:
                log.info("job %s: notes not posted (%s)", job.id, exc)

    async def _notice(self, message: discord.Message, text: str) -> None:
        try:
            await message.reply(
                text[:2000], mention_author=False, allowed_mentions=NO_MENTIONS, view=dismiss_view(message.author.id)
            )
        except discord.HTTPException as exc:
            log.info("could not answer message %s: %s", message.id, exc)

    async def _answer_error(self, message: discord.Message, error: Exception) -> None:
        """The same words /imagine would say, as a short reply (a plain message has no ephemeral answer)."""
        if isinstance(error, SeedreamError):
            await self._notice(message, error.user_message)
            return
        incident = secrets.token_hex(4)
        log.error("incident %s in message %s by user %s", incident, message.id, message.author.id, exc_info=error)
        await self._notice(message, f"Sorry, something went wrong on our side (incident {incident}). Please try again.")

    def _name(self, guild: discord.Guild | None) -> str:
        return guild.me.display_name if guild is not None else getattr(self.bot.user, "name", "Seedream")

    def _help(self, guild: discord.Guild | None, skipped: list[core.Skipped]) -> str:
        text = core.help_text(self._name(guild), content_intent=self.bot.settings.discord.message_content_intent)
        return f"{core.skipped_notice(skipped)}\n\n{text}" if skipped else text

    # -- the message command ------------------------------------------------------------------------
    async def edit_with_seedream(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Ask for the instruction in a modal; answer at once (no modal) when the message has no image."""
        self.imagine._check_place(interaction)
        gathered = await self._gather(message, None)
        if not gathered.candidates:
            await reply(interaction, self._help(interaction.guild, gathered.skipped))
            return
        await interaction.response.send_modal(EditRequestModal(self, gathered))

    async def edit_from_menu(self, interaction: discord.Interaction, modal: EditRequestModal) -> None:
        text = clean_prompt(modal.instruction.value)
        if not text:
            raise InvalidRequest("Please say what should change: the instruction is empty.")
        gathered, provider = modal.gathered, self._provider_for(modal.gathered.parent)
        count = core.parse_count(modal.count.value, self.bot.services.providers.get(provider).capabilities.max_count)
        references, notes = await self._prepare_references(gathered, provider, count=count)
        if not references:
            raise ImageRejected("\n".join(notes))
        request = self._request(provider, text, references, modal.aspect.value.strip() or None, count)
        await self.imagine.start_job(interaction, "edit", request, provider, gathered.parent)
        if notes:
            await reply(interaction, "\n".join(notes))

    # -- shared: images and the request -------------------------------------------------------------
    async def _gather(self, replied: discord.Message | None, own: discord.Message | None) -> Gathered:
        """Our stored results for a reply to one of them; otherwise the allow-listed images of both messages."""
        gathered = Gathered()
        sources: list[core.MessageFacts] = []
        if replied is not None:
            gathered.parent, gathered.candidates = await self._our_results(replied)
            if not gathered.candidates:
                sources.append(facts_of(replied))
        own_facts = facts_of(own) if own is not None else None
        if own_facts is not None:
            sources.append(own_facts)
        pick = core.pick_images(
            sources,
            is_allowed=self.bot.services.fetcher.is_allowed,
            max_bytes=self.bot.settings.generation.max_reference_bytes,
            text_links_of=own_facts,
        )
        gathered.candidates += pick.urls
        gathered.skipped = pick.skipped
        return gathered

    async def _our_results(self, message: discord.Message) -> tuple[Job | None, list[Candidate]]:
        """The stored results a result message of ours shows (no download; a provider id stays reusable)."""
        if self.bot.user is None or message.author.id != self.bot.user.id:
            return None, []
        job = await self.bot.engine.jobs.find_by_message(message.id)
        if job is None or not job.results:
            return None, []
        footer = next((e.footer.text for e in message.embeds if e.footer.text), "")
        shown = [job.results[i] for i in core.result_range(footer, len(job.results))]
        if not all(image.path.exists() for image in shown):
            return job, []  # files past retention: download what the message shows instead
        return job, list(shown)

    def _provider_for(self, parent: Job | None) -> str | None:
        """An edit of our result stays on the provider that made it, while that provider is configured."""
        if parent is not None and parent.provider in self.bot.services.providers.names():
            return parent.provider
        return None

    async def _prepare_references(
        self, gathered: Gathered, provider: str | None, *, count: int
    ) -> tuple[list[StoredImage], list[str]]:
        """Keep what the provider takes, download the rest at once (signed URLs expire); notes for the member."""
        chosen = self.bot.services.providers.get(provider)
        kept, cap_note = core.cap_references(
            gathered.candidates, core.reference_limit(chosen.capabilities, count), chosen.name
        )
        urls = [c for c in kept if isinstance(c, str)]
        fetched = await asyncio.gather(*(self.bot.services.fetcher.fetch(u) for u in urls), return_exceptions=True)
        by_url: dict[str, StoredImage] = {}
        skipped = list(gathered.skipped)
        for url, result in zip(urls, fetched, strict=True):
            if isinstance(result, ImageRejected):
                skipped.append(core.Skipped(core.file_label(url), result.user_message))
            elif isinstance(result, BaseException):
                raise result
            else:
                by_url[url] = result
        references = [by_url[c] if isinstance(c, str) else c for c in kept if not isinstance(c, str) or c in by_url]
        notes = ([cap_note] if cap_note else []) + ([core.skipped_notice(skipped)] if skipped else [])
        return references, notes

    def _request(
        self,
        provider: str | None,
        prompt: str,
        references: list[StoredImage],
        aspect: str | None = None,
        count: int = 1,
    ) -> GenerationRequest:
        """Same defaults as /imagine: aspect follows the first image where the provider can, default size."""
        imagine = self.imagine
        auto = "auto" if imagine._supports_auto(provider) else self.bot.settings.generation.default_aspect
        resolution = imagine._default_resolution(provider)
        return GenerationRequest(
            prompt=prompt, aspect_ratio=aspect or auto, resolution=resolution, count=count, references=references
        )


async def setup(bot: SeedreamBot) -> None:
    await bot.add_cog(Edits(bot))
