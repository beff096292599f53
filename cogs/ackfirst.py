"""Acknowledge first: under a burst, every waiting interaction is deferred before any command's slow work.

Discord fails an interaction that is not acknowledged within 3 s, while the work after the defer (policy
reads, queueing, the status message and thread) can wait a moment. On one event loop the two interleave:
without this gate, 500 /imagine arriving together had their defers queued behind the earlier commands'
database reads and channel posts. The bot notes each interaction as it is parsed (``received``); a command
calls ``after_ack`` once it has deferred, which marks it acknowledged and holds it while others are still
waiting, for at most ``max_wait`` seconds, so slow work is delayed, never starved.
"""

from __future__ import annotations

import asyncio
import contextlib

import discord

#: Interactions a member waits on: slash and context commands, buttons and selects, modal submits
#: (autocomplete is answered by discord.py itself, pings never reach a gateway bot).
GATED_TYPES = frozenset(
    {
        discord.InteractionType.application_command,
        discord.InteractionType.component,
        discord.InteractionType.modal_submit,
    }
)
RECHECK_SECONDS = 0.01  # how often the watcher looks for acknowledgements we did not send ourselves
ACK_WINDOW_SECONDS = 3.0  # Discord's limit: an interaction still unanswered after this is dead, not waiting


class AckFirst:
    def __init__(self, *, max_wait: float = 1.0) -> None:
        self.max_wait = max_wait
        self._waiting: dict[int, tuple[discord.Interaction, float]] = {}
        self._clear = asyncio.Event()
        self._clear.set()
        self._watcher: asyncio.Task[None] | None = None

    def received(self, interaction: discord.Interaction) -> None:
        if interaction.type in GATED_TYPES:
            self._waiting[interaction.id] = (interaction, asyncio.get_running_loop().time())
            self._clear.clear()

    def waiting(self) -> int:
        """How many received interactions still have no response (answered or dead ones are forgotten)."""
        dead = asyncio.get_running_loop().time() - ACK_WINDOW_SECONDS
        for key in [key for key, (item, at) in self._waiting.items() if at < dead or item.response.is_done()]:
            del self._waiting[key]
        if not self._waiting:
            self._clear.set()
        return len(self._waiting)

    async def after_ack(self, interaction: discord.Interaction) -> None:
        """Mark ``interaction`` acknowledged, then wait while other interactions still wait for theirs."""
        self._waiting.pop(interaction.id, None)
        await self.settled()

    async def settled(self) -> None:
        """Wait (at most ``max_wait``) while received interactions still wait for their acknowledgement: work
        that is not an acknowledgement (a job's thread and results, a card's progress) goes after them."""
        if not self._waiting:  # answered ones still listed are pruned by the watcher, not here: O(1) per call
            self._clear.set()
            return
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name="ack-first-watcher")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.max_wait):
                await self._clear.wait()

    async def _watch(self) -> None:
        """One task notices responses sent outside ``after_ack`` (holders only wait on the event)."""
        while self.waiting():
            await asyncio.sleep(RECHECK_SECONDS)
