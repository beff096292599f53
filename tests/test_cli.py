"""The command line: generate, check-config, status, run without a token or store, and the layering rule."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.cli import main
from bot.storage import Database
from bot.storage.database import migration_files
from tests import pg

REPO = Path(__file__).resolve().parents[1]


def test_generate_writes_pngs_of_the_right_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["generate", "a koala on a skateboard", "--count", "2", "--aspect", "16:9", "--out", "out"])
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 2
    for name in printed:
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG"
            assert image.size == (2560, 1440)


def test_generate_with_a_reference_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (300, 600), "red").save(tmp_path / "ref.png")
    assert main(["generate", "make it blue", "--image", "ref.png", "--aspect", "auto", "--resolution", "1K"]) == 0
    (name,) = capsys.readouterr().out.split()
    with Image.open(tmp_path / name) as image:
        assert image.size[0] < image.size[1]  # portrait, following the reference


def test_generate_refuses_a_url_outside_attachment_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "x", "--image", "http://169.254.169.254/latest/meta-data"]) == 1
    assert "only fetched from" in capsys.readouterr().err


def test_generate_invalid_option_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "x", "--count", "20"]) == 1
    assert "1 to 8 images" in capsys.readouterr().err


def test_check_config_masks_and_lists_missing_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", "super-secret-token-value")
    monkeypatch.delenv("LEONARDO_API_KEY", raising=False)
    assert main(["check-config", "--config", str(REPO / "config.example.toml")]) == 0
    out = capsys.readouterr().out
    assert "super-secret-token-value" not in out
    assert "DISCORD_TOKEN: set (value hidden)" in out
    assert out.rstrip().endswith("configuration is valid")

    config = tmp_path / "leo.toml"
    config.write_text('[providers.local]\nkind = "local"\n[providers.leo]\nkind = "leonardo"\n')
    assert main(["check-config", "--config", str(config)]) == 1  # valid, but the key run would need is missing
    out = capsys.readouterr().out
    assert "missing environment variables: LEONARDO_API_KEY" in out
    assert "- LEONARDO_API_KEY is not set: provider leo cannot work" in out


def test_broken_config_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage]\ndatabse = 'x'\n")
    assert main(["check-config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "storage.databse: unknown key" in err


def test_run_without_token_says_what_to_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "DISCORD_TOKEN" in err and "developers/applications" in err


def test_worker_on_the_embedded_sqlite_file_says_it_needs_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", "t")
    assert main(["worker"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs PostgreSQL" in err and "postgresql://" in err and "\n" not in err
    assert not (tmp_path / "seedream-bot.sqlite3").exists()  # nothing was created


def test_status_refuses_a_database_that_does_not_exist_and_creates_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["status"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("error: the database seedream-bot.sqlite3 does not exist") and "storage.database" in err
    assert list(tmp_path.iterdir()) == []
    migrated(tmp_path / "seedream-bot.sqlite3")
    assert main(["status"]) == 0
    assert "queue depth: 0" in capsys.readouterr().out


def test_python_dash_m_bot_is_the_same_cli(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "generate", "x", "--resolution", "1K", "--out", "o"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("o/seedream-")


def test_core_never_imports_discord() -> None:
    modules = [p.relative_to(REPO).with_suffix("").as_posix().replace("/", ".") for p in (REPO / "bot").rglob("*.py")]
    modules = [m.removesuffix(".__init__") for m in modules if not m.endswith("__main__")]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "print([m for m in sys.modules if m == 'discord' or m.startswith('discord.')])"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_disk_full_fails_the_job_cleanly_and_refunds(tmp_path: Path) -> None:
    """A file-size limit makes every image write fail like a full disk would (EFBIG)."""
    script = (
        "import asyncio, resource, signal, sys\n"
        "from bot.storage import Database\n"
        "async def migrate():\n"
        "    async with Database('seedream-bot.sqlite3') as db:\n"
        "        await db.migrate()\n"
        "asyncio.run(migrate())\n"  # the database exists already; only the images will not fit
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (230_000, 230_000))\n"
        "from bot.cli import main\n"
        "sys.exit(main(['generate', 'a koala', '--resolution', '4K', '--count', '2']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1, done.stderr
    assert "disk is full" in done.stderr and "refunded" in done.stderr
    assert "Traceback" not in done.stderr
    import sqlite3

    with sqlite3.connect(tmp_path / "seedream-bot.sqlite3") as conn:
        assert conn.execute("SELECT state, error FROM jobs").fetchone()[0] == "failed"
        entries = dict(conn.execute("SELECT entry, SUM(units) FROM quota_ledger GROUP BY entry").fetchall())
    assert entries == {"reserve": 4, "refund": 4}  # two 4K images at 2 credits each, all given back
    assert not list((tmp_path / "data").rglob("*.part"))


# -- the store: refused at start when it cannot be written, "busy" (not a traceback) when locked ----
SCRIPT = Path(sys.executable).with_name("seedream-bot")  # the installed console script
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3


def _without_root_file_override() -> Callable[[], None]:
    """A ``preexec_fn`` that takes from the child the capabilities that let root ignore file modes.

    The child stays root (it can still read the interpreter under /root), but a root-owned file of
    mode 0o444 or folder of mode 0o555 is then read-only to it, exactly as for an unprivileged
    operator account, whose case this is.
    """
    libc = ctypes.CDLL(None, use_errno=True)

    def drop() -> None:
        for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
            if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    return drop


@pytest.fixture
def modes_bind(tmp_path: Path) -> dict[str, Any]:
    """``subprocess`` arguments under which the child obeys file modes (skips if that cannot be had here)."""
    return child_obeying_file_modes(tmp_path)


def child_obeying_file_modes(tmp_path: Path) -> dict[str, Any]:
    """``modes_bind``, for other test modules."""
    kwargs: dict[str, Any] = {"preexec_fn": _without_root_file_override()} if os.geteuid() == 0 else {}
    probe = tmp_path / "probe"
    probe.write_text("")
    probe.chmod(0o444)
    try:
        done = subprocess.run(
            [sys.executable, "-c", f"open({str(probe)!r}, 'a')"], capture_output=True, timeout=60, check=False, **kwargs
        )
    except subprocess.SubprocessError as exc:  # prctl refused: no CAP_SETPCAP in this container
        pytest.skip(reason=f"cannot start a child process that obeys file modes here: {exc}")
    if done.returncode == 0:
        pytest.skip(reason="a child process can still write a 0o444 file here: a read-only store cannot be reproduced")
    return kwargs


def store_config(tmp_path: Path) -> Path:
    (tmp_path / "db").mkdir()
    (tmp_path / "data").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        "[discord]\n"
        'api_base = "http://127.0.0.1:9"\n'  # nothing listens: a bot that wrongly started fails at once
        "[storage]\n"
        f'database = "{tmp_path / "db" / "bot.sqlite3"}"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        "[generation]\n"
        'default_resolution = "1K"\n'
    )
    return config


def migrated(path: Path) -> Path:
    async def migrate() -> None:
        async with Database(path) as db:
            await db.migrate()

    asyncio.run(migrate())
    return path


def seedream_bot(*args: str, config: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DISCORD_TOKEN": "fake-token-for-store-tests"}
    return subprocess.run(
        [str(SCRIPT), *args, "--config", str(config)],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        **kwargs,
    )


def assert_refused(done: subprocess.CompletedProcess[str], path: Path, setting: str) -> None:
    """Exit code 2 and one line on stderr that names the path and the setting to change; no traceback."""
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: cannot write to {path}: "), lines[0]
    assert "write access" in lines[0] and setting in lines[0]
    assert done.stdout == ""


@contextlib.contextmanager
def chmod(path: Path, mode: int) -> Iterator[None]:
    before = path.stat().st_mode & 0o777
    path.chmod(mode)
    try:
        yield
    finally:
        path.chmod(before)


def test_the_restricted_child_runs_the_cli_normally_on_a_writable_store(
    tmp_path: Path, modes_bind: dict[str, Any]
) -> None:
    """The control for the refusals below: the same child, a store it may write, a normal answer."""
    config = store_config(tmp_path)
    migrated(tmp_path / "db" / "bot.sqlite3")
    done = seedream_bot("status", config=config, **modes_bind)
    assert done.returncode == 0, done.stderr
    assert "queue depth: 0" in done.stdout


def test_run_refuses_a_read_only_database_file(tmp_path: Path, modes_bind: dict[str, Any]) -> None:
    config = store_config(tmp_path)
    database = migrated(tmp_path / "db" / "bot.sqlite3")
    with chmod(database, 0o444):
        done = seedream_bot("run", config=config, **modes_bind)
    assert_refused(done, database, "storage.database")


def test_generate_and_status_refuse_a_read_only_database_file_and_write_nothing(
    tmp_path: Path, modes_bind: dict[str, Any]
) -> None:
    config = store_config(tmp_path)
    database = migrated(tmp_path / "db" / "bot.sqlite3")
    with chmod(database, 0o444):
        assert_refused(seedream_bot("generate", "a koala", config=config, **modes_bind), database, "storage.database")
        assert_refused(seedream_bot("status", config=config, **modes_bind), database, "storage.database")
    with contextlib.closing(sqlite3.connect(database)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    assert not list((tmp_path / "data").rglob("*.png"))


def test_run_refuses_a_database_folder_where_sqlite_cannot_create_its_wal_files(
    tmp_path: Path, modes_bind: dict[str, Any]
) -> None:
    config = store_config(tmp_path)
    database = migrated(tmp_path / "db" / "bot.sqlite3")  # the file itself stays writable
    with chmod(database.parent, 0o555):
        done = seedream_bot("run", config=config, **modes_bind)
    assert_refused(done, database.parent, "storage.database")
    assert "-wal" in done.stderr


def test_run_and_generate_refuse_a_data_dir_that_cannot_be_written(tmp_path: Path, modes_bind: dict[str, Any]) -> None:
    config = store_config(tmp_path)
    migrated(tmp_path / "db" / "bot.sqlite3")
    with chmod(tmp_path / "data", 0o555):
        assert_refused(seedream_bot("run", config=config, **modes_bind), tmp_path / "data", "storage.data_dir")
        assert_refused(
            seedream_bot("generate", "a koala", config=config, **modes_bind), tmp_path / "data", "storage.data_dir"
        )


@contextlib.contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another process's connection holds the write lock (SQLite locks connections as it locks processes)."""
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_status_answers_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    config = store_config(tmp_path)
    database = migrated(tmp_path / "db" / "bot.sqlite3")
    with write_lock_held(database):
        done = seedream_bot("status", config=config)
    assert done.returncode == 0, done.stderr
    assert "queue depth: 0" in done.stdout


