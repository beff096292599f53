"""/imagine, /jobs and the job buttons: Discord in, core calls out."""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import Choice
from discord.ext import commands

from bot.errors import InvalidRequest, NotAllowed, QuotaExceeded
from bot.fetch import fetch_all
from bot.jobs import Job, JobState
from bot.moderation import Decision, MemberContext
from bot.prompts import clean_prompt
from bot.providers.base import Capabilities, GenerationRequest, StoredImage
from cogs.errors import reply, reply_error
from cogs.views import NO_MENTIONS, JobButton

if TYPE_CHECKING:
    from cogs.app import SeedreamBot

log = logging.getLogger(__name__)
MAX_ATTACHMENTS = 3


def jump_url(guild_id: int | None, channel_id: int, message_id: int | None = None) -> str:
    base = f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}"
    return f"{base}/{message_id}" if message_id else base


def is_moderator(interaction: discord.Interaction) -> bool:
    perms = interaction.permissions
    return bool(perms.manage_guild or perms.manage_messages or perms.administrator)


def _union(caps: list[Capabilities], field: str) -> list[str]:
    seen: dict[str, None] = {}
    for cap in caps:
        for value in getattr(cap, field):
            seen.setdefault(value, None)
    return list(seen)


def build_imagine_command(
    cog: Imagine, caps: list[Capabilities], providers: list[str]
) -> app_commands.Command[Any, Any, Any]:
    """/imagine with choices built from what the configured providers support."""

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
        "provider": [Choice(name=p, value=p) for p in providers][:25],
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
        provider="Which Seedream service to use",
    )(imagine)
    described = app_commands.choices(**choices)(described)
    command: app_commands.Command[Any, Any, Any] = app_commands.Command(
        name="imagine", description="Make pictures with Seedream", callback=described
    )
    command.guild_only = cog.bot.settings.discord.guilds_only
    return command


class EditModal(discord.ui.Modal, title="Edit with Seedream"):
    instruction: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="What should change?", style=discord.TextStyle.paragraph, max_length=1000
    )

    def __init__(self, cog: Imagine, job: Job, index: int | None) -> None:
        super().__init__()
        self.cog, self.job, self.index = cog, job, index
        self.image_number: discord.ui.TextInput[Any] | None = None
        if index is None:
            self.image_number = discord.ui.TextInput(
                label=f"Which image (1–{len(job.results)})?", default="1", max_length=2, required=False
            )
            self.add_item(self.image_number)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        index = self.index
        if index is None:
            raw = (self.image_number.value if self.image_number else "") or "1"
            if not raw.isdigit() or not 1 <= int(raw) <= len(self.job.results):
                raise InvalidRequest(f"Please give an image number from 1 to {len(self.job.results)}.")
            index = int(raw) - 1
        await self.cog.start_child(interaction, self.job, "edit", prompt=self.instruction.value, reference=index)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await reply_error(interaction, error)


