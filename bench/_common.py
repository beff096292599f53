"""Helpers shared by the bench scripts: statistics, tables, a world in the fake Discord, bot runners.

Every script runs on 127.0.0.1 against ``tests.fakediscord`` and ``tests.fakeproviders``; nothing here
is timed by pytest. Figures are medians / p99 and ratios taken side by side in one run, because the
machine is shared and absolute times move between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.config import Settings  # noqa: E402
from bot.storage import Database, PostgresDatabase, is_postgres_url  # noqa: E402
from bot.storage.postgres import redact_url  # noqa: E402
from tests import pg  # noqa: E402
from tests.botrunner import bot_settings  # noqa: E402
from tests.fakediscord import FakeChannel, FakeDiscord, FakeGuild, FakeUser  # noqa: E402
from tests.fakeproviders.novita import FakeNovitaServer  # noqa: E402

#: Where the bot under test is imported from: this checkout, or BENCH_BOT_ROOT (e.g. a patched copy).
BOT_ROOT = Path(os.environ.get("BENCH_BOT_ROOT", ROOT)).resolve()
BOT_TOKEN = "fake-bot-token-bench"  # a fake's token on loopback


# -- numbers ----------------------------------------------------------------------------------------
def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p99": pct(values, 99),
        "max": max(values),
        "min": min(values),
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda row: "| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |"  # noqa: E731
    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in cells[1:]]
    return "\n".join(out)


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"load {load:.2f}, code {revision()}" + (f", bot from {BOT_ROOT}" if BOT_ROOT != ROOT else "")
    )


def revision() -> str:
    """The commit measured (read-only git), with "+changes" when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "?"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def header(title: str) -> None:
    print(f"# {title}\n# {machine()}\n")


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM (peak resident set) of a live process, in MiB."""
    for text in Path(f"/proc/{pid}/status").read_text().splitlines():
        if text.startswith("VmHWM:"):
            return int(text.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int | str = "self") -> float:
    for text in Path(f"/proc/{pid}/status").read_text().splitlines():
        if text.startswith("VmRSS:"):
            return int(text.split()[1]) / 1024
    return float("nan")


# -- logging like production (INFO, one line per event) but into a file ----------------------------
def log_to_file(path: Path, level: str = "INFO") -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("discord.http", "discord.gateway", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


@contextlib.contextmanager
def workdir(prefix: str) -> Any:
    """A fresh folder per run; ``BENCH_KEEP=1`` keeps it (bot.log, the database) for a closer look."""
    if os.environ.get("BENCH_KEEP"):
        yield Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
        return
    with tempfile.TemporaryDirectory(prefix=f"bench-{prefix}-") as tmp:
        yield Path(tmp)


# -- provider results that look like photos --------------------------------------------------------
_PHOTOS: dict[tuple[int, int], bytes] = {}


def photo_png(width: int, height: int) -> bytes:
    """A PNG that compresses like a photo (gradient + noise): ~4 MB at 2K, ~16 MB at 4K, like Seedream's.

    Made once per size and shared, so the fake provider costs nothing per image after the first.
    """
    if (width, height) not in _PHOTOS:
        from PIL import Image

        base = Image.linear_gradient("L").resize((width, height))
        noise = Image.effect_noise((width, height), 4)
        picture = Image.merge("RGB", (base, noise, Image.blend(base, noise, 0.5)))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", compress_level=6)
        _PHOTOS[width, height] = buffer.getvalue()
    return _PHOTOS[width, height]


class PhotoNovita(FakeNovitaServer):
    """The strict fake Novita (sync API answering with result links), serving photo-sized PNGs."""

    def host_image(self, width: int, height: int, suffix: str = "png") -> str:
        name = f"{self.next_id('img')}.{suffix}"
        self.files[name] = photo_png(width, height)
        return f"{self.base_url}/files/{name}?X-Expires=86400&Signature=abc%2Fdef"


def novita_provider(server: FakeNovitaServer, max_concurrent: int = 4) -> dict[str, Any]:
    """Provider settings for the fake (its key is ``test-key``: pass NOVITA_ENV to the bot process)."""
    return {
        "kind": "novita",
        "base_url": server.base_url,
        "api_key_env": "NOVITA_API_KEY",
        "model": "seedream-4.5",
        "max_concurrent": max_concurrent,
    }


NOVITA_ENV = {"NOVITA_API_KEY": FakeNovitaServer.api_key}


# -- the stores measured side by side -------------------------------------------------------------
def database_option(parser: argparse.ArgumentParser) -> None:
    """``--database`` (repeatable): a SQLite file path or a postgresql:// server URL."""
    parser.add_argument(
        "--database",
        action="append",
        default=[],
        help=f"a SQLite file path or a postgresql:// server URL, repeatable (default: both, a SQLite file in a"
        f" temporary folder and the server of {pg.ENV} or {pg.DEFAULT_URL})",
    )


