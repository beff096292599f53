"""The port between the job engine and whatever shows a job to people: the Discord layer, or files for the CLI.

The engine decides when; a sink decides how. Kept apart from the engine so a deliverer depends on this
contract, not on the engine's internals.
"""

from __future__ import annotations

from typing import Protocol

from bot.i18n import Text
from bot.jobs.models import Delivery, Job

__all__ = ["RecordMessage", "ResultSink"]


class RecordMessage(Protocol):
    """Save a posted message's id, and the delivery progress that goes with it, in one write."""

    async def __call__(self, message_id: int, delivery: Delivery | None = None) -> None: ...


class ResultSink(Protocol):
    """Where a job's progress and results go (the Discord layer, or files for the CLI)."""

    async def progress(self, job: Job, position: int) -> None: ...

    async def deliver(self, job: Job, record_message: RecordMessage) -> None:
        """Post the results; skip what ``job.posted_message_ids`` shows as already posted."""

    async def finished(self, job: Job) -> None:
        """Show the job as done (its results are posted); the job is recorded DONE only after this returns."""

    async def failed(self, job: Job, message: str | Text) -> None:
        """Show a failed or cancelled job's outcome and tell the member; raise if it could not be shown yet."""

    async def alert(self, job: Job, message: str | Text) -> None:
        """Tell the server's moderators about a problem they must fix (e.g. the provider is out of credit)."""
