"""What the store can tell a member or the operator: busy for now, not writable at all, or migrated by a
newer seedream-bot; and the admission trigger's refusal, which the quota ledger turns into the member's answer.

The first three are ``SeedreamError``: the Discord layer answers a member with ``user_message`` (never an
"incident"), and the CLI prints it as one line.
"""

from __future__ import annotations

from pathlib import Path

from bot.errors import SeedreamError
from bot.i18n import _


class StoreBusy(SeedreamError):
    """Another process held the database's lock for longer than the busy timeout.

    Raised before anything was written (a transaction that meets it is rolled back whole), so the
    member is told to try again and that nothing was charged.
    """

    code = "busy"
    USER_MESSAGE = _("The bot is busy right now; please try again in a moment. Nothing was charged.")

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(self.USER_MESSAGE, detail=detail)


class ConnectionLost(StoreBusy):
    """The connection to the database was lost before the transaction committed: the server rolled it back,
    so nothing of it was written and it may be run again whole (``Store.run_transaction`` does)."""


class StoreNotWritable(SeedreamError):
    """The database, the folder it lives in or the data folder cannot be written by this process.

    Checked when the store opens, so the bot refuses to start rather than fail every request. The
    message is one line for the operator: the path, what is wrong and what to do.
    """

    code = "store_not_writable"

    def __init__(self, path: Path | str, problem: str, fix: str) -> None:
        self.path = Path(path)
        super().__init__(f"cannot write to {path}: {problem}. {fix}")


class StoreTooNew(SeedreamError):
    """The database was migrated by a newer seedream-bot: its schema is beyond what this one understands."""

    code = "store_too_new"

    def __init__(self, where: str, found: int, known: int) -> None:
        self.found, self.known = found, known
        super().__init__(
            f"the database at {where} is at schema version {found} but this seedream-bot understands up to"
            f" {known}. Upgrade seedream-bot, or point storage.database at another database."
        )


class AdmissionRefused(Exception):
    """The ``jobs_admit`` trigger (migration 0004) refused a job: ``queued``, ``allowance`` or ``daily cap``."""

    PREFIX = "admission refused: "

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