async def usable_stores(given: Sequence[str]) -> list[str]:
    """The stores to measure: those given, or a SQLite file and the test server; an unreachable server is left
    out with a line saying why."""
    stores = []
    for database in given or ["sqlite", os.environ.get(pg.ENV, pg.DEFAULT_URL)]:
        if is_postgres_url(database):
            try:
                async with PostgresDatabase(database, connect_timeout=3):
                    pass
            except Exception as exc:
                print(f"# left out {redact_url(database)}: {exc}")
                continue
        stores.append(database)
    return stores


def store_name(database: str) -> str:
    return "PostgreSQL" if is_postgres_url(database) else "SQLite"


@contextlib.asynccontextmanager
async def fresh_store(database: str, tmp: Path, label: str, *, migrate: bool = True) -> AsyncIterator[str]:
    """An empty store for one run, migrated unless the bot under test will (``migrate=False``, so an older
    ``BENCH_BOT_ROOT`` meets no newer schema): a throwaway database on the PostgreSQL server, or a new SQLite
    file next to the path given ("sqlite": in ``tmp``), removed afterwards."""
    if is_postgres_url(database):
        async with pg.throwaway_database(database) as url:
            if migrate:
                async with PostgresDatabase(url) as db:
                    await db.migrate()
            yield url
        return
    folder = tmp if database == "sqlite" else Path(database).parent
    path = folder / f"{Path(database).stem}-{label}.sqlite3"
    try:
        if migrate:
            async with Database(path) as db:
                await db.migrate()
        yield str(path)
    finally:
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)


# -- a world in the fake Discord --------------------------------------------------------------------
class World:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.guild: FakeGuild
        self.channels: list[FakeChannel] = []
        self.users: list[FakeUser] = []

    async def build(self, *, users: int = 10, channels: int = 1, premium_tier: int = 0) -> World:
        self.guild = await self.fake.add_guild("Bench", premium_tier=premium_tier)
        self.channels = [await self.fake.add_channel(self.guild, f"art-{i}") for i in range(channels)]
        for i in range(users):
            user = self.fake.add_user(f"member{i}")
            await self.fake.add_member(self.guild, user)
            self.users.append(user)
        return self


