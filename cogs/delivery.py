"""Delivers jobs to Discord with the bot token: status message, thread, progress edits, result posts.

Nothing here depends on the 15-minute interaction token, so a job that takes an hour still lands.
Every id (status message, thread, each posted part) is saved in the job row as soon as it exists, so
a restart continues where it stopped; parts already posted are found again by their footer.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import DeliveryFailed
from bot.jobs import Job, JobState
from bot.jobs.engine import RecordMessage
from bot.uploads import UploadFile, plan_parts
from cogs.views import NO_MENTIONS, result_embed, result_view, status_embed, status_view, thread_name

if TYPE_CHECKING:
    from cogs.app import SeedreamBot

log = logging.getLogger(__name__)
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
MIN_UPLOAD_LIMIT = 256 * 1024
FALLBACK_NOTICE = "I can't create a thread here, so I'll post the results in this channel."
THREAD_ALREADY_CREATED = 160004
Messageable = discord.TextChannel | discord.Thread | discord.DMChannel | discord.VoiceChannel


class DiscordSink:
    def __init__(self, bot: SeedreamBot, *, edit_interval: float = 5.0, clock: Any = time.monotonic) -> None:
        self.bot = bot
        self.edit_interval = edit_interval
        self.clock = clock
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._edit_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._last_edit: dict[str, float] = {}
        self._pending_edit: dict[str, asyncio.Task[None]] = {}
        self._closing: set[asyncio.Task[None]] = set()  # final status edits still on their way

    # -- where a job's messages go ------------------------------------------------------------------
    async def _channel(self, channel_id: int) -> Messageable:
        channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        if not isinstance(channel, Messageable):
            raise discord.InvalidData(f"channel {channel_id} cannot hold messages")
        return channel

    async def prepare(self, job: Job, position: int) -> Job:
        """Make sure the job has its status message and its thread (or a fallback), saving both.

        With ``delivery["thread_from_message_id"]`` (an edit asked for in a plain message) the thread is
        opened from the member's own message and the status goes inside it; otherwise the thread hangs off
        the status message.
        """
        async with self._locks[job.id]:
            if await self._refresh(job):
                return job
            delivery = dict(job.delivery)
            channel = await self._channel(int(delivery.get("channel_id") or job.channel_id or 0))
            source = delivery.get("thread_from_message_id")
            if source:
                await self._open_off_message(job, position, channel, int(str(source)), delivery)
            else:
                await self._open_off_status(job, position, channel, delivery)
            await self.bot.engine.save_delivery(job, delivery)
            return job

    async def _send_status(
        self, job: Job, position: int, channel: Messageable, reply_to: discord.MessageReference | None = None
    ) -> discord.Message:
        reply: dict[str, Any] = {"reference": reply_to} if reply_to is not None else {}
        message = await channel.send(
            embed=status_embed(job, position, time.time()),
            view=status_view(job) or discord.utils.MISSING,
            allowed_mentions=NO_MENTIONS,
            **reply,
        )
        # A fresh status message counts as an edit: a job done within ``edit_interval`` gets only its final one.
        self._last_edit[job.id] = self.clock()
        return message

    async def _open_off_status(self, job: Job, position: int, channel: Messageable, delivery: dict[str, Any]) -> None:
        # "opening" is saved before the status message is sent: if the process dies before its id is saved,
        # the next run finds that message (and its thread) instead of opening a second one.
        status = await self._earlier_status(job, channel) if delivery.get("opening") else None
        if status is None:
            delivery["opening"] = True
            await self.bot.engine.save_delivery(job, delivery)
            status = await self._send_status(job, position, channel)
        delivery["status_message_id"] = status.id
        delivery["target_id"] = channel.id
        if isinstance(channel, discord.TextChannel) and not delivery.get("no_thread"):
            try:
                thread = await self._thread_off(job, channel, status.id)
                delivery["target_id"] = thread.id
                delivery["thread_id"] = thread.id
            except (discord.HTTPException, discord.InvalidData) as exc:
                log.info("job %s: no thread in channel %s (%s); posting in the channel", job.id, channel.id, exc)
                delivery["fallback"] = True

    async def _earlier_status(self, job: Job, channel: Messageable) -> discord.Message | None:
        try:
            async for message in channel.history(limit=50):
                if message.author.id == getattr(self.bot.user, "id", None) and any(
                    (embed.footer.text or "") == f"job {job.id}" for embed in message.embeds
                ):
                    return message
        except discord.HTTPException as exc:
            log.info("job %s: could not look for an earlier status message (%s)", job.id, exc)
        return None

    async def _open_off_message(
        self, job: Job, position: int, channel: Messageable, message_id: int, delivery: dict[str, Any]
    ) -> None:
        """Thread from the member's message, status inside; a reply in the channel when no thread can be made."""
        if isinstance(channel, discord.TextChannel) and not delivery.get("no_thread"):
            try:
                thread = await self._thread_off(job, channel, message_id)
                status = await self._send_status(job, position, thread)
                delivery.update(
                    status_message_id=status.id, status_channel_id=thread.id, target_id=thread.id, thread_id=thread.id
                )
                return
            except (discord.HTTPException, discord.InvalidData) as exc:
                log.info("job %s: no thread off message %s (%s); replying in the channel", job.id, message_id, exc)
                delivery["fallback"] = True
        reference = discord.MessageReference(message_id=message_id, channel_id=channel.id, fail_if_not_exists=False)
        status = await self._send_status(job, position, channel, reference)
        delivery.update(status_message_id=status.id, status_channel_id=channel.id, target_id=channel.id)

    async def _thread_off(self, job: Job, channel: discord.TextChannel, message_id: int) -> Messageable:
        try:
            return await channel.create_thread(
                name=thread_name(job.request.prompt),
                message=discord.Object(id=message_id),
                auto_archive_duration=self.bot.settings.discord.thread_auto_archive_minutes,
            )
        except discord.HTTPException as exc:
            if exc.code != THREAD_ALREADY_CREATED:
                raise
        # A thread made from a message has the message's id: an earlier run (or the member) opened it already.
        return await self._channel(message_id)

    async def _refresh(self, job: Job) -> bool:
        """Pick up delivery ids saved by another holder of the job (the command saves, the worker reads)."""
        if not job.delivery.get("status_message_id"):
            saved = await self.bot.engine.jobs.get(job.id)
            if saved is not None:
                job.delivery = saved.delivery
        return bool(job.delivery.get("status_message_id"))

    # -- progress -----------------------------------------------------------------------------------
    async def progress(self, job: Job, position: int) -> None:
        """Schedule a status edit (at most one per ``edit_interval``); never waits for Discord.

        The worker calling this may hold a provider slot: an edit queued behind the channel's rate
        limit must not hold it too. The edit shows the job as it is when it is sent.
        """
        if job.id in self._pending_edit:
            return
        wait = max(0.0, self._last_edit.get(job.id, -1e9) + self.edit_interval - self.clock())
        self._pending_edit[job.id] = asyncio.create_task(self._edit_later(job, position, wait))

    async def _edit_later(self, job: Job, position: int, wait: float) -> None:
        try:
            if wait > 0:
                await asyncio.sleep(wait)
            if await self._refresh(job):
                await self._edit_status(job, position)
        finally:
            self._pending_edit.pop(job.id, None)

    async def _edit_status(self, job: Job, position: int, failure: str | None = None) -> None:
        async with self._edit_locks[job.id]:  # one edit at a time per job, so the last one sent wins
            self._last_edit[job.id] = self.clock()
            status_id = job.delivery.get("status_message_id")
            channel_id = job.delivery.get("status_channel_id") or job.delivery.get("channel_id") or job.channel_id
            if not status_id or not channel_id:
                return
            try:
                channel = await self._channel(int(channel_id))
                message = channel.get_partial_message(int(status_id))
                await message.edit(
                    embed=status_embed(job, position, time.time(), failure),
                    view=status_view(job) if failure is None else None,
                    allowed_mentions=NO_MENTIONS,
                )
            except discord.HTTPException as exc:
                log.info("job %s: status message not updated (%s)", job.id, exc)

    async def _final_edit(self, job: Job, failure: str | None = None) -> None:
        """The job's last status edit: a pending progress edit is dropped (one in flight finishes) first,
        and the job's per-job bookkeeping is forgotten after."""
        task = self._pending_edit.pop(job.id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._refresh(job)
        await self._edit_status(job, 0, failure)
        for per_job in (self._last_edit, self._locks, self._edit_locks):
            per_job.pop(job.id, None)

    async def finished(self, job: Job) -> None:
        """Mark the status message done in the background: the job's worker does not wait for Discord."""
        task = asyncio.create_task(self._final_edit(job), name=f"status-{job.id}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def drain(self, timeout: float) -> None:
        """At shutdown: give the last status edits ``timeout`` seconds to reach Discord."""
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=timeout)

    async def failed(self, job: Job, message: str) -> None:
        failure = "Cancelled." if job.state == JobState.CANCELLED else f"This job did not complete: {message}"
        await self._final_edit(job, failure)
        target = job.delivery.get("thread_id")
        if target and job.state == JobState.FAILED:
            try:
                channel = await self._channel(int(target))
                await channel.send(f"<@{job.requester_id}> {message}", allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as exc:
                log.info("job %s: failure notice not posted (%s)", job.id, exc)

    async def alert(self, job: Job, message: str) -> None:
        """Problems only moderators can fix go to the server's log channel (set with /seedream-admin)."""
        if job.guild_id is None:
            return
        settings = await self.bot.services.policy.store.settings(job.guild_id)
        if not settings.log_channel_id:
            log.warning("guild %s has no log channel for: %s", job.guild_id, message)
            return
        try:
            channel = self.bot.get_partial_messageable(settings.log_channel_id)
            await channel.send(f"⚠️ {message}", allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.info("guild %s: log channel not writable (%s)", job.guild_id, exc)

    # -- results ------------------------------------------------------------------------------------
    async def deliver(self, job: Job, record_message: RecordMessage) -> None:
        """Post the results; Discord's answers become DeliveryFailed (retryable or not) for the engine."""
        try:
            await self._deliver(job, record_message)
        except discord.NotFound as exc:
            raise DeliveryFailed(
                "The channel for this job no longer exists, so the pictures could not be posted; "
                "your credits were refunded.",
                retryable=False,
                detail=str(exc),
            ) from None
        except discord.Forbidden as exc:
            raise DeliveryFailed(
                "I am no longer allowed to post there, so the pictures could not be posted; "
                "your credits were refunded.",
                retryable=False,
                detail=str(exc),
            ) from None
        except discord.HTTPException as exc:
            raise DeliveryFailed(
                "Discord had a problem while I was posting your pictures.",
                retryable=exc.status >= 500 or exc.status == 429,
                detail=str(exc),
            ) from None

    async def _deliver(self, job: Job, record_message: RecordMessage) -> None:
        """Post the results in as many messages as the upload limit needs, resuming after what was posted.

        Progress is counted in images (``delivery.posted_images``), so a smaller limit learnt from a 413
        (40005) re-plans only what is left. Each message's footer names the images it holds, which is how a
        restart finds a message that was sent but not yet recorded.
        """
        await self.prepare(job, 0)
        target = await self._channel(int(job.delivery["target_id"]))
        guild = getattr(target, "guild", None)
        limit = int(job.delivery.get("upload_limit") or (guild.filesize_limit if guild else DEFAULT_UPLOAD_LIMIT))
        total = len(job.results)
        posted = int(job.delivery.get("posted_images", 0))
        if job.delivery.get("posting_started"):
            # What is already in the channel is the truth: the process may have died after sending a part,
            # or after recording its message id but before counting its images.
            for message_id, last in await self._find_posted(target, job, posted):
                if message_id not in job.posted_message_ids:
                    await record_message(message_id)
                posted = max(posted, last)
        await self.bot.engine.save_delivery(job, {**job.delivery, "posting_started": True, "posted_images": posted})
        while posted < total:
            parts = await asyncio.to_thread(plan_parts, job.results[posted:], job.id, limit, posted + 1)
            part = parts[0]
            first, last = posted + 1, posted + len(part)
            try:
                message = await target.send(
                    embed=result_embed(job, first, last, self.bot, self._notes(job, part, first)),
                    files=[_file(f) for f in part],
                    view=result_view(job, list(range(first - 1, last))),
                    allowed_mentions=NO_MENTIONS,
                )
            except discord.HTTPException as exc:
                if exc.code == 40005 and limit > MIN_UPLOAD_LIMIT:
                    limit = max(MIN_UPLOAD_LIMIT, min(limit, sum(f.size for f in part)) // 2)
                    log.info("job %s: upload refused as too large; retrying under %d bytes", job.id, limit)
                    await self.bot.engine.save_delivery(job, {**job.delivery, "upload_limit": limit})
                    continue
                raise
            posted = last
            await record_message(message.id, {**job.delivery, "posted_images": posted})

    def _notes(self, job: Job, part: list[UploadFile], first: int) -> list[str]:
        notes = list(job.notices) if first == 1 else []
        if first == 1 and job.delivery.get("fallback"):
            notes.insert(0, FALLBACK_NOTICE)
        days = self.bot.settings.storage.retention_days
        notes += [
            f"{f.filename} was re-encoded from {f.reencoded_from[0]}×{f.reencoded_from[1]} to fit this server's "
            f"upload limit; the original is kept for {days} days."
            for f in part
            if f.reencoded_from
        ]
        return notes

    async def _find_posted(self, target: Messageable, job: Job, posted: int) -> list[tuple[int, int]]:
        """Parts a previous run posted beyond ``posted`` images (recorded or not), in order."""
        found: list[tuple[int, int]] = []
        marker = f"job {job.id} · images "
        try:
            async for message in target.history(limit=50, oldest_first=False):
                if message.author.id != getattr(self.bot.user, "id", None):
                    continue
                for embed in message.embeds:
                    footer = embed.footer.text or ""
                    if footer.startswith(marker):
                        last = int(footer[len(marker) :].split(" of ")[0].split("–")[-1])
                        if last > posted:
                            found.append((message.id, last))
        except discord.HTTPException as exc:
            log.info("job %s: could not read back earlier posts (%s)", job.id, exc)
        return sorted(found, key=lambda item: item[1])


def _file(upload: UploadFile) -> discord.File:
    if upload.path is not None:
        return discord.File(str(upload.path), filename=upload.filename)
    return discord.File(io.BytesIO(upload.read()), filename=upload.filename)
