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
from bot.generation import Options, Order
from bot.i18n import Text, _, join, render
from bot.images import StoredImage
from bot.jobs import Job
from bot.jobs.formats import result_range
from bot.jobs.models import Delivery
from bot.prompts import clean_prompt
from cogs import members
from cogs.cards import can_post_results, can_thread
from cogs.errors import ANSWERS_ITSELF, reply, reply_error
from cogs.locales import guild_locale_of, locale_of, menu_name
from cogs.members import is_moderator
from cogs.places import check_place, declare_places
from cogs.views import NO_MENTIONS

if TYPE_CHECKING:
    from cogs.app import SeedreamBot

log = logging.getLogger(__name__)
MENU_NAME = "Edit with Seedream"
Candidate = StoredImage | str


class DismissButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"sd:1:dismiss:(?P<user>\d{1,20})"):
    """Lets the member a notice is for (or a moderator) delete it, so notices never clutter a channel."""

    def __init__(self, user_id: int, label: str = "Dismiss") -> None:
        super().__init__(
            discord.ui.Button(label=label, style=discord.ButtonStyle.secondary, custom_id=f"sd:1:dismiss:{user_id}")
        )
        self.user_id = user_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> DismissButton:
        return cls(int(match["user"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        if interaction.user.id != self.user_id and not is_moderator(interaction):
            await reply(interaction, _("Only {member} or a moderator can dismiss this.", member=f"<@{self.user_id}>"))
            return
        await interaction.response.defer()
        if interaction.message is not None:
            with contextlib.suppress(discord.NotFound):
                await interaction.message.delete()


def dismiss_view(user_id: int, locale: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(DismissButton(user_id, _("Dismiss").render(locale)))
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
    def __init__(self, cog: Edits, message: discord.Message, locale: str) -> None:
        """Written in the member's ``locale``; the inputs' custom ids are the same in every language."""
        super().__init__(title=menu_name(locale, MENU_NAME))
        self.cog, self.message = cog, message
        self.instruction: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=_("What should change?").render(locale),
            style=discord.TextStyle.paragraph,
            max_length=1000,
            custom_id="instruction",
        )
        self.aspect: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=_("Aspect ratio (optional)").render(locale),
            placeholder=_("auto or 16:9").render(locale),
            required=False,
            max_length=10,
            custom_id="aspect",
        )
        self.count: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=_("How many images (optional)").render(locale),
            placeholder="1",
            required=False,
            max_length=2,
            custom_id="count",
        )
        self.upload: discord.ui.Label[Any] = discord.ui.Label(
            text=_("Your own image to edit (optional)").render(locale),
            description=_("It comes first; the message's images join it as references.").render(locale),
            component=discord.ui.FileUpload(custom_id="upload", required=False, max_values=1),
        )
        for item in (self.instruction, self.aspect, self.count, self.upload):
            self.add_item(item)

    @property
    def uploaded(self) -> list[core.AttachmentFacts]:
        """The file the member uploaded in the modal (Discord hosts it like any attachment)."""
        upload = self.upload.component
        files = upload.values if isinstance(upload, discord.ui.FileUpload) else []
        return [core.AttachmentFacts(a.url, a.filename, a.content_type, a.size) for a in files]

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self.cog.edit_from_menu(interaction, self)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await reply_error(interaction, error)


class Edits(commands.Cog):
    def __init__(self, bot: SeedreamBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(
            name=MENU_NAME, callback=self.edit_with_seedream, extras={ANSWERS_ITSELF: True}
        )
        declare_places(self.menu, bot.settings.discord.guilds_only)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)
        self.bot.add_dynamic_items(DismissButton)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)
        self.bot.remove_dynamic_items(DismissButton)

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
            await self._notice(message, self._help(message.guild, gathered.skipped, guild_locale_of(message.guild)))
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
        ctx = members.of_message(message)
        return not allowed or ctx.is_moderator or bool(set(ctx.channels) & set(allowed))

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
        """Queue the edit (quota reserved); its card is one reply to the member's message, and the results go
        into a thread from that card. What was left out is said on the first result."""
        generation = self.bot.generation
        provider = generation.provider_for_edit(gathered.parent)
        references, notes = await self._prepare_references(gathered, provider, count=1)
        if not references:
            await self._notice(message, join(notes, "\n"))
            return
        locale = guild_locale_of(message.guild)
        channel = message.channel
        perms = channel.permissions_for(message.guild.me) if message.guild is not None else None
        delivery = Delivery(
            channel_id=channel.id,
            card_channel_id=channel.id,
            reply_to_message_id=message.id,
            threads_allowed=perms is not None and can_thread(channel, perms),
            locale=locale,
        )
        if perms is not None and not can_post_results(channel, perms):
            raise NotAllowed(_("I can't post pictures in this channel; a moderator can give me Attach Files here."))
        request = generation.request(provider, instruction, references)
        shown = [str(render(note, locale)) for note in notes]  # kept with the job: in the card's language
        order = Order("edit", members.of_message(message), request, provider, delivery, gathered.parent, shown)
        job, position = await generation.submit(order)
        try:
            await self.bot.sink.open_reply_card(job, message, position)
        except discord.HTTPException as exc:
            log.info("job %s: cannot answer in channel %s (%s)", job.id, channel.id, exc)
            await self.bot.engine.cancel(job.id)
            raise NotAllowed(_("I can't post here, so nothing was queued and nothing was charged.")) from None

    async def _notice(self, message: discord.Message, text: str | Text) -> None:
        """A reply to a member's message (no interaction, so no member locale): in the server's language."""
        locale = guild_locale_of(message.guild)
        shown = str(render(text, locale))
        try:
            await message.reply(
                shown[:2000],
                mention_author=False,
                allowed_mentions=NO_MENTIONS,
                view=dismiss_view(message.author.id, locale),
            )
        except discord.HTTPException as exc:
            log.info("could not answer message %s: %s", message.id, exc)

    async def _answer_error(self, message: discord.Message, error: Exception) -> None:
        """The same words /imagine would say, as a short reply (a plain message has no ephemeral answer)."""
        if isinstance(error, SeedreamError):
            await self._notice(message, error.text)
            return
        incident = secrets.token_hex(4)
        log.error("incident %s in message %s by user %s", incident, message.id, message.author.id, exc_info=error)
        await self._notice(
            message,
            _("Sorry, something went wrong on our side (incident {incident}). Please try again.", incident=incident),
        )

    def _name(self, guild: discord.Guild | None) -> str:
        return guild.me.display_name if guild is not None else getattr(self.bot.user, "name", "Seedream")

    def _help(self, guild: discord.Guild | None, skipped: list[core.Skipped], locale: str) -> Text:
        intent = self.bot.settings.discord.message_content_intent
        text = core.help_text(self._name(guild), content_intent=intent, menu=menu_name(locale, MENU_NAME))
        return join([core.skipped_notice(skipped), text], "\n\n") if skipped else text

    # -- the message command ------------------------------------------------------------------------
    async def edit_with_seedream(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Ask for the instruction in a modal; answer at once (no modal) when the message shows no image.

        A modal must be the first answer, so this is decided from the message alone, without a lookup."""
        check_place(interaction, self.bot.settings)
        ours = self.bot.user is not None and message.author.id == self.bot.user.id and bool(message.attachments)
        pick = core.pick_images(
            [facts_of(message)],
            is_allowed=self.bot.services.fetcher.is_allowed,
            max_bytes=self.bot.settings.generation.max_reference_bytes,
        )
        if not (ours or pick.urls):
            await reply(interaction, self._help(interaction.guild, pick.skipped, locale_of(interaction)))
            return
        await interaction.response.send_modal(EditRequestModal(self, message, locale_of(interaction)))

    async def edit_from_menu(self, interaction: discord.Interaction, modal: EditRequestModal) -> None:
        """The modal's answer: the card for the edit, or a private refusal."""
        generation = self.bot.generation
        text = clean_prompt(modal.instruction.value)
        if not text:
            raise InvalidRequest(_("Please say what should change: the instruction is empty."))
        uploaded = modal.uploaded
        generation.check_attachments(uploaded)  # a wrong type or size is refused before the card

        async def build(delivery: Delivery) -> Order:
            gathered = await self._gather(modal.message, None)
            if uploaded:  # the member's own image is the one to edit; the message's images follow it
                gathered.candidates = [*await generation.download(uploaded), *gathered.candidates]
            provider = generation.provider_for_edit(gathered.parent)
            max_count = self.bot.services.providers.get(provider).capabilities.max_count
            count = core.parse_count(modal.count.value, max_count)
            references, notes = await self._prepare_references(gathered, provider, count=count)
            if not references:
                raise ImageRejected(join(notes, "\n") if notes else _("That message has no image I can use."))
            options = Options(aspect=modal.aspect.value.strip() or None, count=count)
            request = generation.request(provider, text, references, options)
            member = members.of_interaction(interaction)
            shown = [str(render(note, locale_of(interaction))) for note in notes]  # kept with the job
            return Order("edit", member, request, provider, delivery, gathered.parent, shown)

        await self.bot.starter.start(interaction, build)

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
        shown = [job.results[i] for i in result_range(footer, len(job.results))]
        if not all(image.path.exists() for image in shown):
            return job, []  # files past retention: download what the message shows instead
        return job, list(shown)

    async def _prepare_references(
        self, gathered: Gathered, provider: str | None, *, count: int
    ) -> tuple[list[StoredImage], list[Text]]:
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
                skipped.append(core.Skipped(core.file_label(url), result.text))
            elif isinstance(result, BaseException):
                raise result
            else:
                by_url[url] = result
        references = [by_url[c] if isinstance(c, str) else c for c in kept if not isinstance(c, str) or c in by_url]
        notes: list[Text] = ([cap_note] if cap_note else []) + ([core.skipped_notice(skipped)] if skipped else [])
        return references, notes


async def setup(bot: SeedreamBot) -> None:
    await bot.add_cog(Edits(bot))
