"""The heartbeat: the running bot writes one into the database every minute; ``seedream-bot health`` judges it.

A fresh heartbeat shows the bot's process and event loop are alive and the database is writable (the bot
just wrote to it); it also says whether the Discord gateway is connected and the job workers are running.
Docker's HEALTHCHECK (and any supervisor) runs ``seedream-bot health``: exit 0 healthy, 1 not.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

from bot.storage.meta import get_meta, set_meta
from bot.storage.store import Store

HEARTBEAT_KEY = "heartbeat"
#: The bot writes a heartbeat this often (its maintenance loop).
HEARTBEAT_SECONDS = 60.0
#: ``health`` calls a heartbeat older than this stale: three missed beats.
MAX_AGE_SECONDS = 3 * HEARTBEAT_SECONDS


@dataclass(frozen=True)
class Heartbeat:
    at: float  # Unix time of the beat
    pid: int
    gateway_connected: bool
    workers_running: bool

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Heartbeat:
        data = json.loads(text)
        return cls(
            at=float(data["at"]),
            pid=int(data["pid"]),
            gateway_connected=bool(data["gateway_connected"]),
            workers_running=bool(data["workers_running"]),
        )


async def beat(db: Store, *, gateway_connected: bool, workers_running: bool, now: float | None = None) -> None:
    heartbeat = Heartbeat(
        at=time.time() if now is None else now,
        pid=os.getpid(),
        gateway_connected=gateway_connected,
        workers_running=workers_running,
    )
    await set_meta(db, HEARTBEAT_KEY, heartbeat.to_json())


async def last_heartbeat(db: Store) -> Heartbeat | None:
    text = await get_meta(db, HEARTBEAT_KEY)
    return None if text is None else Heartbeat.from_json(text)


def judge(heartbeat: Heartbeat | None, *, now: float, max_age: float = MAX_AGE_SECONDS) -> tuple[bool, str]:
    """(healthy, one line saying why) for the last heartbeat."""
    if heartbeat is None:
        return False, "unhealthy: no heartbeat in the database: the bot has not run with this database yet"
    age = now - heartbeat.at
    if age > max_age:
        return False, (
            f"unhealthy: the last heartbeat is {age:.0f} s old (more than {max_age:.0f} s): the bot (pid"
            f" {heartbeat.pid}) is stopped or stuck"
        )
    if not (heartbeat.gateway_connected or heartbeat.workers_running):
        return False, "unhealthy: the bot is neither connected to Discord nor running its job workers"
    gateway = "connected to Discord" if heartbeat.gateway_connected else "not connected to Discord (reconnecting)"
    workers = "job workers running" if heartbeat.workers_running else "job workers stopped"
    return True, f"healthy: heartbeat {max(age, 0):.0f} s ago from pid {heartbeat.pid}, {gateway}, {workers}"
