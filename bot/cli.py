"""``seedream-bot``: run the bot, generate from the terminal, check the config, show status and health.

The Discord app is imported only by ``run`` and ``sync``, so every other command works without discord.py
touching anything (and ``bot`` stays free of discord imports).

Every failure is one line on stderr saying what happened and what to do, with an exit code a script can
act on: 0 done, 1 it failed (try again, or see the line), 2 the setup or the command line is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from bot import sizes
from bot.config import DEFAULT_CONFIG_PATH, Settings, load_settings
from bot.errors import ConfigError, SeedreamError
from bot.health import MAX_AGE_SECONDS, judge, last_heartbeat
from bot.i18n import Text
from bot.images import ImageStore, StoredImage
from bot.jobs import Job
from bot.jobs.sink import RecordMessage
from bot.logging_setup import configure_logging
from bot.providers.base import GenerationRequest, describe_capabilities
from bot.providers.registry import ProviderRegistry, documented_providers
from bot.services import Services
from bot.storage import (
    PostgresDatabase,
    PostgresUnavailable,
    StoreNotWritable,
    StoreTooNew,
    ensure_writable_database,
    ensure_writable_dir,
    is_postgres_url,
    open_store,
    transfer,
)
from bot.storage.database import migration_files
from bot.storage.postgres import pg_migration_files

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE, what any Unix tool reports when its reader went away
PORTAL_HELP = "https://discord.com/developers/applications (see 'Create the Discord application' in README.md)"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class UsageError(Exception):
    """The command line asks for something that cannot be done as asked (exit code 2, nothing was charged)."""


def version() -> str:
    try:
        return metadata.version("seedream-bot")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (no usage dump) naming where the help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: ask for 1 image or more")
    return value


def _parser() -> Parser:
    parser = Parser(prog="seedream-bot", description="A Discord bot for Seedream 4.0/4.5 images.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    config_help = f"TOML file (default: ./{DEFAULT_CONFIG_PATH} if present); before or after the command"
    parser.add_argument("--config", type=Path, default=None, help=config_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[Settings, argparse.Namespace], int], help_text: str) -> Parser:
        p: Parser = sub.add_parser(name, help=help_text, description=help_text)
        # SUPPRESS: given after the command it wins; not given, the value from before the command stays.
        p.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=config_help)
        p.set_defaults(func=func)
        return p

    command("run", run, "start the bot (needs the bot token in the environment)")
    command(
        "worker",
        worker_command,
        "run jobs and post their results with the bot token, without a gateway connection (PostgreSQL only)",
    )
    command("migrate", migrate_command, "bring the database's schema up to date and say what was applied")
    export = command("export", export_command, "write the database's rows to a JSON-lines file, to move them")
    export.add_argument("file", type=Path, help="the file to write, or - for standard output")
    export.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    imp = command("import", import_command, "copy an export's rows into the database, in one transaction")
    imp.add_argument("file", type=Path, help="a file `seedream-bot export` wrote, or - for standard input")
    imp.add_argument("--replace", action="store_true", help="delete what the database holds first (same transaction)")
    command("check-config", check_config, "validate the config and show it, secrets masked, environment marked")
    command("status", status_command, "queue depth, jobs by state and recent errors (safe while the bot runs)")
    health = command("health", health_command, "exit 0 if the running bot is healthy (Docker's HEALTHCHECK)")
    health.add_argument(
        "--max-age",
        type=float,
        default=MAX_AGE_SECONDS,
        help=f"seconds after which the bot's heartbeat counts as stale (default {MAX_AGE_SECONDS:.0f})",
    )
    command("sync", sync, "register the slash commands with Discord now, even if they did not change")
    caps = command("capabilities", capabilities, "print the provider capabilities table (Markdown)")
    caps.add_argument("--all", action="store_true", help="every supported provider and model, not just configured ones")
    gen = command("generate", generate_command, "generate images from the terminal")
    gen.add_argument("prompt")
    gen.add_argument("--provider", default=None)
    gen.add_argument("--aspect", default=None, help=f"one of {', '.join((*sizes.ASPECT_RATIOS, 'auto'))}")
    gen.add_argument("--resolution", default=None, choices=sizes.RESOLUTIONS)
    gen.add_argument("--count", type=positive_int, default=1, help="how many images (1 or more)")
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--style", default=None)
    gen.add_argument("--enhance", action="store_true")
    gen.add_argument("--image", action="append", default=[], help="reference image: a file path or an allowed URL")
    gen.add_argument(
        "--out",
        type=Path,
        default=Path("out"),
        help="a folder (created if needed) or an image file name such as cat.png (cat-1.png, cat-2.png ... for"
        " several images)",
    )
    gen.add_argument("--force", action="store_true", help="overwrite --out files that already exist")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script. Output piped into a reader that stops early (``| head -1``) ends quietly."""
    try:
        code = _main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader is gone: point stdout at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_CLOSED_PIPE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.logging.level, settings.secret_env_vars().values())
    func: Callable[[Settings, argparse.Namespace], int] = args.func
    try:
        return func(settings, args)
    # the operator must fix the setup or the command line: an unwritable or unreachable store, one too new
    except (UsageError, StoreNotWritable, PostgresUnavailable, StoreTooNew) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SeedreamError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return EXIT_FAILED
    except sqlite3.DatabaseError as exc:  # e.g. storage.database names a file that is not a SQLite database
        print(
            f"error: cannot use the database {settings.storage.database}: {exc}. Check storage.database",
            file=sys.stderr,
        )
        return EXIT_USAGE


