"""/imagine, /jobs and the job buttons: Discord in, core calls out."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import Choice
from discord.ext import commands

from bot.edits import AttachmentFacts
from bot.errors import InvalidRequest, NotAllowed
from bot.generation import Options, Order
from bot.i18n import _, _p
from bot.jobs import Job, JobState
from bot.jobs.formats import is_about, part_range
from bot.jobs.models import Delivery
from bot.prompts import clean_prompt
from bot.providers.base import Capabilities
from cogs import members
from cogs.edits import MENU_NAME
from cogs.errors import ANSWERS_ITSELF, reply, reply_error
from cogs.locales import locale_of, menu_name, slash
from cogs.members import is_moderator
from cogs.places import check_place, declare_places, scope_guild_id
from cogs.views import JobButton

if TYPE_CHECKING:
    from cogs.app import SeedreamBot

log = logging.getLogger(__name__)
MAX_ATTACHMENTS = 3
#: How /jobs names each state.
JOB_STATES = {
    JobState.QUEUED: _p("job state", "queued"),
    JobState.SUBMITTED: _p("job state", "submitted"),
    JobState.DOWNLOADED: _p("job state", "downloaded"),
    JobState.POSTED: _p("job state", "posted"),
    JobState.DONE: _p("job state", "done"),
    JobState.FAILED: _p("job state", "failed"),
    JobState.CANCELLED: _p("job state", "cancelled"),
}
FOLLOWUPS_KEPT = _("Discord lets me remove pictures posted here for 15 minutes only; please delete them yourself.")


def jump_url(guild_id: int | None, channel_id: int, message_id: int | None = None) -> str:
    base = f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}"
    return f"{base}/{message_id}" if message_id else base


def _union(caps: list[Capabilities], field: str) -> list[str]:
    seen: dict[str, None] = {}
    for cap in caps:
        for value in getattr(cap, field):
            seen.setdefault(value, None)
    return list(seen)


def build_imagine_command(cog: Imagine, caps: list[Capabilities]) -> app_commands.Command[Any, Any, Any]:
    """/imagine with choices built from what the configured providers support; ``provider`` is offered as
    the models this server allows, each with a few words on what it is good at (autocomplete)."""

    async def models(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
        return await cog.model_choices(interaction, current)

    async def imagine(
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 4000],
        image1: discord.Attachment | None = None,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        aspect: str | None = None,
        resolution: str | None = None,
        count: int | None = None,
        seed: app_commands.Range[int, 0, 2147483647] | None = None,
        style: str | None = None,
        enhance: bool | None = None,
        provider: str | None = None,
    ) -> None:
        attachments = [a for a in (image1, image2, image3) if a is not None]
        await cog.imagine(
            interaction, prompt, attachments, aspect, resolution, count, seed, style, bool(enhance), provider
        )

    choices: dict[str, list[Choice[Any]]] = {
        "aspect": [Choice(name=a, value=a) for a in _union(caps, "aspect_ratios")][:25],
        "resolution": [Choice(name=r, value=r) for r in _union(caps, "resolutions")][:25],
        "count": [Choice(name=str(n), value=n) for n in range(1, max(c.max_count for c in caps) + 1)][:25],
    }
    styles = _union(caps, "styles")
    if styles:
        choices["style"] = [Choice(name=s, value=s) for s in styles][:25]
    described = app_commands.describe(
        prompt="What to draw (or what to change in the images you attach)",
        image1="An image to edit or use as a reference",
        image2="Another reference image",
        image3="Another reference image",
        aspect="Shape of the picture (auto follows your first image)",
        resolution="Size tier",
        count="How many images",
        seed="Same seed + same prompt = same picture",
        style="A preset style (where the provider has them)",
        enhance="Let the provider improve your prompt",
        provider="Which Seedream model to use (each says what it is best at)",
    )(imagine)
    described = app_commands.choices(**choices)(described)
    described = app_commands.autocomplete(provider=models)(described)
    command: app_commands.Command[Any, Any, Any] = app_commands.Command(
        name="imagine", description="Make pictures with Seedream", callback=described, extras={ANSWERS_ITSELF: True}
    )
    declare_places(command, cog.bot.settings.discord.guilds_only)
    return command


class EditModal(discord.ui.Modal, title=MENU_NAME):
    def __init__(self, cog: Imagine, button: JobButton, shown: int | None, locale: str) -> None:
        """``shown``: how many images the pressed message's job has (from its footer), None if unknown;
        ``locale``: the member's language, which the modal is written in."""
        super().__init__(title=menu_name(locale, MENU_NAME))
        self.instruction: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label=_("What should change?").render(locale), style=discord.TextStyle.paragraph, max_length=1000
        )
        self.add_item(self.instruction)
        self.cog, self.button = cog, button
        self.index: int | None = button.index if shown == 1 else None
        self.image_number: discord.ui.TextInput[Any] | None = None
        if self.index is None:
            which = _("Which image (1–{count})?", count=shown) if shown else _("Which image?")
            label = which.render(locale)
            self.image_number = discord.ui.TextInput(label=label, default="1", max_length=2, required=False)
            self.add_item(self.image_number)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        async def build(delivery: Delivery) -> Order:
            job = await self.cog.pressed_job(interaction, self.button)
            index = self.index
            if index is None:
                raw = (self.image_number.value if self.image_number else "") or "1"
                if not raw.isdigit() or not 1 <= int(raw) <= len(job.results):
                    raise InvalidRequest(_("Please give an image number from 1 to {count}.", count=len(job.results)))
                index = int(raw) - 1
            request = self.cog.bot.generation.child_request(job, "edit", prompt=self.instruction.value, reference=index)
            return Order("edit", members.of_interaction(interaction), request, job.provider, delivery, parent=job)

        await self.cog.bot.starter.start(interaction, build)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await reply_error(interaction, error)


