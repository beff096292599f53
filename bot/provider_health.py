"""Providers that ran out of credit are paused bot-wide, so members stop paying the wait for a refusal.

A pause lasts until a moderator resumes it or the provider's cool-down passes; moderators are told
once per pause, not once per failed job.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.errors import NotAllowed


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
        until = self._paused_until.get(provider)
        if until is None:
            return False
        if self.clock() >= until:
            del self._paused_until[provider]
            return False
        return True

    def ensure_available(self, provider: str) -> None:
        if self.is_paused(provider):
            raise NotAllowed(
                f"The {provider} image service is paused because the bot's account ran out of credit. "
                "Please ask a moderator; they have been told."
            )

    def resume(self, provider: str | None = None) -> list[str]:
        """Lift the pause of one provider (or all); returns the names that were paused."""
        names = [provider] if provider else list(self._paused_until)
        return [name for name in names if self._paused_until.pop(name, None) is not None]
