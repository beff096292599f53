"""Runs jobs: a dispatcher picks fairly, workers drive each job through its saved states.

Fairness: the dispatcher looks only at each member's oldest queued job and prefers the member with
the fewest running jobs, then the one served least recently (round-robin), so one member's ten jobs
cannot starve everyone. Caps: ``workers`` jobs generating at once, ``per_user_in_flight`` per member,
and each provider's ``max_concurrent``. Posting is a stage of its own: a job whose images are
downloaded frees its worker for the next job while it waits for Discord (threads, rate limits,
uploads), up to ``delivery_workers`` jobs posting at once.

Resumption: on start every unfinished job continues from its last saved state: a submitted task is
polled (never created again), downloaded images are posted (never regenerated), posted jobs finish.

Several processes: a job runs where its lease is (``bot.jobs.leases``). The dispatcher claims each queued
job before it starts it, and the claim counts every process's jobs against the provider's ``max_concurrent``;
a keeper renews this process's leases every ``poll_seconds``, takes over started jobs whose process let
the lease lapse, and cancels jobs whose Cancel was pressed in another process. On the embedded SQLite
store (``exclusive``) this process is the only one: at start it takes every unfinished job, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from bot.errors import (
    DeliveryFailed,
    InvalidRequest,
    NotAllowed,
    OutOfCredit,
    QuotaExceeded,
    SeedreamError,
)
from bot.i18n import Text, _
from bot.jobs.keeper import LeaseKeeping
from bot.jobs.leases import JOBS_CHANNEL, Fence, LeaseLost, Leases, process_identity
from bot.jobs.models import FINAL_STATES, Delivery, Job, JobState, new_job_id
from bot.jobs.repository import JobRepository
from bot.jobs.sink import ResultSink
from bot.metrics import Metrics
from bot.provider_health import ProviderHealth
from bot.providers.base import GenerationRequest
from bot.providers.registry import ProviderRegistry
from bot.quota import Ledger
from bot.storage import Store, StoreBusy

log = logging.getLogger(__name__)
Clock = Callable[[], float]


DELIVERY_ATTEMPTS = 5
BUSY_ATTEMPTS = 6  # a running job waits out a busy database this often (1 s, 2 s, 4 s, ...) before failing
#: How long Cancel pressed in one process waits for the process running the job to confirm it.
CANCEL_WAIT_SECONDS = 10.0
#: How far back a start looks for failed or cancelled jobs whose card may not show it yet.
OUTCOME_RECOVERY_SECONDS = 24 * 3600
INTERRUPTED_MESSAGE = _(
    "The bot restarted while sending your request to the image provider. To make sure you are never charged "
    "twice it was not sent again, and your credits were refunded; please try again."
)


class JobEngine(LeaseKeeping):
    def __init__(
        self,
        db: Store,
        providers: ProviderRegistry,
        ledger: Ledger,
        sink: ResultSink,
        *,
        workers: int,
        per_user_in_flight: int,
        max_queued_per_user: int,
        delivery_workers: int = 8,
        clock: Clock = time.time,
        health: ProviderHealth | None = None,
        metrics: Metrics | None = None,
        lease_seconds: float = 60.0,
        poll_seconds: float = 5.0,
        exclusive: bool | None = None,
    ) -> None:
        self.db = db
        self.metrics = metrics or Metrics()
        self.health = health or ProviderHealth({}, clock)
        self.jobs = JobRepository(db)
        self.providers = providers
        self.ledger = ledger
        self.sink = sink
        self.workers = workers
        self.per_user_in_flight = per_user_in_flight
        self.max_queued_per_user = max_queued_per_user
        self.delivery_workers = delivery_workers
        self.clock = clock
        self.busy_retry_seconds = 1.0
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._generating: set[str] = set()  # running jobs not yet past the provider (they hold a worker)
        self._finishing: set[str] = set()  # posted jobs showing their outcome (they hold no delivery slot)
        self._running_by_user: dict[int, int] = {}
        self._last_served: dict[int, float] = {}
        self._cancelling: set[str] = set()
        self._cancels: set[str] = set()  # jobs a Cancel here ended or is ending (a few ids per process lifetime)
        self._dispatcher: asyncio.Task[None] | None = None
        self._accepting = True
        self.idle = asyncio.Event()
        self.owner = process_identity()
        self.leases = Leases(db, self.owner, lease_seconds)
        self.poll_seconds = poll_seconds
        #: The only process on this store (SQLite): takes every unfinished job at start, however it is leased.
        self.exclusive = db.dialect.name == "sqlite" if exclusive is None else exclusive
        self._epochs: dict[str, int] = {}  # the lease this process holds on each job it runs
        self._lost: set[str] = set()  # running jobs another process took over: stopped, never written again
        self._keeper: asyncio.Task[None] | None = None
        self._listener: Any = None
        self._background: set[asyncio.Task[None]] = set()

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume unfinished work, then start dispatching the queue.

        The only process on its store takes every unfinished job at once; one of several takes those whose
        process let the lease lapse (now, and at every keeper round after)."""
        now = self.clock()
        if self.exclusive:
            await self.leases.release_queued()
        await self._take_over(everything=self.exclusive)
        for job in await self.jobs.active():
            if job.state == JobState.QUEUED and job.attempts and not self._safe_to_resubmit(job):
                epoch = await self.leases.claim(job.id, now)
                if epoch is not None:  # held by nobody: its process died while sending it
                    fence = Fence(self.owner, epoch)
                    await self._finish_failed(job, JobState.FAILED, "interrupted", INTERRUPTED_MESSAGE, fence)
        await self._listen()
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="job-dispatcher")
        self._keeper = asyncio.create_task(self._keep_leases(), name="job-leases")
        self._wake.set()
        # Where other processes run, one may be showing an outcome right now: leave it a lease's time to do so.
        settled = now if self.exclusive else now - self.leases.lease_seconds
        for job in await self.jobs.unshown_outcomes(now - OUTCOME_RECOVERY_SECONDS):
            if job.updated_at <= settled:
                message: str | Text = (job.error or "").partition(": ")[2] or _("This job did not complete.")
                await self._show_outcome(job, message)

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Take no new work; give running jobs ``grace_seconds`` to reach a saved state, then stop them.

        A stopped job keeps its last saved state and is resumed on the next start.
        """
        self._accepting = False
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._listener is not None:
            await self._listener.close()
        if self._dispatcher is not None:
            self._wake.set()
            _done, still = await asyncio.wait({self._dispatcher}, timeout=5)
            for task in still:  # only if a dispatch step itself is stuck
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        tasks = list(self._running.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        try:  # another process may take the stopped jobs over at once, rather than when the leases run out
            await self.leases.release_mine()
        except SeedreamError as exc:
            log.warning("leases not released (%s); other processes take the jobs over when they lapse", exc)

    async def run_one(self, job: Job) -> Job:
        """Drive one job to its end without the dispatcher (the CLI); returns its final row."""
        epoch = await self.leases.claim(job.id, self.clock())
        if epoch is None:
            raise SeedreamError("Another process took this job; see `seedream-bot status`.")
        self._epochs[job.id] = epoch
        try:
            await self._run(job)
        finally:
            self._epochs.pop(job.id, None)
        return await self.jobs.get(job.id) or job

    async def counts_by_state(self) -> dict[str, int]:
        rows = await self.db.fetchall("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        return {row[0]: row[1] for row in rows}

    def wake(self) -> None:
        self._wake.set()

    @property
    def dispatching(self) -> bool:
        """The dispatcher runs: it starts queued jobs (and resumed the unfinished ones at start)."""
        return self._dispatcher is not None and not self._dispatcher.done()

    @property
    def running_count(self) -> int:
        return len(self._running)

    # -- submitting ---------------------------------------------------------------------------------
    async def enqueue(
        self,
        *,
        kind: str,
        requester_id: int,
        guild_id: int | None,
        channel_id: int | None,
        provider_name: str | None,
        request: GenerationRequest,
        quota_limit: int | None,
        delivery: Delivery | None = None,
        parent_job_id: str | None = None,
        notices: list[str] | None = None,
    ) -> tuple[Job, int]:
        """Validate, reserve quota and write the job in one transaction; returns it with its queue position."""
        if not self._accepting:
            raise NotAllowed(_("The bot is restarting; please try again in a minute."))
        provider = self.providers.get(provider_name)
        self.health.ensure_available(provider.name)
        provider.capabilities.check(request)
        weight = self.providers.cost_weight(provider.name)
        now = self.clock()
        job = Job(
            id=new_job_id(),
            kind=kind,
            requester_id=requester_id,
            guild_id=guild_id,
            channel_id=channel_id,
            provider=provider.name,
            request=request,
            state=JobState.QUEUED,
            cost_units=self.ledger.units_for(request.count, request.resolution, weight),
            delivery=delivery or Delivery(),
            notices=list(notices or []),
            parent_job_id=parent_job_id,
            created_at=now,
            updated_at=now,
        )
        try:
            await self.ledger.admit(
                lambda admission: self.jobs.admit(job, admission),
                guild_id=guild_id,
                user_id=requester_id,
                units=job.cost_units,
                limit=quota_limit,
                queued_cap=self.max_queued_per_user,
            )
        except QuotaExceeded:
            self.metrics.quota_refused()
            raise
        position = await self.jobs.position(job)
        log.info("job %s queued by %s on %s (position %d)", job.id, requester_id, provider.name, position)
        self.wake()
        try:  # the job is queued: a lost wake-up only waits for the other processes' next poll
            await self.db.notify(JOBS_CHANNEL, provider.name)
        except Exception as exc:
            log.warning("job %s: other processes not notified (%s); they find it at their next poll", job.id, exc)
        return job, position

    async def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job and refund it; finished jobs are left alone."""
        job = await self.jobs.get(job_id)
        if job is None:
            raise InvalidRequest(_("That job no longer exists."))
        if job.state == JobState.DONE:
            raise InvalidRequest(_("That job has already finished."))
        if job.state == JobState.CANCELLED:
            raise InvalidRequest(_("That job has already cancelled."))
        if job.state in FINAL_STATES:
            raise InvalidRequest(_("That job has already failed."))
        if job.state in (JobState.DOWNLOADED, JobState.POSTED):
            raise InvalidRequest(_("That job has already finished generating; its images are being posted."))
        if job_id in self._running:
            await self._cancel_here(job)
            return await self.jobs.get(job_id) or job
        epoch = await self.leases.claim(job_id, self.clock())
        if epoch is not None:  # queued, or its process is gone: this process ends it
            fence = Fence(self.owner, epoch)
            await self._finish_failed(job, JobState.CANCELLED, "cancelled", _("This job was cancelled."), fence)
            return await self.jobs.get(job_id) or job
        # Another process runs it: ask it to stop the job, and wait (a little) for it to say so.
        await self.leases.request_cancel(job_id, self.clock())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CANCEL_WAIT_SECONDS):
                while (current := await self.jobs.get(job_id)) is not None and current.state not in FINAL_STATES:
                    await asyncio.sleep(0.2)
        return await self.jobs.get(job_id) or job

    async def _cancel_here(self, job: Job) -> None:
        """Stop a job this process runs and record it cancelled, under the lease the job ran with.

        Once per job: the same request can arrive twice (a notification and the poll behind it), and the
        member must be told once."""
        if job.id in self._cancels:
            return
        self._cancels.add(job.id)
        try:
            fence = self._fence(job.id)
            task = self._running.get(job.id)
            if task is not None:
                self._cancelling.add(job.id)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._finish_failed(job, JobState.CANCELLED, "cancelled", _("This job was cancelled."), fence)
        except BaseException:
            self._cancels.discard(job.id)  # not ended: a later request may try again
            raise

    # -- dispatching --------------------------------------------------------------------------------
    async def _dispatch_loop(self) -> None:
        """Runs until ``stop`` clears ``_accepting`` and wakes it (not by cancellation: on Python 3.11 a
        cancel that races with the wake-up inside ``asyncio.wait_for`` can be lost, and stop would hang)."""
        while self._accepting:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):  # also notices an expired credit pause
                    await self._wake.wait()
            self._wake.clear()
            if not self._accepting:
                return
            try:
                await self._dispatch_once()
            except Exception:
                log.exception("dispatcher failed; retrying shortly")
                await asyncio.sleep(1.0)
                self._wake.set()

    async def _dispatch_once(self) -> None:
        full: set[str] = set()  # providers whose bot-wide max_concurrent other processes' jobs fill
        while (
            len(self._generating) < self.workers
            and len(self._running) - len(self._finishing) < self.workers + self.delivery_workers
        ):
            candidates = [
                head
                for head in await self.jobs.queued_heads(self.clock())
                if head[0] not in self._running
                and self._running_by_user.get(head[1], 0) < self.per_user_in_flight
                and head[2] not in full
                and not self._provider_full(head[2])
            ]
            if not candidates:
                if not self._running:
                    self.idle.set()
                return
            job_id, requester, provider, _created = min(
                candidates, key=lambda h: (self._running_by_user.get(h[1], 0), self._last_served.get(h[1], 0.0), h[3])
            )
            epoch = await self.leases.claim(job_id, self.clock(), provider=provider, limit=self._limit(provider))
            if epoch is None:
                lease = await self.jobs.lease_of(job_id)
                if lease is not None and lease[0] is None:  # nobody took it: the provider is full bot-wide
                    full.add(provider)
                continue
            job = await self.jobs.get(job_id)
            if job is None or job.state != JobState.QUEUED:
                continue
            self._last_served[requester] = time.monotonic()
            self._launch(job, epoch)

    def _safe_to_resubmit(self, job: Job) -> bool:
        try:
            return self.providers.get(job.provider).safe_to_resubmit
        except SeedreamError:
            return False

    def _provider_full(self, name: str) -> bool:
        """No free slot, or paused for credit (its queued jobs wait for the resume or the cool-down)."""
        if self.health.is_paused(name):
            return True
        try:
            return self.providers.get(name).slots.locked()
        except SeedreamError:
            return False

    def _limit(self, name: str) -> int | None:
        try:
            return self.providers.get(name).max_concurrent
        except SeedreamError:
            return None  # removed from the config: the job fails when it runs

    def _fence(self, job_id: str) -> Fence | None:
        """The lease this process holds on ``job_id`` (None: it does not run it)."""
        epoch = self._epochs.get(job_id)
        return Fence(self.owner, epoch) if epoch is not None else None

    def _launch(self, job: Job, epoch: int) -> None:
        self.idle.clear()
        self._epochs[job.id] = epoch
        self._running_by_user[job.requester_id] = self._running_by_user.get(job.requester_id, 0) + 1
        if job.state in (JobState.QUEUED, JobState.SUBMITTED):
            self._generating.add(job.id)
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        self._running[job.id] = task
        task.add_done_callback(functools.partial(self._done, job))

    def _done(self, job: Job, _task: asyncio.Task[None]) -> None:
        self._running.pop(job.id, None)
        self._epochs.pop(job.id, None)
        self._lost.discard(job.id)
        self._generating.discard(job.id)
        self._finishing.discard(job.id)
        self._cancelling.discard(job.id)
        left = self._running_by_user.get(job.requester_id, 1) - 1
        if left:
            self._running_by_user[job.requester_id] = left
        else:
            self._running_by_user.pop(job.requester_id, None)
        if self._accepting:
            self._wake.set()
        if not self._running:
            self.idle.set()

    # -- running one job ----------------------------------------------------------------------------
    async def _run(self, job: Job) -> None:
        try:
            await self._run_leased(job)
        except LeaseLost:
            log.warning("job %s was taken over by another process; this one leaves it alone", job.id)
        except asyncio.CancelledError:
            if job.id in self._lost:
                log.warning("job %s was taken over by another process; stopped here", job.id)
                return
            raise

    async def _run_leased(self, job: Job) -> None:
        try:
            if job.state == JobState.QUEUED and job.attempts and not self._safe_to_resubmit(job):
                # Its process died while sending it: the provider may have billed it, so never send it again.
                await self._finish_failed(job, JobState.FAILED, "interrupted", INTERRUPTED_MESSAGE)
                return
            await self._advance_while_busy(job)
        except asyncio.CancelledError:
            if job.id not in self._cancelling and job.id not in self._lost:
                log.info("job %s interrupted in state %s; it resumes on the next start", job.id, job.state)
            raise
        except LeaseLost:
            raise
        except SeedreamError as exc:
            log.warning("job %s failed: %s (%s)", job.id, exc.code, exc)
            # paused (and moderators told) before the failure is recorded: once it shows, no job may start there
            if isinstance(exc, OutOfCredit) and self.health.pause_for_credit(job.provider):
                await self._alert(
                    job, _("The {provider} account is out of credit: {reason}", provider=job.provider, reason=exc.text)
                )
            await self._finish_failed(job, JobState.FAILED, exc.code, exc.text)
        except Exception:
            log.exception("job %s failed unexpectedly", job.id)
            await self._finish_failed(
                job, JobState.FAILED, "internal", _("Sorry, something went wrong on our side (job {job}).", job=job.id)
            )

    async def _advance_while_busy(self, job: Job) -> None:
        """A database busy for a while (another process holds the write lock) pauses a running job instead of
        failing it: its images may already be made and paid for. It goes on from its last saved state."""
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            try:
                await self._advance(job)
                return
            except StoreBusy:
                if attempt == BUSY_ATTEMPTS:
                    raise
                log.warning("job %s: the database is busy; trying again (%d of %d)", job.id, attempt, BUSY_ATTEMPTS)
                await asyncio.sleep(min(30.0, self.busy_retry_seconds * 2 ** (attempt - 1)))

    async def _set(self, job: Job, **fields: object) -> None:
        await self.jobs.set(job.id, self.clock(), fence=self._fence(job.id), **fields)
        for name, value in fields.items():
            if hasattr(job, name):
                setattr(job, name, value)

    async def _advance(self, job: Job) -> None:
        provider = self.providers.get(job.provider)
        if job.state in (JobState.QUEUED, JobState.SUBMITTED):
            async with provider.slots:
                if job.state == JobState.QUEUED:
                    await self._set(job, attempts=job.attempts + 1, started_at=self.clock())
                    await self.sink.progress(job, 0)
                    submission = await provider.submit(job.request)
                    await self.jobs.set(
                        job.id,
                        self.clock(),
                        fence=self._fence(job.id),
                        state=JobState.SUBMITTED,
                        provider_task=submission,
                    )
                    job.state, job.submission = JobState.SUBMITTED, submission
                    log.info("job %s submitted to %s", job.id, provider.name)
                    await self.sink.progress(job, 0)
                if job.submission is None:
                    raise RuntimeError(f"job {job.id} is submitted but has no saved submission")
                result = await provider.collect(job.request, job.submission)
            self._free_worker(job)  # the images are on disk: recording them need not hold a worker
            generated = len(result.images)
            self.metrics.images_generated(provider.name, generated, self.clock() - (job.started_at or job.created_at))
            async with self.db.transaction() as conn:
                await self.jobs.update(  # first: a lost lease rolls the whole step back
                    conn,
                    job.id,
                    self.clock(),
                    fence=self._fence(job.id),
                    state=JobState.DOWNLOADED,
                    notices=job.notices + result.notices,
                )
                await self.jobs.save_results(conn, job.id, result.images, self.clock())
                per_image = job.cost_units // max(1, job.request.count)
                await self.ledger.settle(conn, job.id, generated * per_image, note="generated")
            job.state, job.results, job.notices = JobState.DOWNLOADED, result.images, job.notices + result.notices
            log.info("job %s downloaded %d image(s)", job.id, generated)
            await self.sink.progress(job, 0)
        if job.state == JobState.DOWNLOADED:
            await self._deliver(job)
            job.state = JobState.POSTED  # not written on its own: the DONE write below records it
        if job.state == JobState.POSTED:
            # The card says "done" before the row does: a restart in between shows it again, never not at all.
            self._finishing.add(job.id)
            if self._accepting:
                self._wake.set()
            job.state, job.finished_at = JobState.DONE, self.clock()
            await self.sink.finished(job)
            await self._set(job, state=JobState.DONE, finished_at=job.finished_at)
            self.metrics.job_ended(JobState.DONE.value)
            log.info("job %s done", job.id)

    def _free_worker(self, job: Job) -> None:
        """The job is past the provider: let the dispatcher start the next one while this one posts."""
        self._generating.discard(job.id)
        if self._accepting:
            self._wake.set()

    async def _deliver(self, job: Job) -> None:
        """Post the results, retrying while the chat service says "try again" (5xx, rate limits)."""
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            try:
                await self.sink.deliver(job, functools.partial(self._record_message, job))
                return
            except DeliveryFailed as exc:
                if not exc.retryable or attempt == DELIVERY_ATTEMPTS:
                    raise
                log.warning("job %s: posting failed (%s); attempt %d of %d", job.id, exc, attempt, DELIVERY_ATTEMPTS)
                await asyncio.sleep(min(60.0, 2.0**attempt))

    async def save_delivery(self, job: Job, delivery: Delivery) -> None:
        """Persist where the job's messages are (status message, thread) as soon as they exist."""
        await self._set(job, delivery=delivery)

    async def _alert(self, job: Job, message: str | Text) -> None:
        try:
            await self.sink.alert(job, message)
        except Exception:
            log.exception("job %s: could not alert the moderators", job.id)

    async def _record_message(self, job: Job, message_id: int, delivery: Delivery | None = None) -> None:
        fields: dict[str, object] = {"posted_message_ids": [*job.posted_message_ids, message_id]}
        if delivery is not None:
            fields["delivery"] = delivery
        await self._set(job, **fields)

    async def _finish_failed(
        self, job: Job, state: JobState, code: str, message: str | Text, fence: Fence | None = None
    ) -> None:
        """End a job that will not complete: record why and refund what the member did not receive.

        Under ``fence`` (by default the lease this process runs the job with), if the job has one."""
        fence = fence or self._fence(job.id)
        async with self.db.transaction() as conn:
            current = await self.jobs.get(job.id, conn)
            if current is None or current.state in FINAL_STATES:
                return
            await self.jobs.update(
                conn,
                job.id,
                self.clock(),
                fence=fence,
                state=state,
                error=f"{code}: {message}",
                finished_at=self.clock(),
            )
            if current.state == JobState.DOWNLOADED:
                await self.ledger.refund_everything(conn, job.id, note=code)  # made, but never delivered
            else:
                await self.ledger.settle(conn, job.id, 0, note=code)
        job.state, job.error, job.delivery = state, f"{code}: {message}", current.delivery
        self.metrics.job_ended(state.value, code)
        await self._show_outcome(job, message, fence)

    async def _show_outcome(self, job: Job, message: str | Text, fence: Fence | None = None) -> None:
        """Let the sink show a failed or cancelled job's outcome; remember it did, so a restart does not repeat it."""
        try:
            await self.sink.failed(job, message)
        except Exception:
            log.exception("job %s: could not show its outcome yet; trying again at the next start", job.id)
            return
        shown = job.delivery.model_copy(update={"outcome_shown": True})
        await self.jobs.set(job.id, self.clock(), fence=fence, delivery=shown)