def settings_for(fake: FakeDiscord, guild: FakeGuild, tmp: Path, **sections: dict[str, Any]) -> Settings:
    """The tests' settings (real SQLite file, local provider, 1K) with quota limits that never bind."""
    base: dict[str, dict[str, Any]] = {
        "quota": {"default_limit": 0, "max_queued_per_user": 10_000},
        "generation": {"per_user_in_flight": 64},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return bot_settings(fake, guild, tmp, **base)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def write_config(settings: Settings, path: Path) -> Path:
    """The settings as a TOML file for ``python -m bot run`` (only what differs from the defaults)."""
    data = settings.model_dump(mode="json", exclude_defaults=True)
    for name, provider in settings.providers.items():  # ``kind`` is a default yet the file needs it
        data.setdefault("providers", {}).setdefault(name, {})["kind"] = provider.kind
    lines: list[str] = []

    def emit(prefix: str, table: dict[str, Any]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if scalars:
            lines.append(f"[{prefix}]")
            lines.extend(f"{k} = {toml_value(v)}" for k, v in scalars.items())
        for key, value in table.items():
            if isinstance(value, dict):
                emit(f"{prefix}.{key}", value)

    for section, values in data.items():
        emit(section, values)
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.asynccontextmanager
async def bot_process(
    fake: FakeDiscord,
    settings: Settings,
    tmp: Path,
    env: dict[str, str] | None = None,
    patches: Sequence[str] = (),
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The real ``python -m bot run`` in its own process (its own core), connected with commands synced.

    ``patches`` (names from ``bench/_botproc.py``) start it through that wrapper with proposed fixes applied.
    """
    config = write_config(settings, tmp / "config.toml")
    log = (tmp / "bot.log").open("ab")
    environ = {**os.environ, "DISCORD_TOKEN": fake.token, "PYTHONUNBUFFERED": "1", **(env or {})}
    command = ["-m", "bot", "run", "--config", str(config)]
    if patches:
        command = [str(ROOT / "bench" / "_botproc.py"), "--config", str(config)]
        command += [arg for name in patches for arg in ("--patch", name)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, cwd=BOT_ROOT, env=environ, stdout=log, stderr=log
    )
    spy = await start_pyspy(process.pid)
    try:
        guild = next(iter(fake.state.guilds.values()))
        await fake.wait_for(lambda: len(fake.commands(guild)) >= 1 or process.returncode is not None, timeout=30)
        await fake.wait_for(lambda: bool(fake.gateway.connected_sessions()), timeout=10)
        if process.returncode is not None:
            raise RuntimeError(f"the bot stopped during start-up; see {tmp / 'bot.log'}")
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=20)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()
        if spy is not None:
            await spy.wait()


@contextlib.asynccontextmanager
async def worker_processes(
    settings: Settings, tmp: Path, count: int, patches: Sequence[str] = ()
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """``count`` real ``python -m bot worker`` processes on the same config (each logging to worker-N.log)."""
    config = write_config(settings, tmp / "config.toml")
    environ = {**os.environ, "DISCORD_TOKEN": BOT_TOKEN, "PYTHONUNBUFFERED": "1"}
    processes, logs = [], []
    try:
        for n in range(count):
            command = ["-m", "bot", "worker", "--config", str(config)]
            if patches:
                command = [str(ROOT / "bench" / "_botproc.py"), "--command", "worker", "--config", str(config)]
                command += [arg for name in patches for arg in ("--patch", name)]
            logs.append((tmp / f"worker-{n + 1}.log").open("ab"))
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, *command, cwd=BOT_ROOT, env=environ, stdout=logs[-1], stderr=logs[-1]
                )
            )
        yield processes
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), timeout=20)
            except TimeoutError:
                process.kill()
                await process.wait()
        for log in logs:
            log.close()


def has_command(name: str) -> bool:
    """True if this checkout's ``seedream-bot`` has the command ``name``."""
    done = subprocess.run(
        [sys.executable, "-m", "bot", name, "--help"], cwd=BOT_ROOT, capture_output=True, timeout=60, check=False
    )
    return done.returncode == 0


PROFILES = iter(range(1, 1000))


async def start_pyspy(pid: int) -> asyncio.subprocess.Process | None:
    """With BENCH_PYSPY=PREFIX, sample the bot process with py-spy into PREFIX-N.raw until it exits.

    Summarise with ``python bench/pyspy_summary.py PREFIX-N.raw``.
    """
    prefix = os.environ.get("BENCH_PYSPY")
    if not prefix:
        return None
    out = f"{prefix}-{next(PROFILES)}.raw"
    spy = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--rate",
        "200",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        out,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    print(f"# py-spy: bot pid {pid} -> {out}", file=sys.stderr)
    return spy


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def poll(predicate: Any, timeout: float, interval: float = 0.02) -> None:
    """Wait until predicate() is true by polling (cheap for the fake: no per-change re-evaluation)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def one_unit_job(user: int, guild: int, request: Any) -> Any:
    """A queued one-credit job of ``user`` (the quota benches admit thousands of them)."""
    from bot.jobs.models import Job, JobState, new_job_id

    now = time.time()
    return Job(
        id=new_job_id(),
        kind="imagine",
        requester_id=user,
        guild_id=guild,
        channel_id=1,
        provider="local",
        request=request,
        state=JobState.QUEUED,
        cost_units=1,
        created_at=now,
        updated_at=now,
    )