def check_store(settings: Settings, *, images: bool) -> None:
    """Refuse to start on a store this process cannot write (``StoreNotWritable``, one line for the operator).

    The database, the folder holding its -wal/-shm files and, for commands that save images, the
    data folder. ``Database.open`` checks the database again; this check comes first so that ``run``
    stops before it connects to anything. A PostgreSQL URL is checked when it is connected to.
    """
    if not is_postgres_url(settings.storage.database):
        ensure_writable_database(settings.storage.database)
    if images:
        ensure_writable_dir(
            settings.data_dir, what="the data folder, where images are saved", setting="storage.data_dir"
        )


def existing_database(settings: Settings) -> Path:
    """The database file, which must exist: commands that only read never create an empty one."""
    path = Path(settings.storage.database)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise UsageError(
            f"the database {path} {what}: the bot has not run with this configuration, or storage.database"
            " (or --config) points elsewhere"
        )
    return path


# -- check-config ---------------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


def _env_source(key: str, from_env: dict[str, str]) -> str | None:
    parts = key.split(".")
    for prefix in range(len(parts), 0, -1):
        name = from_env.get(".".join(parts[:prefix]))
        if name:
            return name
    return None


def _print_table(title: str, values: dict[str, Any], prefix: str, from_env: dict[str, str]) -> None:
    print(f"\n[{title}]")
    for key, value in values.items():
        source = _env_source(f"{prefix}.{key}", from_env)
        mark = f"  # from the environment: {source}" if source else ""
        if value is None:
            print(f"# {key} is not set{mark}")
        else:
            print(f"{key} = {_toml_value(value)}{mark}")


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def store_problems(settings: Settings) -> list[str]:
    """What would stop ``run``/``generate`` from writing the store, found without creating anything."""
    problems = []
    database = Path(settings.storage.database)
    places: tuple[tuple[Path, str], ...] = (
        (database.parent, "storage.database"),
        (settings.data_dir, "storage.data_dir"),
    )
    server = is_postgres_url(settings.storage.database)  # `migrate` or `run` says if it cannot be reached
    if server:
        places = places[1:]
    for folder, setting in places:
        existing = _nearest_existing(folder)
        if not existing.is_dir():
            problems.append(f"{setting}: {existing} is a file, so the folder {folder} cannot be made there")
        elif not os.access(existing, os.W_OK | os.X_OK):
            problems.append(f"{setting}: this user cannot write in {existing}; give it write access or move {setting}")
    if server:
        return problems
    if database.is_dir():
        problems.append(f"storage.database: {database} is a folder; name the database file")
    elif database.exists() and not os.access(database, os.R_OK | os.W_OK):
        problems.append(f"storage.database: this user cannot write {database}; give it write access")
    return problems