def test_generate_against_a_busy_database_says_busy_and_charges_nothing(tmp_path: Path) -> None:
    config = store_config(tmp_path)
    database = migrated(tmp_path / "db" / "bot.sqlite3")
    started = time.monotonic()
    with write_lock_held(database):
        done = seedream_bot("generate", "a koala", config=config)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: The bot is busy right now; please try again in a moment. Nothing was charged."
    )
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert time.monotonic() - started < 60
    with contextlib.closing(sqlite3.connect(database)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM quota_ledger").fetchone()[0] == 0


# -- one line per failure, the right exit code (the installed console script, as an operator runs it) -----
def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SEEDREAM_")}
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        **kwargs,
    )


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The process failed with ``code`` and said so in exactly one line on stderr, without a traceback."""
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def test_version_and_config_before_or_after_the_command(tmp_path: Path) -> None:
    done = cli("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "seedream-bot 0.1.0"
    config = tmp_path / "elsewhere.toml"
    config.write_text('[quota]\ntimezone = "Europe/Paris"\n')
    before = cli("--config", str(config), "check-config", cwd=tmp_path)
    after = cli("check-config", "--config", str(config), cwd=tmp_path)
    for done in (before, after):
        assert f"# effective configuration: {config}" in done.stdout
        assert 'timezone = "Europe/Paris"' in done.stdout
    (tmp_path / "other.toml").write_text('[quota]\ntimezone = "Asia/Tokyo"\n')
    both = cli("--config", "other.toml", "check-config", "--config", str(config), cwd=tmp_path)
    assert 'timezone = "Europe/Paris"' in both.stdout  # the one after the command wins


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[quota]\ntimezone = "Mars/Base"\n', "quota.timezone = 'Mars/Base': not a known time zone"),
        ('[generation]\ndefault_aspect = "5:4"\n', "generation.default_aspect = '5:4': choose one of 1:1"),
        ('[generation]\ndefault_resolution = "8K"\n', "generation.default_resolution = '8K'"),
        ("[quota]\nresolution_weights = { 8K = 3 }\n", "'8K' is not a resolution"),
        ('[providers."Big Provider"]\nkind = "local"\n', "provider name 'Big Provider' must be"),
    ],
)
def test_check_config_refuses_what_run_or_generate_would_trip_on(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    line = one_line(cli("check-config", cwd=tmp_path), 2)
    assert line.startswith("error: config.toml: ") and expected in line, line


def test_a_config_that_is_not_utf8_or_is_a_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "latin1.toml").write_bytes('[quota]\ntimezone = "Europe/Zürich"\n'.encode("latin-1"))
    line = one_line(cli("check-config", "--config", "latin1.toml", cwd=tmp_path), 2)
    assert line == "error: latin1.toml is not UTF-8 text (byte 0xfc at offset 28): save it as UTF-8"
    (tmp_path / "conf.d").mkdir()
    line = one_line(cli("status", "--config", "conf.d", cwd=tmp_path), 2)
    assert line == "error: conf.d is a folder, not a config file: pass the TOML file itself"


def test_a_bad_environment_override_is_blamed_on_the_variable_not_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[generation]\nworkers = 2\n")
    env = {"SEEDREAM_GENERATION__WORKERS": "0"}
    line = one_line(cli("check-config", cwd=tmp_path, env=env), 2)
    assert line.startswith("error: environment variable SEEDREAM_GENERATION__WORKERS: generation.workers = 0")
    line = one_line(cli("check-config", cwd=tmp_path, env={"SEEDREAM_QUOTA__TIMEZONE": "Nowhere/Land"}), 2)
    assert line.startswith("error: environment variable SEEDREAM_QUOTA__TIMEZONE: quota.timezone")
    (tmp_path / "config.toml").write_text("[generation]\nworkers = 0\n")
    assert one_line(cli("check-config", cwd=tmp_path), 2).startswith("error: config.toml: generation.workers = 0")


def test_check_config_marks_the_values_that_come_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[metrics]\nhost = "127.0.0.1"\nport = 9200\n')
    env = {"SEEDREAM_METRICS__HOST": "0.0.0.0", "DISCORD_TOKEN": "x" * 20}
    done = cli("check-config", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert 'host = "0.0.0.0"  # from the environment: SEEDREAM_METRICS__HOST' in done.stdout.splitlines()
    assert "port = 9200" in done.stdout.splitlines()  # from the file: no mark


def test_status_refuses_a_missing_database_without_creating_it(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(f'[storage]\ndatabase = "{tmp_path / "typo" / "bot.sqlite3"}"\n')
    line = one_line(cli("status", cwd=tmp_path), 2)
    assert f"the database {tmp_path / 'typo' / 'bot.sqlite3'} does not exist" in line
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("count", ["0", "-3", "two"])
def test_generate_refuses_a_count_below_one(tmp_path: Path, count: str) -> None:
    line = one_line(cli("generate", "a koala", "--count", count, cwd=tmp_path), 2)
    assert line.startswith("error: argument --count: ")
    assert list(tmp_path.iterdir()) == []  # refused before anything was opened, made or charged


def test_generate_never_overwrites_a_file_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "koala.png").write_bytes(b"my own picture")
    line = one_line(cli("generate", "a koala", "--resolution", "1K", "--out", "koala.png", cwd=tmp_path), 2)
    assert line == "error: koala.png already exists: pass --force to overwrite it, or choose another --out"
    assert (tmp_path / "koala.png").read_bytes() == b"my own picture"
    assert not (tmp_path / "seedream-bot.sqlite3").exists()  # refused before a job was made

    done = cli("generate", "a koala", "--resolution", "1K", "--out", "koala.png", "--force", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["koala.png"]
    with Image.open(tmp_path / "koala.png") as image:
        assert image.size == (1024, 1024)

    done = cli("generate", "two koalas", "--resolution", "1K", "--count", "2", "--out", "pair.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["pair-1.png", "pair-2.png"]


def test_generate_names_the_variable_of_a_missing_provider_key(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[providers.local]\nkind = "local"\n[providers.leo]\nkind = "leonardo"\n')
    env = {"LEONARDO_API_KEY": ""}
    line = one_line(cli("generate", "a koala", "--provider", "leo", cwd=tmp_path, env=env), 2)
    assert line.startswith("error: provider leo has no API key: set the environment variable LEONARDO_API_KEY")
    assert not (tmp_path / "seedream-bot.sqlite3").exists()


def test_no_traceback_when_the_reader_closes_the_pipe(tmp_path: Path) -> None:
    def shell(line: str) -> subprocess.CompletedProcess[str]:
        script = f"set -o pipefail; {line}"
        return subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    done = shell(f"{SCRIPT} capabilities --all | head -1")
    assert done.stdout.startswith("| provider | model |") and done.stdout.count("\n") == 1
    assert done.stderr == ""
    # A reader that is gone before the first line is written: the write fails with EPIPE every time.
    done = shell(f"{SCRIPT} capabilities --all | true")
    assert done.stderr == ""
    assert done.returncode == 141  # like any Unix tool whose reader went away (128 + SIGPIPE)
    assert not (tmp_path / "seedream-bot.sqlite3").exists()  # the table needs no database


# -- the store: migrate, a PostgreSQL URL, a database newer than the code ------------------------------------
pg_url = pg.pg_url


def test_migrate_says_what_it_applied_and_then_that_nothing_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [name for _, name, _ in migration_files()]
    assert out == [f"applied {name}" for name in names] + [
        f"seedream-bot.sqlite3 is now at schema version {len(names)} (was 0)"
    ]
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"seedream-bot.sqlite3 is up to date: schema version {len(names)}, nothing to apply"
    )


def test_migrate_status_and_health_on_a_postgresql_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, pg_url: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEEDREAM_STORAGE__DATABASE", pg_url)
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "applied 0001_init.sql" and out[-1].endswith(f"is now at schema version {len(out) - 1} (was 0)")
    assert main(["status"]) == 0
    assert "queue depth: 0" in capsys.readouterr().out
    assert main(["health"]) == 1  # no bot has written a heartbeat there
    assert "heartbeat" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == []  # no SQLite file, no folder named after the URL


def test_run_and_migrate_on_an_unreachable_postgresql_url_are_one_line_without_the_password(tmp_path: Path) -> None:
    env = {"DISCORD_TOKEN": "x", "SEEDREAM_STORAGE__DATABASE": "postgresql://bot:hunter2@127.0.0.1:1/seedream"}
    for command in ("run", "migrate"):
        line = one_line(cli(command, cwd=tmp_path, env=env), 2)
        assert line.startswith("error: cannot connect to PostgreSQL at postgresql://bot:***@127.0.0.1:1/seedream")
        assert "hunter2" not in line
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # run's data folder; nothing named after the URL


async def test_run_and_migrate_on_a_wrong_postgresql_url_are_one_line_without_the_password(tmp_path: Path) -> None:
    """A server that answers but has no such database: one line naming it and how to create it, exit code 2."""
    server = pg.with_database(await pg.require_server(), "seedream_no_such_database")
    user, at, rest = server.partition("@")
    url = f"{user}:hunter2-secret@{rest}" if at and ":" not in user.partition("://")[2] else server  # trust auth
    env = {"DISCORD_TOKEN": "x", "SEEDREAM_STORAGE__DATABASE": url}
    for command in ("run", "migrate"):
        line = one_line(cli(command, cwd=tmp_path, env=env), 2)
        assert line.startswith("error: cannot connect to PostgreSQL at ")
        assert "the database 'seedream_no_such_database' does not exist" in line and "createdb" in line
        assert "hunter2" not in line


def test_run_and_migrate_refuse_a_database_newer_than_the_code(tmp_path: Path) -> None:
    path = migrated(tmp_path / "seedream-bot.sqlite3")
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (99, '0099_future.sql', 0)")
    for command in ("run", "migrate"):
        line = one_line(cli(command, cwd=tmp_path, env={"DISCORD_TOKEN": "x"}), 2)
        assert "is at schema version 99 but this seedream-bot understands up to" in line
