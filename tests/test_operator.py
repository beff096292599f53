"""An operator's first hour: ``seedream-bot run`` when Discord is unreachable or refuses an intent, health, sync.

Every test runs the installed console script, as an operator would, against a temporary config: a fake
Discord on 127.0.0.1 (tests/fakediscord), a port where nothing listens, a name that does not resolve, a
socket that never answers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import pytest

from tests.fakediscord import FakeDiscord, FakeGuild
from tests.test_cli import child_obeying_file_modes

SCRIPT = Path(sys.executable).with_name("seedream-bot")  # the installed console script
TOKEN = "fake-bot-token-for-operator-tests-5c1e"


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDREAM_")}
    return {**env, "DISCORD_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1", **extra}


def write_config(
    tmp_path: Path, api_base: str, *, guild: FakeGuild | None = None, extra: str = "", login_timeout: float = 3
) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[discord]
api_base = "{api_base}"
guild_ready_timeout = 0.05
shutdown_grace_seconds = 2
login_timeout_seconds = {login_timeout}
{f"command_guilds = [{guild.id}]" if guild else ""}
{extra}
[storage]
database = "{tmp_path / "bot.sqlite3"}"
data_dir = "{tmp_path / "data"}"
"""
    )
    return config


def run_cli(*args: str, config: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args, "--config", str(config)],
        cwd=config.parent,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line or line.startswith("error:")]


# -- Discord cannot be reached: a line per attempt, then exit 1 after discord.login_timeout_seconds --------
@pytest.mark.parametrize(
    ("api_base", "reason"),
    [
        ("http://127.0.0.1:9/api/v10", "cannot connect to 127.0.0.1:9"),  # nothing listens: connection refused
        ("http://discord.invalid/api/v10", "the name discord.invalid could not be resolved"),  # .invalid never resolves
    ],
    ids=["connection-refused", "name-resolution"],
)
def test_run_retries_an_unreachable_discord_then_gives_up_with_exit_1(
    tmp_path: Path, api_base: str, reason: str
) -> None:
    started = time.monotonic()
    done = run_cli("run", config=write_config(tmp_path, api_base))
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    attempts = [line for line in done.stderr.splitlines() if "cannot reach Discord (attempt" in line]
    assert len(attempts) >= 2, done.stderr  # backoff 1 s, 2 s ... within the 3 s login timeout
    assert all(reason in line and "trying again in" in line for line in attempts), attempts
    (final,) = error_lines(done.stderr)
    assert f"could not reach Discord at {api_base} for 3 s" in final
    assert reason in final and "discord.login_timeout_seconds" in final
    assert took < 30


