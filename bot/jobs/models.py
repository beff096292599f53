"""A job and its states. The row in SQLite is the truth; these are just typed views of it."""

from __future__ import annotations

import json
import secrets
import time
from enum import StrEnum
from typing import Any

import aiosqlite
from pydantic import BaseModel

from bot.providers.base import GenerationRequest, StoredImage, Submission


class JobState(StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"  # the provider accepted it; its task id is saved
    DOWNLOADED = "downloaded"  # result files saved and recorded
    POSTED = "posted"  # every result message sent and recorded
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.SUBMITTED, JobState.DOWNLOADED, JobState.POSTED})
FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


def new_job_id() -> str:
    """Sortable by creation time, unique under bursts, short enough for a Discord custom_id (19 chars)."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(4)}"


class Job(BaseModel):
    id: str
    kind: str
    requester_id: int
    guild_id: int | None
    channel_id: int | None
    provider: str
    request: GenerationRequest
    state: JobState
    submission: Submission | None = None
    attempts: int = 0
    error: str | None = None
    cost_units: int = 0
    delivery: dict[str, Any] = {}
    posted_message_ids: list[int] = []
    notices: list[str] = []
    parent_job_id: str | None = None
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    results: list[StoredImage] = []

    @classmethod
    def from_row(cls, row: aiosqlite.Row, references: list[StoredImage], results: list[StoredImage]) -> Job:
        options = json.loads(row["options"])
        options["references"] = [r.model_dump() for r in references]
        return cls(
            id=row["id"],
            kind=row["kind"],
            requester_id=row["requester_id"],
            guild_id=row["guild_id"],
            channel_id=row["channel_id"],
            provider=row["provider"],
            request=GenerationRequest.model_validate(options),
            state=JobState(row["state"]),
            submission=Submission.model_validate_json(row["provider_task"]) if row["provider_task"] else None,
            attempts=row["attempts"],
            error=row["error"],
            cost_units=row["cost_units"],
            delivery=json.loads(row["delivery"]),
            posted_message_ids=json.loads(row["posted_message_ids"]),
            notices=json.loads(row["notices"]),
            parent_job_id=row["parent_job_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            results=results,
        )

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES
