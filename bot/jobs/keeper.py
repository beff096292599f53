"""The job engine's side of leases (``bot.jobs.leases``): renew them, take over what other processes left,
hear other processes' notifications, and cancel a job here when Cancel was pressed in another process.

A mixin of ``JobEngine``, kept apart so the engine module stays about running one job; the attributes and the
two engine methods it relies on are declared below.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from bot.jobs.leases import CANCEL_CHANNEL, JOBS_CHANNEL, LeaseLost, Leases
from bot.jobs.models import Job, JobState
from bot.jobs.repository import JobRepository
from bot.storage import Store

log = logging.getLogger("bot.jobs.engine")


class LeaseKeeping:
    db: Store
    jobs: JobRepository
    leases: Leases
    clock: Callable[[], float]
    owner: str
    poll_seconds: float
    exclusive: bool
    workers: int
    delivery_workers: int
    _accepting: bool
    _wake: asyncio.Event
    _running: dict[str, asyncio.Task[None]]
    _epochs: dict[str, int]
    _lost: set[str]
    _cancelling: set[str]
    _listener: Any
    _background: set[asyncio.Task[None]]

    def _launch(self, job: Job, epoch: int) -> None:
        raise NotImplementedError

    async def _cancel_here(self, job: Job) -> None:
        raise NotImplementedError

    async def _keep_leases(self) -> None:
        """Every ``poll_seconds``: renew, take over what other processes left, look for queued work and
        cancel requests (both also arrive at once by notification on PostgreSQL; this poll covers a missed one)."""
        while self._accepting:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self._tend_leases()
            except Exception:
                log.exception("lease keeping failed; trying again in %.0f s", self.poll_seconds)

    async def _listen(self) -> None:
        """Notifications from other processes (PostgreSQL); without them the keeper's poll still finds everything."""
        try:
            self._listener = await self.db.listen([JOBS_CHANNEL, CANCEL_CHANNEL], self._notified)
        except Exception as exc:
            log.warning("not listening for other processes' jobs and cancels (%s); polling only", exc)

    async def _tend_leases(self) -> None:
        if self._listener is not None and not self._listener.alive:
            await self._listen()  # the connection dropped: notifications sent meanwhile are covered by this round
        held = await self.leases.renew(self.clock())
        for job_id, task in list(self._running.items()):
            renewal = held.get(job_id)
            epoch = self._epochs.get(job_id)
            if epoch is None or task.done():
                continue
            if renewal is None or renewal.epoch != epoch:
                lease = await self.jobs.lease_of(job_id)
                if lease is not None and lease != (self.owner, epoch):
                    self._lost.add(job_id)
                    task.cancel()
            elif renewal.cancel_requested:
                self._spawn(self._cancel_requested(job_id), f"cancel-{job_id}")
        if not self.exclusive:
            await self._take_over(everything=False)
        self._wake.set()  # jobs queued by other processes

    async def _take_over(self, *, everything: bool) -> None:
        room = 1_000_000 if everything else self.workers + self.delivery_workers - len(self._running)
        if room <= 0:
            return
        for job_id, epoch in await self.leases.take_over(self.clock(), room, everything=everything):
            job = await self.jobs.get(job_id)
            if job is None or job_id in self._running:
                continue
            if not everything:
                log.info("job %s: its process let the lease lapse; resuming it here from %s", job_id, job.state)
            self._launch(job, epoch)

    def _notified(self, channel: str, payload: str) -> None:
        if channel == CANCEL_CHANNEL:
            if payload in self._running:
                self._spawn(self._cancel_requested(payload), f"cancel-{payload}")
        elif self._accepting:
            self._wake.set()

    async def _cancel_requested(self, job_id: str) -> None:
        """Cancel was pressed in another process for a job this one runs."""
        try:
            job = await self.jobs.get(job_id)
            if job is None or job.state not in (JobState.QUEUED, JobState.SUBMITTED) or job_id in self._cancelling:
                return  # ended, or past the provider: its images are being posted
            await self._cancel_here(job)
        except LeaseLost:
            pass
        except Exception:
            log.exception("job %s: cancel asked by another process failed", job_id)

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