def test_sigterm_while_discord_is_retried_stops_at_once(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/api/v10", login_timeout=600)
    process = subprocess.Popen(
        [str(SCRIPT), "run", "--config", str(config)],
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:  # wait for the first retry line
            if "cannot reach Discord (attempt 1)" in line:
                break
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, rest
    assert time.monotonic() - started < 10  # not after the next backoff, let alone the 600 s
    assert "Traceback" not in rest and "stopped before Discord could be reached" in rest


def test_run_does_not_hang_on_a_server_that_never_answers(tmp_path: Path) -> None:
    with closing(socket.socket()) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the kernel; nobody ever reads or answers
        port = silent.getsockname()[1]
        started = time.monotonic()
        done = run_cli("run", config=write_config(tmp_path, f"http://127.0.0.1:{port}/api/v10"))
        took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    (final,) = error_lines(done.stderr)
    assert "127.0.0.1 did not answer within" in final
    assert took < 30


# -- against a fake Discord -------------------------------------------------------------------------------
@asynccontextmanager
async def bot_process(config: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("ab") as handle:
        process = await asyncio.create_subprocess_exec(
            str(SCRIPT), "run", "--config", str(config), env=environment(), stdout=handle, stderr=handle
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), timeout=20)


async def cli_async(*args: str, config: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *args,
        "--config",
        str(config),
        env=environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_refused_privileged_intent_is_one_line_naming_the_switch_and_the_key(tmp_path: Path) -> None:
    async with FakeDiscord(token=TOKEN, privileged_intents=False) as fake:
        config = write_config(tmp_path, fake.api_base, extra="message_content_intent = true")
        log = tmp_path / "bot.log"
        async with bot_process(config, log) as process:
            code = await asyncio.wait_for(process.wait(), timeout=60)
    text = log.read_text()
    assert code == 2, text
    assert "Traceback" not in text
    (line,) = error_lines(text)
    assert "MESSAGE CONTENT INTENT" in line and "developers/applications" in line
    assert "message_content_intent = false" in line


def put_command_calls(fake: FakeDiscord) -> int:
    return sum(n for route, n in fake.call_counts().items() if route.startswith("PUT ") and "commands" in route)


async def test_start_up_is_quiet_syncs_only_a_changed_tree_and_sync_forces_it(tmp_path: Path) -> None:
    from discord.voice_client import has_dave, has_nacl

    async with FakeDiscord(token=TOKEN) as fake:
        guild = await fake.add_guild("Operators")
        config = write_config(tmp_path, fake.api_base, guild=guild)
        log = tmp_path / "bot.log"
        async with bot_process(config, log) as process:
            await fake.wait_for(lambda: len(fake.commands(guild)) >= 3 or None, timeout=30)
            await fake.wait_until_connected(timeout=30)
            await fake.wait_for(lambda: "connected as" in log.read_text() or None, timeout=30)
            assert await stop(process) == 0
        first = log.read_text()
        assert put_command_calls(fake) == 1
        assert "to 1 guild\n" in first  # not "1 guilds"
        assert "synced " in first and f"to guild {guild.id}" in first
        if not (has_nacl and has_dave):  # discord.py would warn about them at every start
            assert "voice will NOT be supported" not in first
        assert "Traceback" not in first

        log.write_text("")
        async with bot_process(config, log) as process:
            await fake.wait_for(lambda: "connected as" in log.read_text() or None, timeout=30)
            assert await stop(process) == 0
        assert put_command_calls(fake) == 1  # the same tree: no second sync
        assert f"commands for guild {guild.id} unchanged since the last sync" in log.read_text()

        code, _, err = await cli_async("sync", config=config)
        assert code == 0, err
        assert put_command_calls(fake) == 2  # forced
        assert f"to guild {guild.id}" in err and "Traceback" not in err
        assert len(fake.commands(guild)) >= 3


async def test_health_is_ok_while_the_bot_runs_and_fails_when_it_stops(tmp_path: Path) -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        guild = await fake.add_guild("Health")
        config = write_config(tmp_path, fake.api_base, guild=guild)
        code, _, err = await cli_async("health", config=config)
        assert code == 1 and err.startswith("unhealthy: the database ") and "does not exist" in err
        assert not (tmp_path / "bot.sqlite3").exists()

        log = tmp_path / "bot.log"
        async with bot_process(config, log) as process:
            await fake.wait_until_connected(timeout=30)
            await fake.wait_for(lambda: "connected as" in log.read_text() or None, timeout=30)
            code, out, err = await cli_async("health", config=config)
            assert code == 0, err
            assert out.startswith("healthy: heartbeat ") and f"pid {process.pid}" in out
            assert "connected to Discord, job workers running" in out
            process.kill()  # SIGKILL: no goodbye, the heartbeat just stops
            await process.wait()
        await asyncio.sleep(1.2)
        code, out, err = await cli_async("health", "--max-age", "1", config=config)
        assert code == 1 and out == ""
        assert err.startswith("unhealthy: the last heartbeat is ") and "is stopped or stuck" in err

    with closing(sqlite3.connect(tmp_path / "bot.sqlite3")) as conn:
        (value,) = conn.execute("SELECT value FROM meta WHERE key = 'heartbeat'").fetchone()
    assert f'"pid": {process.pid}' in value


# -- the Docker image: pinned, health-checked, metrics reachable, environment marked, data folder checked ---
REPO = Path(__file__).resolve().parents[1]


def image_env(data: Path) -> dict[str, str]:
    """The image's SEEDREAM_* settings with its /data volume at ``data``."""
    return {k: v.replace("/data", str(data)) for k, v in dockerfile_env().items() if k.startswith("SEEDREAM_")}


def dockerfile_env() -> dict[str, str]:
    """The ``ENV`` values the image sets (``KEY=value`` pairs, lines continued with a backslash)."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in line.removeprefix("ENV ").split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_the_image_installs_pinned_versions_and_has_a_healthcheck() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install -c constraints.txt ." in dockerfile
    assert (
        'HEALTHCHECK --interval=60s --timeout=20s --start-period=180s --retries=3 CMD ["seedream-bot", "health"]'
        in (dockerfile)
    )
    assert "COPY pyproject.toml README.md LICENSE constraints.txt ./" in dockerfile
    assert "-c constraints.txt" in (REPO / ".ci" / "run").read_text()  # CI tests what the image installs
    assert dockerfile_env()["SEEDREAM_METRICS__HOST"] == "0.0.0.0"  # reachable through -p 9108:9108
    assert "EXPOSE 9108" in dockerfile


def test_constraints_pin_every_dependency_within_its_range() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            pins[canonicalize_name(name)] = pinned
    problems = []
    for requirement in wanted:
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement.name} is not pinned")
        elif pinned not in requirement.specifier:
            problems.append(f"{requirement.name}=={pinned} is outside {requirement.specifier}")
    assert problems == [], "regenerate constraints.txt as its header says: " + "; ".join(problems)


def test_the_image_environment_wins_over_the_file_and_check_config_says_so(tmp_path: Path) -> None:
    env = {
        k: v.replace("/data", str(tmp_path / "data")) for k, v in dockerfile_env().items() if k.startswith("SEEDREAM_")
    }
    (tmp_path / "config.toml").write_text('[storage]\ndatabase = "mine.sqlite3"\n[metrics]\nhost = "127.0.0.1"\n')
    done = subprocess.run(
        [str(SCRIPT), "check-config"],
        cwd=tmp_path,
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    database = tmp_path / "data" / "seedream-bot.sqlite3"
    assert f'database = "{database}"  # from the environment: SEEDREAM_STORAGE__DATABASE' in lines
    assert 'host = "0.0.0.0"  # from the environment: SEEDREAM_METRICS__HOST' in lines


def test_a_data_folder_the_image_user_cannot_write_stops_run_with_one_line(tmp_path: Path) -> None:
    """A host folder bind-mounted at /data but owned by another user: one line naming it, exit 2, nothing started."""
    modes_bind = child_obeying_file_modes(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o555)  # as a root-owned 0755 folder is to uid 10001
    env = image_env(data)
    try:
        done = subprocess.run(
            [str(SCRIPT), "run"],
            cwd=tmp_path,
            env=environment(**env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            **modes_bind,
        )
    finally:
        data.chmod(0o755)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot write to {data}: ") and "cannot create files in" in line
    assert "Give that user write access to it, or set storage.database" in line
