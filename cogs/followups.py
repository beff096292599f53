"""Results for a member's own install (``Delivery.via_interaction``): the bot is not in the channel, so the only
way to post there is the interaction's own webhook, which Discord accepts for 15 minutes and, for an
interaction only the member's install authorizes, for five follow-up messages.

While both last, result parts are follow-ups. A job still running when the token is about to end says so
on its card; from then on (or once the follow-ups are used up) its results go to the member's DM, where
the member allows DMs. Where they do not, the posting fails and the engine refunds the job. What was
chosen is saved in the job's delivery, so a restart carries on the same way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import DeliveryFailed
from bot.i18n import _
from bot.jobs import Job
from cogs.views import card_locale

if TYPE_CHECKING:
    from cogs.delivery import DiscordSink, Messageable

log = logging.getLogger(__name__)
#: Discord's cap on follow-ups for an interaction only a user install authorizes; one is kept for a notice.
FOLLOWUP_CAP = 5
RESULT_FOLLOWUPS = FOLLOWUP_CAP - 1
MAX_FOLLOWUPS_CODE = 40094
#: The card says "by DM" this long before the bot stops using the token (which is itself a minute early).
NOTICE_LEAD_SECONDS = 30.0
#: Member-facing words of this module, shown in the language of the member who asked (``card_locale``).
STILL_WORKING = _(
    "⏳ Still working. Discord lets me answer here for 15 minutes only, so I'll send your pictures by DM "
    "when they are ready; if your DMs are closed to me, nothing is charged."
)
SENT_BY_DM = _("Here are your pictures: they took longer than Discord lets me answer where you asked.")
NO_DM = _(
    "Your pictures took longer than Discord lets me answer where you asked, and I can't send you a DM, "
    "so nothing was charged."
)


class FollowupTarget:
    """The interaction's webhook, shaped like a channel for the sink's posting loop (``send`` only)."""

    def __init__(self, sink: DiscordSink, job: Job) -> None:
        self.sink, self.job = sink, job
        self.id = int(job.delivery.card_channel or 0)
        self.guild = None

    async def send(self, **kwargs: Any) -> discord.Message:
        assert self.job.delivery.interaction is not None
        kwargs.pop("reference", None)
        webhook = self.sink.followup(self.job.delivery.interaction)
        message = await webhook.send(wait=True, **kwargs)
        delivery = self.job.delivery
        self.job.delivery = delivery.model_copy(update={"followups_sent": delivery.followups_sent + 1})
        return message


class PersonalDelivery:
    def __init__(self, sink: DiscordSink, *, poll_seconds: float = 5.0) -> None:
        self.sink = sink
        self.poll_seconds = poll_seconds  # how often a running job checks its token's remaining life
        self._watching: dict[str, asyncio.Task[None]] = {}

    def token_usable(self, job: Job) -> bool:
        ref = job.delivery.interaction
        return ref is not None and self.sink.wall_clock() < ref.usable_until

    async def target(self, job: Job) -> Messageable | FollowupTarget:
        """Follow-ups while the token lives and some are left; the member's DM after that."""
        delivery = job.delivery
        if delivery.dm_channel_id is None and self.token_usable(job) and delivery.followups_sent < RESULT_FOLLOWUPS:
            return FollowupTarget(self.sink, job)
        return await self._dm(job)

    async def _dm(self, job: Job) -> Messageable:
        bot = self.sink.bot
        if job.delivery.dm_channel_id is not None:
            return await self.sink._channel(job.delivery.dm_channel_id)
        try:
            user = bot.get_user(job.requester_id) or await bot.fetch_user(job.requester_id)
            channel = await user.create_dm()
        except discord.HTTPException as exc:
            raise DeliveryFailed(NO_DM, retryable=exc.status >= 500 or exc.status == 429, detail=str(exc)) from None
        job.delivery = job.delivery.model_copy(update={"dm_channel_id": channel.id})
        await bot.engine.save_delivery(job, job.delivery)
        return channel

    async def give_up_token(self, job: Job, exc: discord.HTTPException) -> bool:
        """Discord refused the token or the follow-up cap: note it, so the next part goes by DM. False when
        the error is something else."""
        delivery = job.delivery
        if exc.code == MAX_FOLLOWUPS_CODE:
            update: dict[str, Any] = {"followups_sent": FOLLOWUP_CAP}
        elif exc.status == 401 or (exc.code in (10015, 50027) and delivery.interaction is not None):
            assert delivery.interaction is not None
            update = {"interaction": delivery.interaction.model_copy(update={"usable_until": 0.0})}
        else:
            return False
        log.info("job %s: the interaction can take no more follow-ups (%s); the rest goes by DM", job.id, exc)
        job.delivery = delivery.model_copy(update=update)
        await self.sink.bot.engine.save_delivery(job, job.delivery)
        return True

    def notes(self, job: Job, target: object) -> list[str]:
        on_dm = job.delivery.dm_channel_id is not None and getattr(target, "id", None) == job.delivery.dm_channel_id
        return [SENT_BY_DM.render(card_locale(job))] if on_dm else []

    # -- the token's end ----------------------------------------------------------------------------
    def watch(self, job: Job) -> None:
        """Say on the card, while it still can, that a job outliving the token will arrive by DM."""
        delivery = job.delivery
        if not delivery.via_interaction or delivery.interaction is None or job.id in self._watching:
            return
        task = self.sink._spawn(self._watch(job), f"token-{job.id}")
        self._watching[job.id] = task
        task.add_done_callback(lambda _t: self._watching.pop(job.id, None))

    async def _watch(self, job: Job) -> None:
        ref = job.delivery.interaction
        assert ref is not None
        notice_at = ref.usable_until - NOTICE_LEAD_SECONDS
        while self.sink.wall_clock() < notice_at:
            if self.sink.has_ended(job.id):
                return
            await asyncio.sleep(min(self.poll_seconds, max(0.01, notice_at - self.sink.wall_clock())))
        if not self.sink.has_ended(job.id):
            self.sink.refresh_card(job)  # the card's text now carries STILL_WORKING (see ``card_note``)

    def card_note(self, job: Job) -> str | None:
        """What the card adds near the token's end: the results will come by DM."""
        ref = job.delivery.interaction
        if not job.delivery.via_interaction or ref is None or not job.is_active:
            return None
        if self.sink.wall_clock() < ref.usable_until - NOTICE_LEAD_SECONDS:
            return None
        return STILL_WORKING.render(card_locale(job))
