"""Domain errors: one small taxonomy the whole bot understands.

Every error carries a ``user_message`` that is safe to show a server member (no keys, no URLs,
no stack traces). Providers map their HTTP errors onto these; the Discord layer turns them into
polite ephemeral replies.
"""

from __future__ import annotations


class SeedreamError(Exception):
    """Base of every error a user may be told about."""

    #: Short machine name, used in logs, metrics and the jobs table.
    code = "error"

    def __init__(self, user_message: str, *, detail: str | None = None) -> None:
        super().__init__(detail or user_message)
        self.user_message = user_message
        self.detail = detail


class ConfigError(SeedreamError):
    """The configuration file or environment is wrong; the message names the key."""

    code = "config"


class InvalidRequest(SeedreamError):
    """The user's request cannot be served as asked (their input, not a fault of ours)."""

    code = "invalid_request"


class ImageRejected(InvalidRequest):
    """A reference image is missing, broken, too large or of a kind we do not accept."""

    code = "image_rejected"


class ContentBlocked(SeedreamError):
    """The provider's moderation refused the prompt, a reference image or an output."""

    code = "content_blocked"


class ProviderError(SeedreamError):
    """Base of errors that come from a provider's side."""

    code = "provider"
    #: True when the same request may succeed if tried again later.
    retryable = False


class RateLimited(ProviderError):
    code = "rate_limited"
    retryable = True

    def __init__(self, user_message: str, *, retry_after: float | None = None, detail: str | None = None) -> None:
        super().__init__(user_message, detail=detail)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    code = "unavailable"
    retryable = True


class ProviderTimeout(ProviderError):
    code = "timeout"
    retryable = True


class OutOfCredit(ProviderError):
    """The provider account has no balance left: moderators must act, retrying will not help."""

    code = "out_of_credit"


class BadApiKey(ProviderError):
    """The configured key is missing, wrong or lacks access to the model."""

    code = "bad_api_key"


class ResultExpired(ProviderError):
    """A result link had expired or vanished before we could download it."""

    code = "result_expired"


class QuotaExceeded(SeedreamError):
    """The member (or the whole bot) has used its allowance for this window."""

    code = "quota_exceeded"


class TooManyJobs(SeedreamError):
    """The member already has as many jobs waiting as allowed."""

    code = "too_many_jobs"


class NotAllowed(SeedreamError):
    """The member may not do this (not theirs, blocked, wrong channel, paused)."""

    code = "not_allowed"


class StorageFull(SeedreamError):
    """The bot's disk is full: the job cannot keep its images, so it is failed and refunded."""

    code = "storage_full"


class DeliveryFailed(SeedreamError):
    """The results could not be posted (channel gone, permission lost, chat service failing)."""

    code = "delivery_failed"

    def __init__(self, user_message: str, *, retryable: bool, detail: str | None = None) -> None:
        super().__init__(user_message, detail=detail)
        self.retryable = retryable
