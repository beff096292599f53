"""Delivers jobs to Discord: the job's card (its public status message), its thread, and the result posts.

Discord allows about five messages and five edits per five seconds in one channel, so a busy channel must
not pay a bot-token message per job. The card is the command's own answer: edits go through the
interaction's token (a bucket per interaction, outside the channel's and the global limit) while Discord
accepts it, and through the bot token and the saved message id after that. Results go into a thread
started from the card: a thread is a channel of its own, with buckets of its own. In the common case a
job costs two bot-token requests (thread, result post); the final card edit is a third after 15 minutes.

Every id (card, thread, each posted part) is saved in the job row as soon as it exists, so a restart
continues where it stopped: the card is found again by its id, parts already posted by their footer.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot.errors import DeliveryFailed, SeedreamError
from bot.i18n import Text, _, _n, render
from bot.jobs import Job, JobState
from bot.jobs.formats import part_range
from bot.jobs.models import InteractionRef
from bot.jobs.sink import RecordMessage
from bot.uploads import UploadFile, plan_parts, provenance_fields
from cogs.followups import FollowupTarget, PersonalDelivery
from cogs.locales import guild_locale_of
from cogs.views import NO_MENTIONS, card_locale, result_embed, result_view, status_embed, status_view, thread_name

if TYPE_CHECKING:
    from cogs.app import SeedreamBot
    from cogs.worker import WorkerClient

log = logging.getLogger(__name__)
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
MIN_UPLOAD_LIMIT = 256 * 1024
FALLBACK_NOTICE = _("I can't create a thread here, so I'll post the results in this channel.")
THREAD_ALREADY_CREATED = 160004
#: Discord accepts an interaction token for 15 minutes; we stop using it a little before.
TOKEN_LIFETIME_SECONDS = 15 * 60
TOKEN_MARGIN_SECONDS = 60
#: Answers that mean the interaction token is no longer accepted (expired or unknown).
TOKEN_REFUSED_CODES = frozenset({10015, 50027})
FETCHED_CHANNELS = 256
ENDED_MEMORY = 4096  # how many ended jobs this process remembers, so a late "Queued" never covers an outcome
Messageable = discord.TextChannel | discord.Thread | discord.DMChannel | discord.VoiceChannel
Clock = Callable[[], float]


class CardTracker:
    """What this process knows about one card: one edit at a time, at most one pending, how recent."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.last_edit = -1e9
        self.pending: asyncio.Task[None] | None = None
        self.shown_position: int | None = None  # the queue position the card shows while waiting