class Imagine(commands.Cog):
    def __init__(self, bot: SeedreamBot) -> None:
        self.bot = bot
        providers = list(bot.services.providers)
        self.imagine_command = build_imagine_command(
            self, [p.capabilities for p in providers], [p.name for p in providers]
        )

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.imagine_command)
        self.bot.add_dynamic_items(JobButton)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command("imagine")
        self.bot.remove_dynamic_items(JobButton)

    # -- starting jobs ------------------------------------------------------------------------------
    def _check_place(self, interaction: discord.Interaction) -> None:
        if interaction.guild_id is None and self.bot.settings.discord.guilds_only:
            raise NotAllowed("I only make pictures inside servers, not in direct messages.")

    @staticmethod
    def member_context(
        guild_id: int | None, user: discord.User | discord.Member, channel: object, is_mod: bool
    ) -> MemberContext:
        """The ids the policy needs; a thread follows its parent channel's rules."""
        roles = tuple(role.id for role in user.roles) if isinstance(user, discord.Member) else ()
        parent = channel.parent_id if isinstance(channel, discord.Thread) else None
        return MemberContext(
            guild_id=guild_id,
            user_id=user.id,
            role_ids=roles,
            channel_id=getattr(channel, "id", None),
            is_moderator=is_mod,
            parent_channel_id=parent,
        )

    async def admit(self, ctx: MemberContext, request: GenerationRequest, provider: str | None) -> Decision:
        """Every rule a server set (blocks, pause, channels, banned words, limits) before anything is queued."""
        return await self.bot.services.policy.check(ctx, request, provider)

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
        self._check_place(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = clean_prompt(prompt)
        if not text:
            raise InvalidRequest("Please describe the picture you want: the prompt is empty.")
        await self.bot.ack_first.after_ack(interaction)
        references = await self._download(attachments)
        gen = self.bot.settings.generation
        request = GenerationRequest(
            prompt=text,
            aspect_ratio=aspect or ("auto" if references and self._supports_auto(provider) else gen.default_aspect),
            resolution=resolution or self._default_resolution(provider),
            count=count or 1,
            seed=seed,
            style=style,
            enhance=enhance,
            references=references,
        )
        await self.start_job(interaction, "imagine", request, provider)

    def _supports_auto(self, provider: str | None) -> bool:
        return "auto" in self.bot.services.providers.get(provider).capabilities.aspect_ratios

    def _default_resolution(self, provider: str | None) -> str:
        wanted = self.bot.settings.generation.default_resolution
        offered = self.bot.services.providers.get(provider).capabilities.resolutions
        return wanted if wanted in offered else offered[0]

    async def _download(self, attachments: list[discord.Attachment]) -> list[StoredImage]:
        """Fetch attachments at once (their signed URLs expire) from allow-listed hosts only."""
        max_bytes = self.bot.settings.generation.max_reference_bytes
        for attachment in attachments:
            if attachment.content_type and not attachment.content_type.startswith("image/"):
                raise InvalidRequest(f"{attachment.filename} is not an image; attach PNG, JPEG or WebP files.")
            if attachment.size > max_bytes:
                raise InvalidRequest(
                    f"{attachment.filename} is {attachment.size // (1024 * 1024)} MiB; the limit is "
                    f"{max_bytes // (1024 * 1024)} MiB."
                )
        return await fetch_all(self.bot.services.fetcher, [a.url for a in attachments])

    async def start_job(
        self,
        interaction: discord.Interaction,
        kind: str,
        request: GenerationRequest,
        provider: str | None,
        parent: Job | None = None,
    ) -> Job:
        """Queue a job (quota reserved in the same transaction), open its status message, say where.

        Each slow step first lets waiting interactions be acknowledged (``AckFirst``)."""
        engine = self.bot.engine
        await self.bot.ack_first.after_ack(interaction)
        ctx = self.member_context(
            interaction.guild_id, interaction.user, interaction.channel, is_moderator(interaction)
        )
        try:
            decision = await self.admit(ctx, request, provider)
        except QuotaExceeded:
            self.bot.services.metrics.quota_refused()
            raise
        job, position = await engine.enqueue(
            kind=kind,
            requester_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            provider_name=decision.provider_name,
            request=request,
            quota_limit=decision.quota_limit,
            delivery={"channel_id": interaction.channel_id},
            parent_job_id=parent.id if parent else None,
        )
        await self.bot.ack_first.after_ack(interaction)
        try:
            await self.bot.sink.prepare(job, position)
        except (discord.HTTPException, discord.InvalidData) as exc:  # InvalidData: e.g. a forum, not a chat
            log.info("job %s: cannot post in channel %s (%s)", job.id, interaction.channel_id, exc)
            await engine.cancel(job.id)
            raise NotAllowed(
                "I can't post in this channel, so nothing was queued and nothing was charged. "
                "A moderator can give me Send Messages, Embed Links and Attach Files here."
            ) from None
        target = job.delivery.get("thread_id") or job.delivery.get("target_id") or interaction.channel_id
        where = jump_url(interaction.guild_id, int(target or 0))
        place = f"position {position} in the queue" if position > 1 else "starting now"
        await reply(interaction, f"Queued ({place}). Your pictures will appear here: {where}")
        return job

    async def start_child(
        self,
        interaction: discord.Interaction,
        parent: Job,
        kind: str,
        *,
        prompt: str | None = None,
        reference: int | None = None,
    ) -> Job:
        self._check_place(interaction)
        request = parent.request.model_copy()
        if kind == "reroll":
            caps = self.bot.services.providers.get(parent.provider).capabilities
            request.seed = random.randint(*caps.seed_range) if caps.seed_range else None
        if reference is not None:
            if not 0 <= reference < len(parent.results):
                raise InvalidRequest("That image is no longer available.")
            image = parent.results[reference]
            if not image.path.exists():
                days = self.bot.settings.storage.retention_days
                raise InvalidRequest(f"That image is older than {days} days and has been cleaned up; post it again.")
            request.references = [image]
        if prompt is not None:
            text = clean_prompt(prompt)
            if not text:
                raise InvalidRequest("Please say what should change: the instruction is empty.")
            request.prompt = text
        return await self.start_job(interaction, kind, request, parent.provider, parent)

    # -- buttons ------------------------------------------------------------------------------------
    async def on_job_button(self, interaction: discord.Interaction, button: JobButton) -> None:
        try:
            await self._on_job_button(interaction, button)
        except Exception as exc:  # DynamicItem errors never reach the tree's handler
            await reply_error(interaction, exc)

    async def _on_job_button(self, interaction: discord.Interaction, button: JobButton) -> None:
        job = await self.bot.engine.jobs.get(button.job_id)
        if job is None or job.guild_id != interaction.guild_id or not self._shows_job(interaction.message, job.id):
            raise NotAllowed("This button does not belong to a job here.")
        own = interaction.user.id == job.requester_id
        if button.action in ("cancel", "delete") and not (own or is_moderator(interaction)):
            raise NotAllowed(f"Only <@{job.requester_id}> or a moderator can {button.action} this job.")
        if button.action == "edit":
            await interaction.response.send_modal(EditModal(self, job, button.index if len(job.results) == 1 else None))
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        if button.action == "cancel":
            await self.bot.engine.cancel(job.id)
            await reply(interaction, "Cancelled; nothing was charged for the images not made.")
        elif button.action == "delete":
            await self._delete_results(job)
            await reply(interaction, "Deleted.")
        elif button.action == "reroll":
            await self.start_child(interaction, job, "reroll")
        elif button.action == "vary":
            await self.start_child(interaction, job, "vary", reference=button.index)

    def _shows_job(self, message: discord.Message | None, job_id: str) -> bool:
        """A press counts only on one of our own messages about that job (a crafted custom_id fails here)."""
        if message is None or self.bot.user is None or message.author.id != self.bot.user.id:
            return False
        return any((embed.footer.text or "").startswith(f"job {job_id}") for embed in message.embeds)

    async def _delete_results(self, job: Job) -> None:
        target = job.delivery.get("target_id") or job.channel_id
        channel = self.bot.get_partial_messageable(int(target or 0))
        for message_id in job.posted_message_ids:
            try:
                await channel.get_partial_message(message_id).delete()
            except discord.NotFound:
                pass

    # -- /jobs --------------------------------------------------------------------------------------
    @app_commands.command(name="jobs", description="Your recent pictures and where they are")
    async def jobs(self, interaction: discord.Interaction) -> None:
        recent = await self.bot.engine.jobs.recent_for(interaction.user.id, interaction.guild_id, limit=10)
        if not recent:
            await reply(interaction, "You have no jobs here yet. Try `/imagine`!")
            return
        lines = []
        for job in recent:
            target = job.delivery.get("target_id") or job.channel_id
            link = jump_url(
                job.guild_id, int(target or 0), job.posted_message_ids[0] if job.posted_message_ids else None
            )
            state = "done" if job.state == JobState.DONE else job.state.value
            prompt = discord.utils.escape_markdown(job.request.prompt[:60])
            lines.append(f"`{job.id}` {state}: {prompt} ({link})")
        await interaction.response.send_message("\n".join(lines), ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: SeedreamBot) -> None:
    await bot.add_cog(Imagine(bot))
