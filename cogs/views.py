"""Embeds and persistent buttons for jobs. Buttons carry the job id in custom_id (``sd:1:<action>:<job>[:<n>]``);
all state is read from SQLite, so buttons on week-old messages keep working after restarts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.i18n import DEFAULT_LOCALE, Text, _, _n, render
from bot.jobs import Job, JobState
from bot.jobs.formats import card_footer, part_footer
from cogs.locales import locale_of

if TYPE_CHECKING:
    from cogs.app import SeedreamBot
    from cogs.worker import WorkerClient

NO_MENTIONS = discord.AllowedMentions.none()
_INVITE = re.compile(r"(discord(?:app)?\.(?:gg|com/invite)|https?)(://|/)", re.IGNORECASE)


def inert(text: str, limit: int) -> str:
    """User text made harmless for display: no markdown, no mentions, no clickable links; truncated."""
    text = discord.utils.escape_mentions(discord.utils.escape_markdown(text))
    text = _INVITE.sub(lambda m: f"{m.group(1)}\u200b{m.group(2)}", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def thread_name(prompt: str) -> str:
    name = " ".join(prompt.split()) or "Seedream"
    return name if len(name) <= 100 else name[:99] + "…"


def card_locale(job: Job) -> str:
    """A job's messages are in the language of the member who asked (English for jobs from before)."""
    return job.delivery.locale or DEFAULT_LOCALE


def state_line(job: Job, position: int, now: float) -> Text | str:
    """The card's description while the job lives, and once it is done."""
    count, took = len(job.results), elapsed(job, now)
    if job.state == JobState.QUEUED:
        return _("⏳ Queued, position {position}.", position=position) if position else _("⏳ Starting…")
    if job.state == JobState.SUBMITTED:
        return _("🎨 Generating on **{provider}**… ({elapsed})", provider=job.provider, elapsed=took)
    if job.state in (JobState.DOWNLOADED, JobState.POSTED):
        return _n("📤 Posting {count} image(s)…", "📤 Posting {count} image(s)…", count)
    if job.state == JobState.DONE:
        return _n(
            "✅ Done in {elapsed}: {count} image(s).", "✅ Done in {elapsed}: {count} image(s).", count, elapsed=took
        )
    if job.state == JobState.CANCELLED:
        return _("🚫 Cancelled.")
    return ""


def elapsed(job: Job, now: float) -> str:
    start = job.created_at
    end = job.finished_at or now
    seconds = max(0, int(end - start))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def status_embed(job: Job, position: int, now: float, failure: str | Text | None = None) -> discord.Embed:
    """The job's card; its footer ``job <id>`` is the same in every language (a restart reads it)."""
    locale = card_locale(job)
    line = f"⚠️ {render(failure, locale)}" if failure is not None else render(state_line(job, position, now), locale)
    embed = discord.Embed(title=inert(job.request.prompt, 256), description=line, colour=0x5865F2)
    embed.add_field(name=_("Requested by").render(locale), value=f"<@{job.requester_id}>")
    embed.add_field(name=_("Provider").render(locale), value=job.provider)
    embed.set_footer(text=card_footer(job.id))
    return embed


def result_embed(
    job: Job, first: int, last: int, bot: SeedreamBot | WorkerClient, notes: Sequence[str | Text]
) -> discord.Embed:
    """The result card; the footer ("job X · images 1–2 of 4") also lets a restart recognise its own posts, so it
    is the same in every language."""
    locale = card_locale(job)
    request = job.request
    sample = job.results[first - 1] if 0 < first <= len(job.results) else None
    embed = discord.Embed(title=inert(request.prompt, 256), colour=0x57F287)
    embed.add_field(name=_("Requested by").render(locale), value=f"<@{job.requester_id}>")
    model = bot.services.providers.get(job.provider).capabilities.model
    embed.add_field(name=_("Provider").render(locale), value=f"{job.provider} ({model})" if model else job.provider)
    if sample is not None:
        embed.add_field(name=_("Size").render(locale), value=f"{sample.width}×{sample.height}")
    seed = str(request.seed) if request.seed is not None else _("random").render(locale)
    embed.add_field(name=_("Seed").render(locale), value=seed)
    if request.style:
        embed.add_field(name=_("Style").render(locale), value=request.style)
    if job.started_at:
        embed.add_field(
            name=_("Time").render(locale),
            value=elapsed(job.model_copy(update={"created_at": job.started_at}), job.updated_at),
        )
    if notes:
        embed.description = "\n".join(f"ℹ️ {inert(render(n, locale), 500)}" for n in notes)[:4000]
    embed.set_footer(text=part_footer(job.id, first, last, len(job.results)))
    return embed


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"sd:1:(?P<action>reroll|vary|edit|delete|cancel):(?P<job>[0-9a-f]{19})(?::(?P<index>\d{1,2}))?",
):
    """One persistent button; the cog decides what a press does and who may press it."""

    def __init__(self, action: str, job_id: str, index: int = 0, *, label: str | None = None) -> None:
        """``label``: what the button reads in the card's language (a press is matched by ``custom_id`` alone)."""
        styles = {"delete": discord.ButtonStyle.danger, "cancel": discord.ButtonStyle.secondary}
        suffix = f":{index}" if action in ("vary", "edit") else ""
        super().__init__(
            discord.ui.Button(
                label=label or action.capitalize(),
                style=styles.get(action, discord.ButtonStyle.primary),
                custom_id=f"sd:1:{action}:{job_id}{suffix}",
            )
        )
        self.action, self.job_id, self.index = action, job_id, index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> JobButton:
        return cls(match["action"], match["job"], int(match["index"] or 0))

    async def callback(self, interaction: discord.Interaction) -> None:
        client = interaction.client
        cog = client.get_cog("Imagine") if isinstance(client, commands.Bot) else None
        if cog is None:
            text = _("This button does not work right now; try again soon.").render(locale_of(interaction))
            await interaction.response.send_message(text, ephemeral=True)
            return
        await cog.on_job_button(interaction, self)  # type: ignore[attr-defined]  # the Imagine cog


def status_view(job: Job) -> discord.ui.View | None:
    if job.state not in (JobState.QUEUED, JobState.SUBMITTED):
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("cancel", job.id, label=_("Cancel").render(card_locale(job))))
    return view


def result_view(job: Job, indexes: list[int]) -> discord.ui.View:
    """Reroll / Edit / Delete, plus a Vary button for each image in this message (≤ 5 rows)."""
    locale = card_locale(job)
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("reroll", job.id, label=_("🎲 Reroll").render(locale)))
    edit_index = indexes[0] if len(indexes) == 1 else 0
    view.add_item(JobButton("edit", job.id, edit_index, label=_("✏️ Edit").render(locale)))
    view.add_item(JobButton("delete", job.id, label=_("🗑️ Delete").render(locale)))
    for index in indexes[:20]:
        view.add_item(JobButton("vary", job.id, index, label=_("Vary {number}", number=index + 1).render(locale)))
    return view
