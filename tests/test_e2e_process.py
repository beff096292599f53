"""The real ``seedream-bot run`` process against the fake Discord: start, answer, SIGTERM, SIGKILL + restart."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiosqlite

from tests.botrunner import wait_for_card
from tests.fakediscord import FakeDiscord, FakeGuild, FakeMessage

SECRET = "fake-bot-token-do-not-log-7f3a9c"


def write_config(fake: FakeDiscord, guild: FakeGuild, tmp_path: Path, delay: float = 0.0) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[discord]
api_base = "{fake.api_base}"
attachment_hosts = ["{fake.base_url}"]
command_guilds = [{guild.id}]
guild_ready_timeout = 0.05
status_edit_seconds = 0
shutdown_grace_seconds = 5
[storage]
database = "{tmp_path / "bot.sqlite3"}"
data_dir = "{tmp_path / "data"}"
[generation]
default_resolution = "1K"
[providers.local]
kind = "local"
delay_seconds = {delay}
"""
    )
    return config


async def start_process(config: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "DISCORD_TOKEN": SECRET, "PYTHONUNBUFFERED": "1"}
    handle = log.open("ab")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--config", str(config), env=env, stdout=handle, stderr=handle
    )


async def states(tmp_path: Path) -> list[str]:
    async with aiosqlite.connect(tmp_path / "bot.sqlite3") as conn, conn.execute("SELECT state FROM jobs") as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def more_done_than(tmp_path: Path, count: int, timeout: float) -> int:
    """Wait until more than ``count`` jobs are done (or every job is); returns how many are done now."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        now = await states(tmp_path)
        done = now.count("done")
        if done > count or (now and done == len(now)) or asyncio.get_running_loop().time() > deadline:
            return done
        await asyncio.sleep(0.05)


async def world(fake: FakeDiscord):  # type: ignore[no-untyped-def]
    guild = await fake.add_guild("Process")
    channel = await fake.add_channel(guild, "art")
    user = fake.add_user("alice")
    await fake.add_member(guild, user)
    return guild, channel, user


async def test_run_serves_commands_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    async with FakeDiscord(token=SECRET) as fake:
        guild, channel, user = await world(fake)
        log = tmp_path / "bot.log"
        process = await start_process(write_config(fake, guild, tmp_path), log)
        try:
            await fake.wait_for(lambda: len(fake.commands(guild)) >= 3 or None, timeout=20)
            await fake.wait_until_connected(timeout=20)
            handle = await fake.slash_command("imagine", user=user, channel=channel, options={"prompt": "a koala"})
            await wait_for_card(handle)
            await fake.wait_for(
                lambda: any(m.attachments for t in fake.threads(channel) for m in fake.bot_messages(t)), 10
            )
            status = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "status", "--config", str(tmp_path / "config.toml"),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await status.communicate()
            assert status.returncode == 0 and b"queue depth: 0" in out  # a second process reads while the bot runs
            assert b"locked" not in out
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), timeout=20) == 0
        finally:
            if process.returncode is None:
                process.kill()
        text = log.read_text()
        assert SECRET not in text  # the token never reaches the logs
        assert "Traceback" not in text
        assert await states(tmp_path) == ["done"]


async def test_sigkill_mid_burst_then_restart_completes_every_job_once(tmp_path: Path) -> None:
    """200 jobs from 20 members; the process is SIGKILLed three times while they run, then restarted."""
    jobs, members = 200, 20
    async with FakeDiscord(token=SECRET, rate_limit=1000) as fake:
        guild, channel, _ = await world(fake)
        users = [fake.add_user(f"member{i}") for i in range(members)]
        for member in users:
            await fake.add_member(guild, member)
        log = tmp_path / "bot.log"
        config = write_config(fake, guild, tmp_path, delay=0.05)
        seen_states: set[str] = set()
        process = await start_process(config, log)
        try:
            cards = await burst(fake, guild, channel, users, jobs)
            done_before = 0
            for _ in range(3):
                # each kill lands once more work has finished (whatever the machine's speed), never on a stall
                done_before = await more_done_than(tmp_path, done_before, timeout=30)
                process.kill()  # SIGKILL: no grace, no cleanup
                await process.wait()
                seen_states.update(await states(tmp_path))
                process = await start_process(config, log)
                await fake.wait_until_connected(timeout=20)
            await fake.wait_for(lambda: len(results(fake, channel)) >= jobs, timeout=120)
            # every command ends showing its outcome, none stays "thinking…" or "Queued"
            await fake.wait_for(lambda: all("Done" in c.embeds[0]["description"] for c in cards) or None, timeout=30)
            await asyncio.sleep(0.3)  # let any duplicate show itself
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), timeout=20)
        assert {"queued", "done"} <= seen_states, seen_states  # the kills landed while work was in flight
        job_ids = [e["footer"]["text"].split(" · ")[0] for m in results(fake, channel) for e in m.embeds]
        assert len(job_ids) == jobs and len(set(job_ids)) == jobs  # every job once, none twice
        assert len(fake.threads(channel)) == jobs
        assert await states(tmp_path) == ["done"] * jobs
        totals = (
            "SELECT SUM(CASE entry WHEN 'reserve' THEN units ELSE 0 END), SUM(CASE entry WHEN 'commit' THEN units"
            " ELSE 0 END), SUM(CASE entry WHEN 'refund' THEN units ELSE 0 END) FROM quota_ledger"
        )
        async with aiosqlite.connect(tmp_path / "bot.sqlite3") as conn, conn.execute(totals) as cursor:
            reserved, committed, refunded = await cursor.fetchone()  # type: ignore[misc]
        assert (reserved, committed, refunded or 0) == (jobs, jobs, 0)  # charged once each, nothing lost


async def burst(fake: FakeDiscord, guild, channel, users, jobs: int, timeout: float = 30) -> list[FakeMessage]:  # type: ignore[no-untyped-def]
    """Once the bot is up: ``jobs`` /imagine from ``users`` in turn, each answered by its card."""
    await fake.wait_for(lambda: len(fake.commands(guild)) >= 3 or None, timeout=timeout)
    await fake.wait_until_connected(timeout=timeout)
    handles = [
        await fake.slash_command("imagine", user=users[i % len(users)], channel=channel, options={"prompt": f"k{i}"})
        for i in range(jobs)
    ]
    return list(await asyncio.gather(*(wait_for_card(h, timeout=timeout) for h in handles)))


def results(fake: FakeDiscord, channel):  # type: ignore[no-untyped-def]
    return [m for t in fake.threads(channel) for m in fake.bot_messages(t) if m.attachments]
