"""Domain errors: one small taxonomy the whole bot understands.

Every error carries a ``user_message`` that is safe to show a server member (no keys, no URLs,
no stack traces). Providers map their HTTP errors onto these; the Discord layer turns them into
polite ephemeral replies.
"""

from __future__ import annotations

import re

from bot.i18n import Text, _

#: The query string of a link (signed links carry credentials and signatures there), up to whitespace,
#: a quote or a closing bracket, so links inside ``repr`` output and XML/JSON bodies are caught too.
_LINK_QUERY = re.compile(r"""((?:https?|wss?)://[^\s?#'"<>]*)\?[^\s#'"<>)\]]*""", re.IGNORECASE)
#: Signature-like parameters outside a link (an error body echoing ``X-Amz-Signature=…``).
_SIGNED_PARAM = re.compile(
    r"""\b((?:x-(?:amz|tos|goog|oss)-)?(?:signature|credential|security-token)|policy)=[^&\s'"<>]+""",
    re.IGNORECASE,
)


def redact_links(text: str) -> str:
    """``text`` with every link's query string replaced by ``?…`` and stray signature parameters masked.

    Result, upload and attachment links are signed in their query; logs and error details keep the
    scheme, host and path (enough to tell which link failed) and never the credentials.
    """
    return _SIGNED_PARAM.sub(r"\1=…", _LINK_QUERY.sub(r"\1?…", text))


class SeedreamError(Exception):
    """Base of every error a user may be told about.

    ``text`` is what the member reads, rendered in their language where it is a ``Text`` (a plain string is
    shown as it is); ``user_message`` is its English form, for logs, the jobs table and the CLI.
    """

    #: Short machine name, used in logs, metrics and the jobs table.
    code = "error"

    def __init__(self, user_message: str | Text, *, detail: str | None = None) -> None:
        detail = redact_links(detail) if detail is not None else None
        super().__init__(detail or str(user_message))
        self.text = user_message
        self.user_message = str(user_message)
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

    def __init__(
        self, user_message: str | Text, *, retry_after: float | None = None, detail: str | None = None
    ) -> None:
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


class ProviderRejected(InvalidRequest, ProviderError):
    """The provider refused the request itself as invalid (a validation error, e.g. a prompt over its limit).

    Sending the same request again gets the same answer, so it is never retried, and nothing was made,
    so nothing is charged. The message says what the provider objected to and what to change, and
    deliberately does not suggest trying again. Build it with ``because`` for a consistent sentence.
    """

    code = "provider_rejected"
    retryable = False

    @classmethod
    def because(cls, provider: str | None, reason: str, *, detail: str | None = None) -> ProviderRejected:
        """``provider`` (as the member should read it, e.g. "Leonardo"; None: "The image provider") refused the
        request for ``reason`` (the provider's own words, shown as they are)."""
        reason = reason.strip().rstrip(".") or "no reason given"
        who = provider if provider is not None else _("The image provider")
        return cls(
            _(
                "{provider} refused the request as invalid ({reason}). {change}",
                provider=who,
                reason=reason,
                change=_change_hint(reason),
            ),
            detail=detail,
        )


def _change_hint(reason: str) -> Text:
    """What the member should change, guessed from the provider's reason; never "try again"."""
    lowered = reason.lower()
    if "prompt" in lowered:
        return _("Change the prompt (shorter or reworded); the same request would be refused again.")
    if any(word in lowered for word in ("size", "pixel", "dimension", "width", "height", "resolution", "aspect")):
        return _("Choose another aspect ratio or resolution; the same request would be refused again.")
    if any(word in lowered for word in ("image", "reference", "file")):
        return _("Use other or fewer reference images; the same request would be refused again.")
    return _("Change the request; the same request would be refused again.")


class ResultExpired(ProviderError):
    """A result link had expired or vanished before we could download it."""

    code = "result_expired"


class ResultRefused(ProviderError):
    """The provider's storage refused a result link (HTTP 403) that had not expired.

    Signed links are checked byte for byte; a link that was altered on the way, or signed wrongly by
    the provider, is refused. Trying again with the same link cannot help.
    """

    code = "result_refused"


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

    def __init__(self, user_message: str | Text, *, retryable: bool, detail: str | None = None) -> None:
        super().__init__(user_message, detail=detail)
        self.retryable = retryable
