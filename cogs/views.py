"""Embeds and persistent buttons for jobs. Buttons carry the job id in custom_id (``sd:1:<action>:<job>[:<n>]``);
all state is read from SQLite, so buttons on week-old messages keep working after restarts."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.jobs import Job, JobState
from bot.jobs.formats import card_footer, part_footer

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


STATE_LINES = {
    JobState.SUBMITTED: "🎨 Generating on **{provider}**… ({elapsed})",
    JobState.DOWNLOADED: "📤 Posting {count} image(s)…",
    JobState.POSTED: "📤 Posting {count} image(s)…",
    JobState.DONE: "✅ Done in {elapsed}: {count} image(s).",
    JobState.CANCELLED: "🚫 Cancelled.",
}


def elapsed(job: Job, now: float) -> str:
    start = job.created_at
    end = job.finished_at or now
    seconds = max(0, int(end - start))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def status_embed(job: Job, position: int, now: float, failure: str | None = None) -> discord.Embed:
    if failure is not None:
        line = f"⚠️ {failure}"
    elif job.state == JobState.QUEUED:
        line = f"⏳ Queued, position {position}." if position else "⏳ Starting…"
    else:
        line = STATE_LINES.get(job.state, "").format(
            provider=job.provider, elapsed=elapsed(job, now), count=len(job.results)
        )
    embed = discord.Embed(title=inert(job.request.prompt, 256), description=line, colour=0x5865F2)
    embed.add_field(name="Requested by", value=f"<@{job.requester_id}>")
    embed.add_field(name="Provider", value=job.provider)
    embed.set_footer(text=card_footer(job.id))
    return embed


def result_embed(job: Job, first: int, last: int, bot: SeedreamBot | WorkerClient, notes: list[str]) -> discord.Embed:
    """The result card; the footer ("job X · images 1–2 of 4") also lets a restart recognise its own posts."""
    request = job.request
    sample = job.results[first - 1] if 0 < first <= len(job.results) else None
    embed = discord.Embed(title=inert(request.prompt, 256), colour=0x57F287)
    embed.add_field(name="Requested by", value=f"<@{job.requester_id}>")
    model = bot.services.providers.get(job.provider).capabilities.model
    embed.add_field(name="Provider", value=f"{job.provider} ({model})" if model else job.provider)
    if sample is not None:
        embed.add_field(name="Size", value=f"{sample.width}×{sample.height}")
    embed.add_field(name="Seed", value=str(request.seed) if request.seed is not None else "random")
    if request.style:
        embed.add_field(name="Style", value=request.style)
    if job.started_at:
        embed.add_field(
            name="Time", value=elapsed(job.model_copy(update={"created_at": job.started_at}), job.updated_at)
        )
    if notes:
        embed.description = "\n".join(f"ℹ️ {inert(n, 500)}" for n in notes)[:4000]
    embed.set_footer(text=part_footer(job.id, first, last, len(job.results)))
    return embed


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"sd:1:(?P<action>reroll|vary|edit|delete|cancel):(?P<job>[0-9a-f]{19})(?::(?P<index>\d{1,2}))?",
):
    """One persistent button; the cog decides what a press does and who may press it."""

    def __init__(self, action: str, job_id: str, index: int = 0, *, label: str | None = None) -> None:
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
            await interaction.response.send_message(
                "This button does not work right now; try again soon.", ephemeral=True
            )
            return
        await cog.on_job_button(interaction, self)  # type: ignore[attr-defined]  # the Imagine cog


def status_view(job: Job) -> discord.ui.View | None:
    if job.state not in (JobState.QUEUED, JobState.SUBMITTED):
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("cancel", job.id))
    return view


def result_view(job: Job, indexes: list[int]) -> discord.ui.View:
    """Reroll / Edit / Delete, plus a Vary button for each image in this message (≤ 5 rows)."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("reroll", job.id, label="🎲 Reroll"))
    view.add_item(JobButton("edit", job.id, indexes[0] if len(indexes) == 1 else 0, label="✏️ Edit"))
    view.add_item(JobButton("delete", job.id, label="🗑️ Delete"))
    for index in indexes[:20]:
        view.add_item(JobButton("vary", job.id, index, label=f"Vary {index + 1}"))
    return view