class Imagine(commands.Cog):
    def __init__(self, bot: SeedreamBot) -> None:
        self.bot = bot
        self.imagine_command = build_imagine_command(self, [p.capabilities for p in bot.services.providers])
        declare_places(self.jobs, bot.settings.discord.guilds_only)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.imagine_command)
        self.bot.add_dynamic_items(JobButton)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command("imagine")
        self.bot.remove_dynamic_items(JobButton)

    # -- starting jobs ------------------------------------------------------------------------------
    def check_place(self, interaction: discord.Interaction) -> None:
        check_place(interaction, self.bot.settings)

    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: str,
        attachments: list[discord.Attachment],
        aspect: str | None,
        resolution: str | None,
        count: int | None,
        seed: int | None,
        style: str | None,
        enhance: bool,
        provider: str | None,
    ) -> None:
        """Refusals that need no lookup are answered before anything else; the rest after the card's defer."""
        self.check_place(interaction)
        generation = self.bot.generation
        facts = [AttachmentFacts(a.url, a.filename, a.content_type, a.size) for a in attachments]
        generation.check_attachments(facts)
        if not clean_prompt(prompt):
            raise InvalidRequest(_("Please describe the picture you want: the prompt is empty."))
        options = Options(aspect, resolution, count, seed, style, enhance)

        async def build(delivery: Delivery) -> Order:
            references = await generation.download(facts)
            request = generation.request(provider, prompt, references, options)
            return Order("imagine", members.of_interaction(interaction), request, provider, delivery)

        await self.bot.starter.start(interaction, build)

    async def model_choices(self, interaction: discord.Interaction, current: str) -> list[Choice[str]]:
        """The models on offer here (a server may allow only some), matching what the member typed."""
        allowed, here = None, scope_guild_id(interaction)
        if here is not None:
            allowed = (await self.bot.services.policy.store.settings(here)).allowed_providers
        typed, locale = current.casefold(), locale_of(interaction)
        named = [(choice.choice_name(locale=locale), choice) for choice in self.bot.services.providers.models(allowed)]
        return [Choice(name=name, value=choice.provider) for name, choice in named if typed in name.casefold()][:25]

    # -- buttons ------------------------------------------------------------------------------------
    async def on_job_button(self, interaction: discord.Interaction, button: JobButton) -> None:
        try:
            await self._on_job_button(interaction, button)
        except Exception as exc:  # DynamicItem errors never reach the tree's handler
            await reply_error(interaction, exc)

    async def pressed_job(self, interaction: discord.Interaction, button: JobButton) -> Job:
        """The job a button belongs to, if the press is genuine: one of our messages about that job, here."""
        job = await self.bot.engine.jobs.get(button.job_id)
        here = scope_guild_id(interaction)
        if job is None or job.guild_id != here or not self._shows_job(interaction.message, job.id):
            raise NotAllowed(_("This button does not belong to a job here."))
        return job

    async def _on_job_button(self, interaction: discord.Interaction, button: JobButton) -> None:
        self.check_place(interaction)
        action = button.action
        if action == "edit":  # a modal must be the first answer: decided from the pressed message alone
            shown = self._images_of(interaction.message)
            await interaction.response.send_modal(EditModal(self, button, shown, locale_of(interaction)))
            return
        if action in ("reroll", "vary"):

            async def build(delivery: Delivery) -> Order:
                job = await self.pressed_job(interaction, button)
                reference = button.index if action == "vary" else None
                request = self.bot.generation.child_request(job, action, reference=reference)
                return Order(action, members.of_interaction(interaction), request, job.provider, delivery, parent=job)

            await self.bot.starter.start(interaction, build)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.bot.ack_first.after_ack(interaction)
        job = await self.pressed_job(interaction, button)
        if interaction.user.id != job.requester_id and not is_moderator(interaction):
            requester = f"<@{job.requester_id}>"
            if action == "cancel":
                raise NotAllowed(_("Only {requester} or a moderator can cancel this job.", requester=requester))
            raise NotAllowed(_("Only {requester} or a moderator can delete this job.", requester=requester))
        if action == "cancel":
            await self.bot.engine.cancel(job.id)
            await reply(interaction, _("Cancelled; nothing was charged for the images not made."))
        elif action == "delete":
            await self._delete_results(job)
            await reply(interaction, _("Deleted."))

    @staticmethod
    def _images_of(message: discord.Message | None) -> int | None:
        """How many images the job behind a result message has, read from its footer."""
        for embed in message.embeds if message is not None else []:
            parsed = part_range(embed.footer.text or "")
            if parsed is not None:
                return parsed[3]
        return None

    def _shows_job(self, message: discord.Message | None, job_id: str) -> bool:
        """A press counts only on one of our own messages about that job (a crafted custom_id fails here)."""
        if message is None or self.bot.user is None or message.author.id != self.bot.user.id:
            return False
        return any(is_about(embed.footer.text or "", job_id) for embed in message.embeds)

    async def _delete_results(self, job: Job) -> None:
        """A member's own install posted through the interaction (deletable with its token while it lives)
        and perhaps their DM; a server install in the job's thread or channel."""
        delivery = job.delivery
        webhook = None
        if delivery.via_interaction and delivery.interaction and self.bot.sink.personal.token_usable(job):
            webhook = self.bot.sink.followup(delivery.interaction)
        where = delivery.dm_channel_id if delivery.via_interaction else delivery.results_channel
        channel = self.bot.get_partial_messageable(int(where or job.channel_id or 0))
        for message_id in job.posted_message_ids:
            try:
                if webhook is not None:
                    try:
                        await webhook.delete_message(message_id)
                        continue
                    except discord.NotFound:
                        pass  # not a follow-up: it went by DM
                await channel.get_partial_message(message_id).delete()
            except discord.NotFound:
                pass
            except discord.Forbidden:
                raise NotAllowed(FOLLOWUPS_KEPT) from None

    # -- /jobs --------------------------------------------------------------------------------------
    @app_commands.command(name="jobs", description="Your recent pictures and where they are")
    async def jobs(self, interaction: discord.Interaction) -> None:
        recent = await self.bot.engine.jobs.recent_for(interaction.user.id, scope_guild_id(interaction), limit=10)
        if not recent:
            await reply(
                interaction,
                _("You have no jobs here yet. Try `{imagine}`!", imagine=slash(locale_of(interaction), "imagine")),
            )
            return
        lines = []
        for job in recent:
            delivery = job.delivery
            if job.posted_message_ids:
                link = jump_url(job.guild_id, int(delivery.results_channel or 0), job.posted_message_ids[0])
            else:
                link = jump_url(
                    job.guild_id, int(delivery.card_channel or job.channel_id or 0), delivery.card_message_id
                )
            state = JOB_STATES[job.state].render(locale_of(interaction))
            prompt = discord.utils.escape_markdown(job.request.prompt[:60])
            lines.append(f"`{job.id}` {state}: {prompt} ({link})")
        await reply(interaction, "\n".join(lines))


async def setup(bot: SeedreamBot) -> None:
    await bot.add_cog(Imagine(bot))
