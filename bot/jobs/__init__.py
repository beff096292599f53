"""The persistent job queue: every generation is a row in SQLite that survives restarts."""

from bot.jobs.models import ACTIVE_STATES, Job, JobState

__all__ = ["ACTIVE_STATES", "Job", "JobState"]
