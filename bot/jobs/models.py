"""A job and its states. The row in SQLite is the truth; these are just typed views of it."""

from __future__ import annotations

import json
import secrets
import time
from enum import StrEnum

import aiosqlite
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from bot.images import StoredImage
from bot.providers.base import GenerationRequest, Submission


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


class InteractionRef(BaseModel):
    """How to reach the interaction a job's card answers, while Discord still accepts its token."""

    application_id: int
    token: str
    #: Wall-clock time after which the token is no longer used (Discord's 15 minutes, less a margin).
    usable_until: float


class Delivery(BaseModel):
    """Where a job's card and results live on the chat service, saved with the job so a restart finds them.

    Ids are plain integers (the core knows no chat library). The card is the job's public status message:
    an interaction's own response, or a reply to the member's message; results go into a thread started
    from the card where ``threads_allowed``, otherwise next to the card.
    """

    model_config = ConfigDict(extra="ignore")  # rows written by older versions carry a few retired keys

    channel_id: int | None = None
    card_message_id: int | None = Field(
        default=None, validation_alias=AliasChoices("card_message_id", "status_message_id")
    )
    card_channel_id: int | None = Field(
        default=None, validation_alias=AliasChoices("card_channel_id", "status_channel_id")
    )
    interaction: InteractionRef | None = None
    reply_to_message_id: int | None = None  # a plain message asked for it: the card replies to that message
    threads_allowed: bool = False
    thread_id: int | None = None
    fallback: bool = False  # a thread was wanted but could not be made: results go next to the card
    posting_started: bool = False
    posted_images: int = 0
    upload_limit: int | None = None
    outcome_shown: bool = False  # a failed or cancelled job's card shows it and the member was told
    locale: str | None = None  # the language of the member who asked (a catalog's locale): the card's and notices'
    #: A member's own install (a DM, group DM or server without the bot): the card is the interaction's
    #: answer and results are its follow-ups while the token lives; after that they go by DM.
    via_interaction: bool = False
    dm_channel_id: int | None = None  # the member's DM, once results had to go there
    followups_sent: int = 0  # follow-up messages this job's interaction used (Discord caps them)

    @property
    def card_channel(self) -> int | None:
        return self.card_channel_id or self.channel_id

    @property
    def results_channel(self) -> int | None:
        """Where result parts are posted: the job's thread, else the card's channel."""
        return self.thread_id or self.card_channel


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
    delivery: Delivery = Delivery()
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
            delivery=Delivery.model_validate_json(row["delivery"]),
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
