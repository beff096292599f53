"""Riding out a lost PostgreSQL connection: which errors mean "the connection is gone", and the retry policy.

A server restart, a failover or an operator's ``pg_terminate_backend`` ends every open connection. The pool
opens new ones, so the store retries with backoff (a short exponential wait with jitter, for at most
``RECONNECT_WINDOW_S``) what is safe to retry:

* a read, always;
* a single autocommit statement (``write``): every one in this code base is idempotent (an UPDATE to given
  values, an upsert, a DELETE) except the job's admission INSERT, whose primary key is a fresh job id. If the
  connection was lost after that INSERT was sent, the retry meets its own row (a unique violation on the
  retry) and the write counts as done, so a job is neither lost nor written twice;
* a transaction, as a whole (``run_transaction``), only when it did not commit: a connection lost before
  COMMIT was sent is rolled back by the server. A connection lost during COMMIT leaves the outcome unknown
  and is not retried (``PostgresUnavailable``).

Beyond the window the call fails with ``PostgresUnavailable``: one line for the operator, "try again in a
moment" for a member.
"""

from __future__ import annotations

import logging

import asyncpg
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_delay
from tenacity.wait import wait_exponential_jitter

from bot.storage.errors import ConnectionLost

log = logging.getLogger(__name__)

#: How long a call keeps trying to reach the server again before it gives up.
RECONNECT_WINDOW_S = 15.0
#: SQLSTATE classes 08 (connection exception) and 57P01-57P03 (the server is shutting down, crashed, starting).
_LOST_STATES = {"57P01", "57P02", "57P03"}


def connection_lost(exc: BaseException) -> bool:
    """True if ``exc`` means the connection to the server is gone (or cannot be opened right now)."""
    if isinstance(exc, ConnectionLost | asyncpg.PostgresConnectionError | ConnectionError | OSError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state in _LOST_STATES or state.startswith("08")
    if isinstance(exc, asyncpg.InterfaceError):
        return "closed" in str(exc)  # "connection is closed", "the pool is closing" is not ours to retry
    # A connection the server ended may report "another operation is in progress" before it looks closed:
    # no connection here is ever shared by two operations, so this means it is broken.
    return isinstance(exc, asyncpg.InternalClientError)


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("lost the PostgreSQL connection (%s); retrying (attempt %d)", type(exc).__name__, state.attempt_number)


def reconnecting(window: float = RECONNECT_WINDOW_S) -> AsyncRetrying:
    """``async for attempt in reconnecting(): with attempt: …``: retries a call whose connection was lost."""
    return AsyncRetrying(
        retry=retry_if_exception(connection_lost),
        wait=wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.1),
        stop=stop_after_delay(window),
        before_sleep=_log_retry,
        reraise=True,
    )