class DiscordSink:
    def __init__(
        self,
        bot: SeedreamBot | WorkerClient,  # the gateway bot (`run`), or a worker without a gateway
        *,
        edit_interval: float = 5.0,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self.bot = bot
        self.edit_interval = edit_interval
        self.clock = clock
        self.wall_clock = wall_clock
        self._cards: defaultdict[str, CardTracker] = defaultdict(CardTracker)
        self._threads: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._waiting: dict[str, Job] = {}  # cards showing a queue position
        self._queue_refresh: asyncio.Task[None] | None = None
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._fetched: OrderedDict[int, Messageable] = OrderedDict()  # channels fetched by id (no gateway cache)
        self._background: set[asyncio.Task[None]] = set()
        self.personal = PersonalDelivery(self)  # a member's own install: follow-ups, then DM

    # -- the card -----------------------------------------------------------------------------------
    def interaction_ref(self, interaction: discord.Interaction) -> InteractionRef:
        """The token to edit this interaction's answer with, and until when we will use it."""
        return InteractionRef(
            application_id=interaction.application_id,
            token=interaction.token,
            usable_until=self.wall_clock() + TOKEN_LIFETIME_SECONDS - TOKEN_MARGIN_SECONDS,
        )

    async def show_card(self, job: Job, position: int) -> None:
        """The command's first view of its card: queued at ``position``. Never covers a later state."""
        tracker = self._cards[job.id]
        async with tracker.lock:
            if job.id in self._ended or tracker.last_edit > -1e9 or await self._moved_on(job):
                return  # the job already ended, or its worker already showed something newer
            tracker.last_edit = self.clock()
            if position > 0:
                tracker.shown_position = position
                self._watch_position(job)
            await self._edit_card(job, status_embed(job, position, self.wall_clock()), status_view(job))
        self.personal.watch(job)

    def has_ended(self, job_id: str) -> bool:
        return job_id in self._ended

    def refresh_card(self, job: Job) -> None:
        """Show the job as it is now, at the next edit the card's pace allows."""
        self._schedule_edit(job, self._cards[job.id].shown_position or 0)

    async def open_reply_card(self, job: Job, message: discord.Message, position: int) -> None:
        """A plain message has no interaction to answer: the card is one reply to it, saved at once."""
        tracker = self._cards[job.id]
        async with tracker.lock:
            if job.id in self._ended:
                return
            card = await message.reply(
                embed=status_embed(job, position, self.wall_clock()),
                view=status_view(job) or discord.utils.MISSING,
                mention_author=False,
                allowed_mentions=NO_MENTIONS,
            )
            tracker.last_edit = self.clock()
            if position > 0:
                tracker.shown_position = position
                self._watch_position(job)
            saved = await self.bot.engine.jobs.get(job.id)
            delivery = (saved or job).delivery.model_copy(
                update={"card_message_id": card.id, "card_channel_id": message.channel.id}
            )
            job.delivery = delivery
            await self.bot.engine.save_delivery(job, delivery)

    def followup(self, interaction: InteractionRef) -> discord.Webhook:
        """The interaction's own webhook, as ``Interaction.followup`` builds it (after a restart we only have
        the saved token): an application webhook, so it may send private messages."""
        payload: Any = {"id": interaction.application_id, "type": 3, "token": interaction.token}
        return discord.Webhook.from_state(data=payload, state=self.bot._connection)

    async def _edit_card(self, job: Job, embed: discord.Embed, view: discord.ui.View | None) -> None:
        """Edit the card through the interaction token while it is valid, else with the bot token.

        A card a moderator deleted is left deleted: the job goes on and its results are still posted."""
        delivery = job.delivery
        if delivery.card_message_id is None:
            return
        note = self.personal.card_note(job)
        if note is not None:
            embed.description = f"{embed.description or ''}\n{note}".strip()
        interaction = delivery.interaction
        if interaction is not None and self.wall_clock() < interaction.usable_until:
            webhook = self.followup(interaction)
            try:
                await webhook.edit_message(
                    delivery.card_message_id, embed=embed, view=view, allowed_mentions=NO_MENTIONS
                )
                return
            except discord.NotFound as exc:
                if exc.code not in TOKEN_REFUSED_CODES:
                    log.info("job %s: card %s is gone (%s)", job.id, delivery.card_message_id, exc)
                    return
            except discord.HTTPException as exc:
                if exc.status != 401 and exc.code not in TOKEN_REFUSED_CODES:
                    raise
            log.info("job %s: interaction token refused; editing the card with the bot token", job.id)
        channel = self.bot.get_partial_messageable(int(delivery.card_channel or 0))
        try:
            await channel.get_partial_message(delivery.card_message_id).edit(
                embed=embed, view=view, allowed_mentions=NO_MENTIONS
            )
        except discord.NotFound as exc:
            log.info("job %s: card %s is gone (%s)", job.id, delivery.card_message_id, exc)
        except discord.Forbidden as exc:
            if not delivery.via_interaction:
                raise
            # the bot is not where a member's own install answered: past the token, the card stays as it was
            log.info("job %s: card %s no longer editable (%s)", job.id, delivery.card_message_id, exc)

    # -- progress -----------------------------------------------------------------------------------
    async def progress(self, job: Job, position: int) -> None:
        """Schedule a card edit (at most one per ``edit_interval`` per card); never waits for Discord.

        The worker calling this may hold a provider slot: an edit waiting for a bucket must not hold it
        too. The edit shows the job as it is when it is sent."""
        if position == 0 and self._waiting.pop(job.id, None) is not None:
            self._queue_moved()
        self._schedule_edit(job, position)
        if job.is_active:
            self.personal.watch(job)  # after a restart too: a resumed job still says when its token ends

    def _schedule_edit(self, job: Job, position: int) -> None:
        if job.id in self._ended:  # checked first: an ended job's tracker is gone and must not come back
            return
        tracker = self._cards[job.id]
        if tracker.pending is not None:
            return
        wait = max(0.0, tracker.last_edit + self.edit_interval - self.clock())
        tracker.pending = self._spawn(self._edit_later(job, position, wait, tracker), f"card-{job.id}")

    async def _edit_later(self, job: Job, position: int, wait: float, tracker: CardTracker) -> None:
        try:
            if wait > 0:
                await asyncio.sleep(wait)
        finally:
            tracker.pending = None
        await self.bot.ack_first.settled()
        async with tracker.lock:
            if job.id in self._ended or (position > 0 and await self._moved_on(job)):
                return
            tracker.last_edit = self.clock()
            if position > 0:
                tracker.shown_position = position
            try:
                await self._edit_card(job, status_embed(job, position, self.wall_clock()), status_view(job))
            except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:  # a progress edit may be lost
                log.info("job %s: card not updated (%s)", job.id, exc)

    def _watch_position(self, job: Job) -> None:
        """Keep the waiting card's queue position current. Only the one process on its store does: where several
        share the queue, another may start and end the job while an edit from here is on its way."""
        if self.bot.engine.exclusive:
            self._waiting[job.id] = job

    async def _moved_on(self, job: Job) -> bool:
        """Another process may run the job (several share a PostgreSQL database) and show its progress on the
        card itself: a queue position shown from here must not cover that. The one process never asks."""
        if self.bot.engine.exclusive:
            return False
        state = await self.bot.engine.jobs.state_of(job.id)
        return state is not JobState.QUEUED

    def _queue_moved(self) -> None:
        """A job left the queue: refresh the positions waiting cards show, once per ``edit_interval``."""
        if self._waiting and (self._queue_refresh is None or self._queue_refresh.done()):
            self._queue_refresh = self._spawn(self._refresh_positions(), "queue-positions")

    async def _refresh_positions(self) -> None:
        await asyncio.sleep(self.edit_interval)
        positions = await self.bot.engine.jobs.queue_positions()
        for job_id, job in list(self._waiting.items()):
            position = positions.get(job_id)
            if position is None:
                self._waiting.pop(job_id, None)  # it started or ended; its worker shows that
            elif position != self._cards[job_id].shown_position:
                self._schedule_edit(job, position)

    # -- the end of a job ---------------------------------------------------------------------------
    async def _final_edit(self, job: Job, failure: str | Text | None) -> None:
        """The card's last edit: no later progress edit may follow it, and a pending one is dropped."""
        self._remember_ended(job.id)
        if self._waiting.pop(job.id, None) is not None:
            self._queue_moved()
        tracker = self._cards[job.id]
        if tracker.pending is not None:
            tracker.pending.cancel()
        async with tracker.lock:
            await self._refresh(job)
            await self._edit_card(job, status_embed(job, 0, self.wall_clock(), failure), None)
        self._cards.pop(job.id, None)
        self._threads.pop(job.id, None)

    def _remember_ended(self, job_id: str) -> None:
        self._ended[job_id] = None
        while len(self._ended) > ENDED_MEMORY:
            self._ended.popitem(last=False)

    async def finished(self, job: Job) -> None:
        """Show the job done. Discord's refusal (other than a deleted card) is logged; the job is done anyway."""
        try:
            await self._final_edit(job, None)
        except discord.HTTPException as exc:
            log.info("job %s: card not marked done (%s)", job.id, exc)

    async def failed(self, job: Job, message: str | Text) -> None:
        """Show the outcome on the card (no live Cancel) and tell the member: privately through the
        interaction while it is valid, else with a mention in the job's thread or next to the card."""
        cancelled = job.state == JobState.CANCELLED
        failure = _("Cancelled.") if cancelled else _("This job did not complete: {reason}", reason=message)
        await self._final_edit(job, failure)
        if not cancelled:
            await self._tell_member(job, message)

    async def _tell_member(self, job: Job, message: str | Text) -> None:
        delivery = job.delivery
        text = f"<@{job.requester_id}> {render(message, card_locale(job))}"
        mention = discord.AllowedMentions(users=[discord.Object(job.requester_id)])
        interaction = delivery.interaction
        if interaction is not None and self.wall_clock() < interaction.usable_until:
            webhook = self.followup(interaction)
            try:
                await webhook.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
                return
            except discord.HTTPException as exc:
                log.info("job %s: private failure notice not sent (%s)", job.id, exc)
        target = delivery.thread_id or delivery.card_channel
        if not target:
            return
        channel = self.bot.get_partial_messageable(int(target))
        reply: dict[str, Any] = {}
        if delivery.card_message_id and not delivery.thread_id:
            reply["reference"] = discord.MessageReference(
                message_id=delivery.card_message_id, channel_id=int(target), fail_if_not_exists=False
            )
        try:
            await channel.send(text[:2000], allowed_mentions=mention, **reply)
        except discord.HTTPException as exc:
            log.info("job %s: failure notice not posted (%s)", job.id, exc)

    async def drain(self, timeout: float) -> None:
        """At shutdown: give edits already on their way ``timeout`` seconds to reach Discord, then stop the
        rest (a progress edit or a queue refresh left undone is harmless; the final states were written)."""
        pending = {task for task in self._background if not task.get_name().startswith("queue")}
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def alert(self, job: Job, message: str | Text) -> None:
        """Problems only moderators can fix go to the server's log channel (set with /seedream-admin), in the
        server's language."""
        if job.guild_id is None:
            return
        settings = await self.bot.services.policy.store.settings(job.guild_id)
        if not settings.log_channel_id:
            log.warning("guild %s has no log channel for: %s", job.guild_id, str(message))
            return
        try:
            channel = self.bot.get_partial_messageable(settings.log_channel_id)
            text = render(message, guild_locale_of(self.bot.get_guild(job.guild_id)))
            await channel.send(f"⚠️ {text}", allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.info("guild %s: log channel not writable (%s)", job.guild_id, exc)

    # -- where results go ---------------------------------------------------------------------------
    async def _refresh(self, job: Job) -> None:
        """Pick up delivery ids saved by another holder of the job (the command saves, the worker reads)."""
        if job.delivery.card_message_id is None:
            saved = await self.bot.engine.jobs.get(job.id)
            if saved is not None:
                job.delivery = saved.delivery

    async def _results_channel(self, job: Job) -> Messageable:
        """The job's thread, started from its card the first time it is needed; the card's channel where
        no thread can be made (a DM, a thread, a forum, or no permission)."""
        async with self._threads[job.id]:
            await self._refresh(job)
            delivery = job.delivery
            if delivery.via_interaction:
                return await self.personal.target(job)  # type: ignore[return-value]
            if delivery.thread_id is None and delivery.threads_allowed and not delivery.fallback:
                thread = await self._open_thread(job)
                if thread is not None:
                    return thread
            return await self._channel(int(job.delivery.results_channel or job.channel_id or 0))

    async def _open_thread(self, job: Job) -> Messageable | None:
        """The thread from the job's card, saved; None (and saved as a fallback) where Discord refuses one."""
        delivery = job.delivery
        thread: Messageable | None = None
        try:
            channel = await self._channel(int(delivery.card_channel or 0))
            if not isinstance(channel, discord.TextChannel) or delivery.card_message_id is None:
                raise discord.InvalidData("not a channel that holds threads")
            thread = await self._thread_off(job, channel, delivery.card_message_id)
        except (discord.HTTPException, discord.InvalidData) as exc:
            if isinstance(exc, discord.HTTPException) and (exc.status >= 500 or exc.status == 429):
                raise
            log.info("job %s: no thread off card %s (%s); posting next to it", job.id, delivery.card_message_id, exc)
        update = {"thread_id": thread.id} if thread is not None else {"fallback": True}
        job.delivery = delivery.model_copy(update=update)
        await self.bot.engine.save_delivery(job, job.delivery)
        return thread

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
        # A thread made from a message has the message's id: an earlier run (or a member) opened it already.
        return await self._channel(message_id)

    async def _channel(self, channel_id: int) -> Messageable:
        """From the gateway's cache, else fetched once (a worker has no gateway, so no cache of its own)."""
        channel = self.bot.get_channel(channel_id) or self._fetched.get(channel_id)
        if channel is None:
            channel = await self.bot.fetch_channel(channel_id)
            if isinstance(channel, discord.TextChannel):  # threads come and go; a job's card channel recurs
                self._fetched[channel_id] = channel
                while len(self._fetched) > FETCHED_CHANNELS:
                    self._fetched.popitem(last=False)
        if not isinstance(channel, Messageable):
            raise discord.InvalidData(f"channel {channel_id} cannot hold messages")
        return channel

    # -- results ------------------------------------------------------------------------------------
    async def deliver(self, job: Job, record_message: RecordMessage) -> None:
        """Post the results; Discord's answers become DeliveryFailed (retryable or not) for the engine."""
        await self.bot.ack_first.settled()  # commands still waiting for their "thinking…" go first
        try:
            await self._deliver(job, record_message)
        except discord.NotFound as exc:
            raise DeliveryFailed(
                _(
                    "The channel for this job no longer exists, so the pictures could not be posted; "
                    "your credits were refunded."
                ),
                retryable=False,
                detail=str(exc),
            ) from None
        except discord.Forbidden as exc:
            raise DeliveryFailed(
                _(
                    "I am no longer allowed to post there, so the pictures could not be posted; "
                    "your credits were refunded."
                ),
                retryable=False,
                detail=str(exc),
            ) from None
        except discord.HTTPException as exc:
            raise DeliveryFailed(
                _("Discord had a problem while I was posting your pictures."),
                retryable=exc.status >= 500 or exc.status == 429,
                detail=str(exc),
            ) from None

    async def _deliver(self, job: Job, record_message: RecordMessage) -> None:
        """Post the results in as many messages as the upload limit needs, resuming after what was posted.

        Progress is counted in images (``posted_images``), so a smaller limit learnt from a 413 (40005)
        re-plans only what is left. Each message's footer names the images it holds, which is how a
        restart finds a message that was sent but not yet recorded.
        """
        target = await self._results_channel(job)
        guild = getattr(target, "guild", None)
        limit = job.delivery.upload_limit or (guild.filesize_limit if guild else DEFAULT_UPLOAD_LIMIT)
        total = len(job.results)
        posted = job.delivery.posted_images
        if job.delivery.posting_started and not isinstance(target, FollowupTarget):
            # What is already in the thread is the truth: the process may have died after sending a part,
            # or after recording its message id but before counting its images.
            for message_id, last in await self._find_posted(target, job, posted):
                if message_id not in job.posted_message_ids:
                    await record_message(message_id)
                posted = max(posted, last)
        else:
            job.delivery = job.delivery.model_copy(update={"posting_started": True})
            await self.bot.engine.save_delivery(job, job.delivery)
        provenance = self._provenance(job)
        while posted < total:
            parts = await asyncio.to_thread(
                functools.partial(plan_parts, provenance=provenance), job.results[posted:], job.id, limit, posted + 1
            )
            part = parts[0]
            first, last = posted + 1, posted + len(part)
            if job.delivery.via_interaction:
                target = await self.personal.target(job)  # type: ignore[assignment]
            try:
                message = await target.send(
                    embed=result_embed(job, first, last, self.bot, self._notes(job, part, first, target)),
                    files=[_file(f) for f in part],
                    view=result_view(job, list(range(first - 1, last))),
                    allowed_mentions=NO_MENTIONS,
                    **self._next_to_card(job, target),
                )
            except discord.HTTPException as exc:
                if exc.code == 40005 and limit > MIN_UPLOAD_LIMIT:
                    limit = max(MIN_UPLOAD_LIMIT, min(limit, sum(f.size for f in part)) // 2)
                    log.info("job %s: upload refused as too large; retrying under %d bytes", job.id, limit)
                    job.delivery = job.delivery.model_copy(update={"upload_limit": limit})
                    await self.bot.engine.save_delivery(job, job.delivery)
                    continue
                if isinstance(target, FollowupTarget) and await self.personal.give_up_token(job, exc):
                    continue
                raise
            posted = last
            await record_message(message.id, job.delivery.model_copy(update={"posted_images": posted}))

    def _provenance(self, job: Job) -> dict[str, str] | None:
        """Prompt, model, seed and job id written into each posted file (``[generation] provenance``)."""
        if not self.bot.settings.generation.provenance:
            return None
        try:
            model = self.bot.services.providers.get(job.provider).capabilities.model
        except SeedreamError:  # the provider was removed from the config since
            model = job.provider
        return provenance_fields(job.id, job.request, model=model, provider=job.provider)

    @staticmethod
    def _next_to_card(job: Job, target: Messageable) -> dict[str, Any]:
        """Results posted in the card's own channel reply to the card, so they are easy to tell apart."""
        delivery = job.delivery
        if delivery.thread_id is not None or delivery.card_message_id is None or target.id != delivery.card_channel:
            return {}
        reference = discord.MessageReference(
            message_id=delivery.card_message_id, channel_id=target.id, fail_if_not_exists=False
        )
        return {"reference": reference}

    def _notes(self, job: Job, part: list[UploadFile], first: int, target: Messageable) -> list[str | Text]:
        notes: list[str | Text] = [*(job.notices if first == 1 else []), *self.personal.notes(job, target)]
        if first == 1 and isinstance(target, discord.TextChannel):  # a channel that could have had a thread
            notes.insert(0, FALLBACK_NOTICE)
        days = self.bot.settings.storage.retention_days
        notes += [
            _n(
                "{file} was re-encoded from {size} to fit this server's upload limit; the original is kept for "
                "{count} day.",
                "{file} was re-encoded from {size} to fit this server's upload limit; the original is kept for "
                "{count} days.",
                days,
                file=f.filename,
                size=f"{f.reencoded_from[0]}×{f.reencoded_from[1]}",
            )
            for f in part
            if f.reencoded_from
        ]
        return notes

    async def _find_posted(self, target: Messageable, job: Job, posted: int) -> list[tuple[int, int]]:
        """Parts a previous run posted beyond ``posted`` images (recorded or not), in order."""
        found: list[tuple[int, int]] = []
        try:
            async for message in target.history(limit=50, oldest_first=False):
                if message.author.id != getattr(self.bot.user, "id", None):
                    continue
                for embed in message.embeds:
                    parsed = part_range(embed.footer.text or "")
                    if parsed is not None and parsed[0] == job.id and parsed[2] > posted:
                        found.append((message.id, parsed[2]))
        except discord.HTTPException as exc:
            log.info("job %s: could not read back earlier posts (%s)", job.id, exc)
        return sorted(found, key=lambda item: item[1])


def _file(upload: UploadFile) -> discord.File:
    if upload.path is not None:
        return discord.File(str(upload.path), filename=upload.filename)
    return discord.File(io.BytesIO(upload.read()), filename=upload.filename)
