"""Acknowledged commands that have no job yet, so a crash between the two never leaves one "thinking…".

A row is written just after the acknowledgement; the job's own insert removes it in the same statement
(trigger ``jobs_settle_pending_answer``), and a refusal removes it after answering. Rows found at start
belong to commands the last run never finished: the chat layer answers them and removes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.jobs.models import InteractionRef
from bot.storage import Store


@dataclass(frozen=True)
class PendingAnswer:
    interaction: InteractionRef
    message_id: int | None
    channel_id: int | None


class PendingAnswers:
    def __init__(self, db: Store) -> None:
        self.db = db

    async def add(
        self, interaction: InteractionRef, message_id: int | None, channel_id: int | None, now: float
    ) -> None:
        await self.db.write(
            "INSERT INTO pending_answers (token, application_id, message_id, channel_id, usable_until, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (token) DO UPDATE SET application_id = excluded.application_id,"
            " message_id = excluded.message_id, channel_id = excluded.channel_id,"
            " usable_until = excluded.usable_until, created_at = excluded.created_at",
            (interaction.token, interaction.application_id, message_id, channel_id, interaction.usable_until, now),
        )

    async def settle(self, interaction: InteractionRef) -> None:
        await self.db.write("DELETE FROM pending_answers WHERE token = ?", (interaction.token,))

    async def left_behind(self, before: float | None = None) -> list[PendingAnswer]:
        """Every row, or those written before ``before`` (where other live processes write rows too)."""
        rows = await self.db.fetchall(
            "SELECT token, application_id, message_id, channel_id, usable_until FROM pending_answers"
            " WHERE created_at < ? ORDER BY created_at",
            (float("inf") if before is None else before,),
        )
        return [
            PendingAnswer(InteractionRef(application_id=row[1], token=row[0], usable_until=row[4]), row[2], row[3])
            for row in rows
        ]
