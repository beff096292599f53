"""Providers that ran out of credit are paused bot-wide, so members stop paying the wait for a refusal.

A pause lasts until the provider's cool-down passes or the bot's owner resumes it: it affects every server,
so one server's moderators may not lift it (``resume(by_owner=False)`` is refused, with the time it has
left). Who is an owner is decided by the Discord layer (the application's owner or team, or the ids in
``[discord] owner_ids``) and handed in as a plain bool. Moderators are told once per pause, not once per
failed job.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

from bot.errors import NotAllowed
from bot.i18n import Text, _, _n, join


class ProviderHealth:
    def __init__(self, cooldown_seconds: dict[str, float], clock: Callable[[], float] = time.time) -> None:
        self.cooldown_seconds = cooldown_seconds
        self.clock = clock
        self._paused_until: dict[str, float] = {}

    def pause_for_credit(self, provider: str) -> bool:
        """Pause the provider; True when this starts a new pause (so moderators should be told)."""
        newly = not self.is_paused(provider)
        self._paused_until[provider] = self.clock() + self.cooldown_seconds.get(provider, 1800.0)
        return newly

    def is_paused(self, provider: str) -> bool:
        return self.seconds_left(provider) is not None

    def seconds_left(self, provider: str) -> float | None:
        """How long the provider's pause has to run; None when it is not paused."""
        until = self._paused_until.get(provider)
        if until is None:
            return None
        left = until - self.clock()
        if left <= 0:
            del self._paused_until[provider]
            return None
        return left

    def paused(self) -> list[str]:
        """The providers paused right now, by name."""
        return sorted(name for name in list(self._paused_until) if self.is_paused(name))

    def ensure_available(self, provider: str) -> None:
        left = self.seconds_left(provider)
        if left is not None:
            raise NotAllowed(
                _(
                    "The {provider} image service is paused for every server because the bot's account ran out of "
                    "credit. It resumes by itself in about {minutes}, or sooner if the bot's owner resumes it.",
                    provider=provider,
                    minutes=_minutes(left),
                )
            )

    def owner_only(self, providers: Iterable[str]) -> Text:
        """Why a server moderator cannot lift these pauses, and when they end by themselves."""
        lines = []
        for name in providers:
            left = self.seconds_left(name)
            if left is not None:
                lines.append(
                    _(
                        "Only the bot's owner can resume provider {provider} for every server (it ran out of "
                        "credit); it resumes by itself after {minutes}.",
                        provider=name,
                        minutes=_minutes(left),
                    )
                )
        return join(lines)

    def resume(self, provider: str | None = None, *, by_owner: bool) -> list[str]:
        """Lift the pause of one provider (or all); returns the names that were paused.

        Refused (``NotAllowed``, nothing lifted) unless ``by_owner``: the pause holds for every server."""
        names = [provider] if provider else self.paused()
        paused = [name for name in names if self.is_paused(name)]
        if paused and not by_owner:
            raise NotAllowed(self.owner_only(paused))
        return [name for name in paused if self._paused_until.pop(name, None) is not None]


def _minutes(seconds: float) -> Text:
    return _n("{count} minute", "{count} minutes", max(1, math.ceil(seconds / 60)))