def check_config(settings: Settings, args: argparse.Namespace) -> int:
    """Show the effective configuration (environment values marked) and everything ``run`` would trip on.

    Exit 0: ready; 1: the file is valid but something is missing (a secret, a writable store); the
    invalid-config case (exit 2) never gets here: ``load_settings`` refused it with one line per mistake.
    """
    path: Path | None = args.config or (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    from_env = settings.from_env
    print(f"# effective configuration: {path or 'built-in defaults (no config file)'}")
    if from_env:
        print("# values marked 'from the environment' come from SEEDREAM_* variables, which win over the file")
    data = settings.model_dump(mode="json")
    providers = data.pop("providers")
    for section, values in data.items():
        _print_table(section, values, section, from_env)
    for name, values in providers.items():
        _print_table(f"providers.{name}", values, f"providers.{name}", from_env)

    problems: list[str] = []
    print("\n# secrets (read from the environment, never from the file)")
    for purpose, env in settings.secret_env_vars().items():
        present = bool(os.environ.get(env))
        print(f"{env}: {'set (value hidden)' if present else 'MISSING'}  ({purpose})")
        if not present:
            needed_by = "`run` needs the bot token" if purpose == "discord token" else f"{purpose} cannot work"
            problems.append(f"{env} is not set: {needed_by}")
    missing = [env for env in settings.secret_env_vars().values() if not os.environ.get(env)]
    if missing:
        print(f"\nmissing environment variables: {', '.join(missing)}")
    problems += store_problems(settings)
    notes = asyncio.run(_provider_notes(settings))
    for note in notes:
        print(f"note: {note}")
    if problems:
        print("\nthe file is valid, but:", *(f"- {problem}" for problem in problems), sep="\n")
        return EXIT_FAILED
    print("\nconfiguration is valid")
    return 0


async def _provider_notes(settings: Settings) -> list[str]:
    """Defaults a provider cannot honour (it uses its own instead): worth knowing, not an error."""
    gen = settings.generation
    registry = ProviderRegistry.from_settings(settings, _image_store(settings))
    notes = []
    try:
        for provider in registry:
            caps = provider.capabilities
            if gen.default_resolution not in caps.resolutions:
                notes.append(
                    f"provider {provider.name} ({caps.model}) has no {gen.default_resolution}"
                    f" (generation.default_resolution); it uses {caps.resolutions[0]}"
                )
    finally:
        await registry.close()
    return notes


def _image_store(settings: Settings) -> ImageStore:
    gen = settings.generation
    return ImageStore(settings.data_dir, max_pixels=gen.max_image_pixels, max_bytes=gen.max_result_bytes)


# -- run, sync, health ----------------------------------------------------------------------------------
def _token(settings: Settings) -> str:
    token = os.environ.get(settings.discord.token_env)
    if not token:
        raise UsageError(
            f"no Discord bot token: set the environment variable {settings.discord.token_env}. Create a bot and"
            f" copy its token at {PORTAL_HELP}."
        )
    return token


def run(settings: Settings, args: argparse.Namespace) -> int:
    token = _token(settings)
    check_store(settings, images=True)
    from cogs.app import run_bot  # late import: only `run` and `sync` need discord.py

    return asyncio.run(run_bot(settings, token))


def worker_command(settings: Settings, args: argparse.Namespace) -> int:
    """``seedream-bot worker``: one more process running jobs next to ``run`` on a shared PostgreSQL database."""
    if not is_postgres_url(settings.storage.database):
        raise UsageError(
            "seedream-bot worker shares the job queue with other processes, which needs PostgreSQL: set"
            ' storage.database (env SEEDREAM_STORAGE__DATABASE) to a postgresql:// URL (README, "Scaling out").'
            " On the embedded SQLite file, `seedream-bot run` runs every job itself"
        )
    token = _token(settings)
    check_store(settings, images=True)
    from cogs.app import run_worker  # late import: only `run`, `worker` and `sync` need discord.py

    return asyncio.run(run_worker(settings, token))


def sync(settings: Settings, args: argparse.Namespace) -> int:
    token = _token(settings)
    check_store(settings, images=False)
    from cogs.app import sync_now

    return asyncio.run(sync_now(settings, token))


def health_command(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when the bot writing into this database is alive (fresh heartbeat) and the database is writable."""
    try:
        if not is_postgres_url(settings.storage.database):
            ensure_writable_database(existing_database(settings))
        healthy, line = asyncio.run(_judge_health(settings.storage.database, args.max_age))
    except (UsageError, StoreNotWritable, PostgresUnavailable, StoreTooNew) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(line, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else EXIT_FAILED


async def _judge_health(database: str, max_age: float) -> tuple[bool, str]:
    db = await open_store(database)
    try:
        heartbeat = await last_heartbeat(db)
    finally:
        await db.close()
    return judge(heartbeat, now=time.time(), max_age=max_age)


# -- migrate --------------------------------------------------------------------------------------------
def migrate_command(settings: Settings, args: argparse.Namespace) -> int:
    """Apply the store's migrations above its version (each once, even with several processes at once)."""
    check_store(settings, images=False)
    return asyncio.run(migrate(settings))


async def migrate(settings: Settings) -> int:
    db = await open_store(settings.storage.database)  # StoreTooNew: migrated by a newer seedream-bot
    try:
        before = await db.check_version()
        applied = await db.migrate()
    finally:
        await db.close()
    shipped = pg_migration_files() if isinstance(db, PostgresDatabase) else migration_files()
    names = {version: name for version, name, _ in shipped}
    if not applied:
        print(f"{db.where} is up to date: schema version {before}, nothing to apply")
        return 0
    for version in applied:
        print(f"applied {names[version]}")
    print(f"{db.where} is now at schema version {applied[-1]} (was {before})")
    return 0


# -- export, import (bot/storage/transfer.py) -----------------------------------------------------------
def export_command(settings: Settings, args: argparse.Namespace) -> int:
    """Write the configured database's rows to a file (``-``: standard output); the line goes to stderr then."""
    if not is_postgres_url(settings.storage.database):
        existing_database(settings)
    try:
        summary = asyncio.run(
            transfer.export_to(settings.storage.database, args.file, force=args.force, tool=version())
        )
    except transfer.TransferRefused as exc:
        raise UsageError(str(exc)) from None
    to_stdout = str(args.file) == "-"  # the rows go there, so the line goes to stderr
    print(f"{summary.line('exported', 'from')} to {args.file}", file=sys.stderr if to_stdout else sys.stdout)
    return 0


def import_command(settings: Settings, args: argparse.Namespace) -> int:
    """Copy an export into the configured database: one transaction, same schema version, empty unless --replace."""
    database = settings.storage.database
    if not is_postgres_url(database) and not Path(database).is_file():
        raise UsageError(f"the database {database} does not exist: create it with `seedream-bot migrate` first")
    check_store(settings, images=False)
    try:
        summary = asyncio.run(transfer.import_from(database, args.file, replace=args.replace))
    except transfer.TransferRefused as exc:
        raise UsageError(str(exc)) from None
    print(f"{summary.line('imported', 'into')} from {args.file}")
    return 0


# -- generate -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutTarget:
    """Where ``generate`` writes: a folder (new names, never overwriting) or named files."""

    folder: Path | None = None
    files: tuple[Path, ...] = ()


def out_target(out: Path, count: int, *, force: bool) -> OutTarget:
    """Decide before anything is charged: an existing folder or a plain name is a folder; an image file name
    (or an existing file) names the file(s), which must not exist unless ``--force``."""
    if out.is_dir():
        return OutTarget(folder=out)
    if not (out.exists() or out.suffix.lower() in IMAGE_SUFFIXES):
        return OutTarget(folder=out)
    files = (out,) if count == 1 else tuple(out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(1, count + 1))
    for file in files:
        if file.is_dir():
            raise UsageError(f"{file} is a folder; choose another --out")
        if file.exists() and not force:
            raise UsageError(f"{file} already exists: pass --force to overwrite it, or choose another --out")
    return OutTarget(files=files)


def _needs_key(settings: Settings, provider_name: str | None) -> None:
    """A provider whose API key variable is empty: say which variable to set, before anything is charged."""
    name = provider_name or settings.generation.default_provider
    config = settings.providers.get(name)
    if config is not None and config.api_key_env and not config.api_key():
        raise UsageError(
            f"provider {name} has no API key: set the environment variable {config.api_key_env}"
            f" (or pick another with --provider: {', '.join(settings.providers)})"
        )


def generate_command(settings: Settings, args: argparse.Namespace) -> int:
    target = out_target(args.out, args.count, force=args.force)
    _needs_key(settings, args.provider)
    check_store(settings, images=True)
    return asyncio.run(generate(settings, args, target))


async def _reference(services: Services, source: str) -> StoredImage:
    if source.startswith(("http://", "https://")):
        return await services.fetcher.fetch(source)
    path = Path(source)
    if not path.is_file():
        raise SeedreamError(f"reference image {source} does not exist")
    return await services.store.save_bytes(path.read_bytes())


async def generate(settings: Settings, args: argparse.Namespace, target: OutTarget | None = None) -> int:
    target = target or out_target(args.out, args.count, force=args.force)
    gen = settings.generation
    async with await Services.open(settings) as services:
        provider = services.providers.get(args.provider)
        caps = provider.capabilities
        references = [await _reference(services, source) for source in args.image]
        request = GenerationRequest(
            prompt=args.prompt,
            aspect_ratio=args.aspect or gen.default_aspect,
            # like /imagine: the configured default if this provider has it, else the provider's first
            resolution=args.resolution
            or (gen.default_resolution if gen.default_resolution in caps.resolutions else caps.resolutions[0]),
            count=args.count,
            seed=args.seed,
            style=args.style,
            enhance=args.enhance,
            references=references,
        )
        sink = FileSink(target)
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
    """Delivers a CLI job's images as files (in the --out folder, or as the --out file names), printing each path."""

    def __init__(self, out: OutTarget | Path) -> None:
        self.target = out if isinstance(out, OutTarget) else OutTarget(folder=out)
        self.error: str | None = None

    async def progress(self, job: Job, position: int) -> None:
        return None

    async def deliver(self, job: Job, record_message: RecordMessage) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        for index, image in enumerate(job.results, start=1):
            if self.target.folder is not None or index > len(self.target.files):
                folder = self.target.folder or self.target.files[0].parent
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"seedream-{stamp}-{job.id}-{index}{image.path.suffix}"
            else:
                path = self.target.files[index - 1]
                path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(shutil.copyfile, image.path, path)  # a 4K file: off the event loop
            print(path)

    async def finished(self, job: Job) -> None:
        return None

    async def failed(self, job: Job, message: str | Text) -> None:
        self.error = str(message)  # the CLI speaks English

    async def alert(self, job: Job, message: str | Text) -> None:
        print(f"warning: {message}", file=sys.stderr)


# -- status, capabilities -------------------------------------------------------------------------------
def status_command(settings: Settings, args: argparse.Namespace) -> int:
    if not is_postgres_url(settings.storage.database):
        existing_database(settings)
    return asyncio.run(status(settings))


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


def capabilities(settings: Settings, args: argparse.Namespace) -> int:
    print(asyncio.run(capabilities_table(settings, every_model=args.all)))
    return 0


async def capabilities_table(settings: Settings, *, every_model: bool) -> str:
    """The capabilities table in Markdown, built from the providers' own declarations (no database needed)."""
    store = _image_store(settings)
    providers = documented_providers(store) if every_model else list(ProviderRegistry.from_settings(settings, store))
    rows = describe_capabilities(providers)
    for provider in providers:
        await provider.close()
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row[h] for h in headers) + " |" for row in rows]
    return "\n".join(lines)
