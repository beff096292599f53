"""One way in: every generation, whatever asked for it (a slash command, a button, a modal, a reply, the CLI),
becomes a job here. The chat layer only translates; the rules (defaults, references, policy, quota,
queueing and where the results go) live in this module and the services it calls.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.config import Settings
from bot.edits import AttachmentFacts
from bot.errors import InvalidRequest
from bot.fetch import ImageFetcher, fetch_all
from bot.i18n import _, _n
from bot.images import StoredImage
from bot.jobs import Job
from bot.jobs.engine import JobEngine
from bot.jobs.models import Delivery
from bot.jobs.pending import PendingAnswers
from bot.metrics import Metrics
from bot.moderation import MemberContext, PolicyService
from bot.prompts import clean_prompt
from bot.providers.base import GenerationRequest
from bot.providers.registry import ProviderRegistry

#: What a member can start: a fresh picture, an edit of images, or a variation of an earlier job.
KINDS = ("imagine", "edit", "reroll", "vary")


@dataclass
class Order:
    """A request for pictures, ready to be checked and queued."""

    kind: str
    member: MemberContext
    request: GenerationRequest
    provider: str | None
    delivery: Delivery
    parent: Job | None = None
    notices: list[str] = field(default_factory=list)


@dataclass
class Options:
    """The member's choices; None means "the default for this provider"."""

    aspect: str | None = None
    resolution: str | None = None
    count: int | None = None
    seed: int | None = None
    style: str | None = None
    enhance: bool = False


class GenerationService:
    def __init__(
        self,
        settings: Settings,
        providers: ProviderRegistry,
        policy: PolicyService,
        fetcher: ImageFetcher,
        engine: JobEngine,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.providers = providers
        self.policy = policy
        self.fetcher = fetcher
        self.engine = engine
        self.metrics = metrics
        self.pending = PendingAnswers(engine.db)  # acknowledged commands whose job is not written yet

    # -- building a request -------------------------------------------------------------------------
    def request(
        self, provider: str | None, prompt: str, references: Sequence[StoredImage], options: Options | None = None
    ) -> GenerationRequest:
        """The member's prompt and choices with the defaults filled in: aspect follows the first reference
        where the provider can, size is the configured default where the provider offers it."""
        text = clean_prompt(prompt)
        if not text:
            raise InvalidRequest(_("Please describe the picture you want: the prompt is empty."))
        options = options or Options()
        caps = self.providers.get(provider).capabilities
        gen = self.settings.generation
        auto = "auto" if references and "auto" in caps.aspect_ratios else gen.default_aspect
        resolution = gen.default_resolution if gen.default_resolution in caps.resolutions else caps.resolutions[0]
        return GenerationRequest(
            prompt=text,
            aspect_ratio=options.aspect or auto,
            resolution=options.resolution or resolution,
            count=options.count or 1,
            seed=options.seed,
            style=options.style,
            enhance=options.enhance,
            references=list(references),
        )

    def child_request(
        self, parent: Job, kind: str, *, prompt: str | None = None, reference: int | None = None
    ) -> GenerationRequest:
        """Reroll (same request, new seed), Vary (one result as the reference) or Edit (and a new prompt)."""
        request = parent.request.model_copy()
        if kind == "reroll":
            caps = self.providers.get(parent.provider).capabilities
            request.seed = random.randint(*caps.seed_range) if caps.seed_range else None
        if reference is not None:
            if not 0 <= reference < len(parent.results):
                raise InvalidRequest(_("That image is no longer available."))
            image = parent.results[reference]
            if not image.path.exists():
                days = self.settings.storage.retention_days
                raise InvalidRequest(
                    _n(
                        "That image is older than {count} day and has been cleaned up; post it again.",
                        "That image is older than {count} days and has been cleaned up; post it again.",
                        days,
                    )
                )
            request.references = [image]
        if prompt is not None:
            text = clean_prompt(prompt)
            if not text:
                raise InvalidRequest(_("Please say what should change: the instruction is empty."))
            request.prompt = text
        return request

    def provider_for_edit(self, parent: Job | None) -> str | None:
        """An edit of our result stays on the provider that made it, while that provider is configured."""
        if parent is not None and parent.provider in self.providers.names():
            return parent.provider
        return None

    def check_attachments(self, attachments: Sequence[AttachmentFacts]) -> None:
        """Refuse what is plainly not a usable image before anything is downloaded or acknowledged."""
        max_bytes = self.settings.generation.max_reference_bytes
        for attachment in attachments:
            if attachment.content_type and not attachment.content_type.startswith("image/"):
                raise InvalidRequest(
                    _("{file} is not an image; attach PNG, JPEG or WebP files.", file=attachment.filename)
                )
            if attachment.size > max_bytes:
                raise InvalidRequest(
                    _(
                        "{file} is {size} MiB; the limit is {limit} MiB.",
                        file=attachment.filename,
                        size=attachment.size // (1024 * 1024),
                        limit=max_bytes // (1024 * 1024),
                    )
                )

    async def download(self, attachments: Sequence[AttachmentFacts]) -> list[StoredImage]:
        """Fetch attachments at once (their signed links expire), from allow-listed hosts only."""
        self.check_attachments(attachments)
        return await fetch_all(self.fetcher, [a.url for a in attachments])

    # -- queueing -----------------------------------------------------------------------------------
    async def submit(self, order: Order) -> tuple[Job, int]:
        """Every rule a server set, then the job and its quota reservation in one transaction.

        Returns the job and its place in the queue. Raises a ``SeedreamError`` with the member's message
        for every refusal; nothing is charged then."""
        if order.kind not in KINDS:
            raise ValueError(f"unknown job kind {order.kind!r}")
        decision = await self.policy.check(order.member, order.request, order.provider)
        return await self.engine.enqueue(
            kind=order.kind,
            requester_id=order.member.user_id,
            guild_id=order.member.guild_id,
            channel_id=order.member.channel_id,
            provider_name=decision.provider_name,
            request=order.request,
            quota_limit=decision.quota_limit,
            delivery=order.delivery,
            parent_job_id=order.parent.id if order.parent else None,
            notices=order.notices,
        )
