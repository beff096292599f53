"""``seedream-bot``: run the bot, generate from the terminal, check the config, show status.

The Discord app is imported only by ``run``, so every other command works without discord.py
touching anything (and ``bot`` stays free of discord imports).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot import sizes
from bot.config import Settings, load_settings
from bot.errors import ConfigError, SeedreamError
from bot.jobs import Job
from bot.jobs.engine import RecordMessage
from bot.logging_setup import configure_logging
from bot.providers.base import GenerationRequest, StoredImage, describe_capabilities
from bot.providers.registry import documented_providers
from bot.services import Services
from bot.storage import StoreNotWritable, ensure_writable_database, ensure_writable_dir

EXIT_USAGE = 2
PORTAL_HELP = "https://discord.com/developers/applications (see 'Create the Discord application' in README.md)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seedream-bot", description="A Discord bot for Seedream 4.0/4.5 images.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", type=Path, default=None, help="TOML file (default: ./config.toml if present)")
        return p

    with_config(sub.add_parser("run", help="start the bot"))
    with_config(sub.add_parser("check-config", help="validate the config and show it, secrets masked"))
    with_config(sub.add_parser("status", help="queue depth, jobs by state and recent errors"))
    caps = with_config(sub.add_parser("capabilities", help="print the provider capabilities table (Markdown)"))
    caps.add_argument("--all", action="store_true", help="every supported provider and model, not just configured ones")
    gen = with_config(sub.add_parser("generate", help="generate images from the terminal"))
    gen.add_argument("prompt")
    gen.add_argument("--provider", default=None)
    gen.add_argument("--aspect", default=None, help=f"one of {', '.join((*sizes.ASPECT_RATIOS, 'auto'))}")
    gen.add_argument("--resolution", default=None, choices=sizes.RESOLUTIONS)
    gen.add_argument("--count", type=int, default=1)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--style", default=None)
    gen.add_argument("--enhance", action="store_true")
    gen.add_argument("--image", action="append", default=[], help="reference image: a file path or an allowed URL")
    gen.add_argument("--out", type=Path, default=Path("out"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.logging.level, settings.secret_env_vars().values())
    if args.command == "check-config":
        return check_config(settings, args.config)
    try:
        if args.command == "run":
            return run(settings)
        if args.command == "generate":
            check_store(settings, images=True)
            return asyncio.run(generate(settings, args))
        if args.command == "status":  # Database.open checks the database
            return asyncio.run(status(settings))
        if args.command == "capabilities":
            print(asyncio.run(capabilities_table(settings, every_model=args.all)))
            return 0
    except StoreNotWritable as exc:  # the operator must fix the setup: like a config error
        print(f"error: {exc.user_message}", file=sys.stderr)
        return EXIT_USAGE
    except SeedreamError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return 1
    return EXIT_USAGE


def check_store(settings: Settings, *, images: bool) -> None:
    """Refuse to start on a store this process cannot write (``StoreNotWritable``, one line for the operator).

    The database, the folder holding its -wal/-shm files and, for commands that save images, the
    data folder. ``Database.open`` checks the database again; this check comes first so that ``run``
    stops before it connects to anything.
    """
    ensure_writable_database(settings.storage.database)
    if images:
        ensure_writable_dir(
            settings.data_dir, what="the data folder, where images are saved", setting="storage.data_dir"
        )


def check_config(settings: Settings, path: Path | None) -> int:
    print(f"# effective configuration ({path or 'config.toml' if Path('config.toml').exists() else 'defaults'})")
    print(settings.model_dump_json(indent=2))
    missing = []
    print("\n# secrets (read from the environment, never from the file)")
    for purpose, env in settings.secret_env_vars().items():
        present = bool(os.environ.get(env))
        print(f"{env}: {'set (value hidden)' if present else 'MISSING'}  ({purpose})")
        if not present:
            missing.append(env)
    if missing:
        print(f"\nmissing environment variables: {', '.join(missing)}")
    print("\nconfiguration is valid")
    return 0


def run(settings: Settings) -> int:
    token = os.environ.get(settings.discord.token_env)
    if not token:
        print(
            f"error: no Discord bot token: set the environment variable {settings.discord.token_env}.\n"
            f"Create a bot and copy its token at {PORTAL_HELP}.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    check_store(settings, images=True)
    from cogs.app import run_bot  # late import: only `run` needs discord.py

    return asyncio.run(run_bot(settings, token))


async def _reference(services: Services, source: str) -> StoredImage:
    if source.startswith(("http://", "https://")):
        return await services.fetcher.fetch(source)
    path = Path(source)
    if not path.is_file():
        raise SeedreamError(f"reference image {source} does not exist")
    return await services.store.save_bytes(path.read_bytes())


async def generate(settings: Settings, args: argparse.Namespace) -> int:
    async with await Services.open(settings) as services:
        provider = services.providers.get(args.provider)
        references = [await _reference(services, source) for source in args.image]
        request = GenerationRequest(
            prompt=args.prompt,
            aspect_ratio=args.aspect or settings.generation.default_aspect,
            resolution=args.resolution or settings.generation.default_resolution,
            count=max(1, args.count),
            seed=args.seed,
            style=args.style,
            enhance=args.enhance,
            references=references,
        )
        sink = FileSink(args.out)
        engine = services.make_engine(sink)
        job, _ = await engine.enqueue(
            kind="cli",
            requester_id=0,
            guild_id=None,
            channel_id=None,
            provider_name=provider.name,
            request=request,
            quota_limit=None,
        )
        job = await engine.run_one(job)
        for notice in job.notices:
            print(f"note: {notice}", file=sys.stderr)
        if sink.error:
            raise SeedreamError(sink.error)
    return 0


class FileSink:
    """Delivers a CLI job's images as files in the --out folder, printing each path."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.error: str | None = None

    async def progress(self, job: Job, position: int) -> None:
        return None

    async def deliver(self, job: Job, record_message: RecordMessage) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        for index, image in enumerate(job.results, start=1):
            target = self.out / f"seedream-{stamp}-{job.id}-{index}{image.path.suffix}"
            shutil.copyfile(image.path, target)
            print(target)

    async def finished(self, job: Job) -> None:
        return None

    async def failed(self, job: Job, message: str) -> None:
        self.error = message

    async def alert(self, job: Job, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)


async def status(settings: Settings) -> int:
    async with await Services.open(settings) as services:
        rows = await services.db.fetchall("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state ORDER BY state")
        counts = {row["state"]: row["n"] for row in rows}
        print(f"queue depth: {counts.get('queued', 0)}")
        print("jobs by state: " + (", ".join(f"{k}={v}" for k, v in counts.items()) or "none"))
        errors = await services.db.fetchall(
            "SELECT id, error, updated_at FROM jobs WHERE error IS NOT NULL ORDER BY updated_at DESC LIMIT 5"
        )
        for row in errors:
            when = datetime.fromtimestamp(row["updated_at"], UTC).isoformat(timespec="seconds")
            print(f"error {when} job {row['id']}: {row['error']}")
    return 0


async def capabilities_table(settings: Settings, *, every_model: bool) -> str:
    """The capabilities table in Markdown, built from the providers' own declarations."""
    async with await Services.open(settings) as services:
        providers = documented_providers(services.store) if every_model else list(services.providers)
        rows = describe_capabilities(providers)
        for provider in providers:
            await provider.close()
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row[h] for h in headers) + " |" for row in rows]
    return "\n".join(lines)
