"""Several real processes on one PostgreSQL database: one ``seedream-bot run`` (the gateway) and two
``seedream-bot worker`` (REST only) against the fake Discord and the fake task-API provider. A burst of jobs
from many members; one worker is SIGKILLed mid-burst, later the ``run`` process too; both are restarted.
Every job is posted once, no provider task is created twice, every member's ledger balances, and every
card shows its outcome. Leases are short (config) so takeovers happen within the test."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import asyncpg

from tests import pg
from tests.fakediscord import FakeDiscord
from tests.fakeproviders.taskapi import FakeTaskApi
from tests.test_e2e_process import SECRET, burst, results, world

pg_url = pg.pg_url  # a fresh PostgreSQL database; skipped, saying how to enable it, where none answers
JOBS, MEMBERS = 200, 40
PROVIDER_KEY_ENV = "SCALE_TASKAPI_KEY"


def write_config(fake: FakeDiscord, guild_id: int, provider: FakeTaskApi, tmp_path: Path, database: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[discord]
api_base = "{fake.api_base}"
attachment_hosts = ["{fake.base_url}"]
command_guilds = [{guild_id}]
guild_ready_timeout = 0.05
status_edit_seconds = 0
shutdown_grace_seconds = 3
[storage]
database = "{database}"
data_dir = "{tmp_path / "data"}"
[generation]
default_provider = "gcc"
default_resolution = "2K"
provenance = false
workers = 4
lease_seconds = 3
lease_poll_seconds = 0.5
[quota]
default_limit = 6
[providers.gcc]
kind = "taskapi"
base_url = "{provider.base_url}"
api_key_env = "{PROVIDER_KEY_ENV}"
poll_interval_seconds = 0.05
max_concurrent = 12
"""
    )
    return config


async def start(command: str, config: Path, log: Path) -> asyncio.subprocess.Process:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SEEDREAM_")},
        "DISCORD_TOKEN": SECRET,
        PROVIDER_KEY_ENV: FakeTaskApi.api_key,
        "PYTHONUNBUFFERED": "1",
    }
    handle = log.open("ab")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", command, "--config", str(config), env=env, stdout=handle, stderr=handle
    )


async def unfinished(url: str) -> list[dict[str, object]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT id, state, attempts, lease_owner, lease_until, lease_epoch, extract(epoch FROM now()) AS now"
            " FROM jobs WHERE state <> 'done'"
        )
    finally:
        await conn.close()
    return [dict(row) for row in rows]


def outcome(card) -> str | None:  # type: ignore[no-untyped-def]
    """What the card says at the end: "done", "failed", or None while the job is still on its way."""
    description = card.embeds[0]["description"] if card.embeds else ""
    return "done" if "Done" in description else "failed" if "did not complete" in description else None


def ended_early(cards: list) -> list:  # type: ignore[type-arg]
    return [c for c in cards if outcome(c) == "failed"]


async def test_run_and_two_workers_share_postgresql_through_kills(tmp_path: Path, pg_url: str) -> None:
    async with FakeDiscord(token=SECRET, rate_limit=1000) as fake, FakeTaskApi() as provider:
        provider.polls_before_done = 1
        guild, channel, _ = await world(fake)
        users = [fake.add_user(f"member{i}") for i in range(MEMBERS)]
        for member in users:
            await fake.add_member(guild, member)
        config = write_config(fake, guild.id, provider, tmp_path, pg_url)
        log = tmp_path / "processes.log"
        migrate = await start("migrate", config, log)
        assert await migrate.wait() == 0  # once, before the processes start (each would also do it)
        processes = {"run": await start("run", config, log)}
        processes |= {name: await start("worker", config, log) for name in ("worker1", "worker2")}
        worker_pids = {processes["worker1"].pid, processes["worker2"].pid}
        try:
            cards = await burst(fake, guild, channel, users, JOBS, timeout=40)

            await fake.wait_for(lambda: len(results(fake, channel)) >= JOBS // 5 or None, timeout=40)
            processes["worker1"].kill()  # SIGKILL mid-burst: its jobs wait for their leases to lapse
            await processes["worker1"].wait()
            await fake.wait_for(lambda: len(results(fake, channel)) >= JOBS // 2 or None, timeout=40)
            processes["run"].kill()
            await processes["run"].wait()
            processes["run"] = await start("run", config, log)
            processes["worker1"] = await start("worker", config, log)
            worker_pids.add(processes["worker1"].pid)
            await fake.wait_until_connected(timeout=30)

            try:
                await fake.wait_for(lambda: len(results(fake, channel)) + len(ended_early(cards)) >= JOBS or None, 60)
                await fake.wait_for(lambda: all(outcome(c) for c in cards) or None, timeout=30)
            except TimeoutError:
                cards_left = [c.embeds[0]["description"] for c in cards if not outcome(c)]
                raise AssertionError(f"left behind: {await unfinished(pg_url)}; cards {cards_left}") from None
            await asyncio.sleep(1.0)  # let any duplicate show itself
        finally:
            for process in processes.values():
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes.values():
                await asyncio.wait_for(process.wait(), timeout=20)

        text = log.read_text()
        assert SECRET not in text and FakeTaskApi.api_key not in text
        conn = await asyncpg.connect(pg_url)
        try:
            rows = await conn.fetch("SELECT id, state, error, provider_task, lease_owner FROM jobs")
            ledger = await conn.fetch(
                "SELECT user_id, entry, SUM(units) AS units FROM quota_ledger GROUP BY user_id, entry"
            )
        finally:
            await conn.close()
        done = {r["id"] for r in rows if r["state"] == "done"}
        # A kill between the provider's create call and the write of its task id leaves a job nobody can
        # resume without creating a second task: it is failed and refunded ("interrupted"), never re-sent.
        interrupted = {r["id"] for r in rows if r["state"] == "failed" and r["error"].startswith("interrupted:")}
        assert len(done) + len(interrupted) == JOBS, Counter((r["state"], r["error"]) for r in rows)
        assert len(interrupted) <= 4, interrupted  # only jobs caught in that window by one of the two kills

        job_ids = [
            e["footer"]["text"].split(" · ")[0].removeprefix("job ") for m in results(fake, channel) for e in m.embeds
        ]
        assert sorted(job_ids) == sorted(done)  # every finished job posted, none twice
        assert Counter(outcome(c) for c in cards) == {"done": len(done), "failed": len(interrupted)}

        created = provider.calls_to("POST", "/v1/images/generations")
        tasks = [r["provider_task"] for r in rows if r["provider_task"]]
        assert len(tasks) == len(set(tasks)) >= len(done)  # each job kept its own task
        assert len(created) <= JOBS  # and no task was created twice
        owners = {int(r["lease_owner"].split("/")[1]) for r in rows}
        assert owners & worker_pids, owners  # the workers ran jobs (not only the `run` process)

        sums: dict[int, dict[str, int]] = {}
        for row in ledger:
            sums.setdefault(row["user_id"], {})[row["entry"]] = row["units"]
        asked = Counter(users[i % MEMBERS].id for i in range(JOBS))
        for user in users:  # balanced to the unit: reserved = committed + refunded; never beyond the limit of 6
            entries = sums[user.id]
            assert entries["reserve"] == asked[user.id] == entries.get("commit", 0) + entries.get("refund", 0)
            assert entries.get("commit", 0) <= 6
