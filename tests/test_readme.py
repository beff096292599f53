"""README promises: the capabilities table matches the code, and the set-up commands are the ones CI runs."""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot.cli import capabilities_table
from bot.config import load_settings

REPO = Path(__file__).resolve().parents[1]


async def test_capabilities_table_matches_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    table = await capabilities_table(load_settings(None), every_model=True)
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- capabilities:start[^>]*-->\n(.*?)\n<!-- capabilities:end -->", readme, re.S)
    assert block is not None
    assert block.group(1) == table, "README is stale: paste the output of `seedream-bot capabilities --all`"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    test_command = re.search(r"\*\*Run the tests\*\*.*?```bash\n(.*?)\n```", readme, re.S)
    assert test_command is not None
    final = test_command.group(1).split("&&")[-1].strip()
    assert final == "python -m pytest"
    assert "\n" + final + "\n" in ci


# -- operations: backups and restore, the systemd unit, the licence ------------------------------------------
SCRIPT = Path(sys.executable).with_name("seedream-bot")


def readme_block(after: str, language: str = "bash") -> str:
    """The first fenced block of ``language`` after the text ``after`` in README.md."""
    readme = (REPO / "README.md").read_text()
    start = readme.index(after)
    block = re.search(rf"```{language}\n(.*?)\n```", readme[start:], re.S)
    assert block is not None, f"no ```{language} block after {after!r}"
    return block.group(1)


def shell(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run README lines as an operator would, with this venv's commands first on PATH (systemctl lines skipped)."""
    lines = [line for line in script.splitlines() if "systemctl" not in line]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDREAM_")}
    env["PATH"] = f"{SCRIPT.parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", "\n".join(lines)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_documented_backup_and_restore_work_while_the_database_is_written(tmp_path: Path) -> None:
    made = shell('seedream-bot generate "a koala" --resolution 1K --out out', tmp_path)
    assert made.returncode == 0, made.stderr
    database = tmp_path / "seedream-bot.sqlite3"

    # Online: another connection is in the middle of a write while the backup runs.
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO meta (key, value) VALUES ('not-yet-committed', 'x')")
    backup = shell(readme_block("**Back up**"), tmp_path)
    writer.execute("COMMIT")
    writer.close()
    assert backup.returncode == 0, backup.stderr
    (copy,) = (tmp_path / "backups").glob("seedream-bot-*.sqlite3")
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT state FROM jobs").fetchall() == [("done",)]
        assert conn.execute("SELECT COUNT(*) FROM meta WHERE key = 'not-yet-committed'").fetchone() == (0,)

    database.write_bytes(b"this is not a database any more" * 100)  # the disaster
    restore = shell(readme_block("**Restore**"), tmp_path)
    assert restore.returncode == 0, restore.stderr
    assert "jobs by state: done=1" in restore.stdout
    assert (tmp_path / "damaged" / "seedream-bot.sqlite3").read_bytes().startswith(b"this is not a database")
    assert shell("seedream-bot status", tmp_path).returncode == 0


def test_the_systemd_unit_restarts_on_failure_but_not_on_a_setup_error() -> None:
    from bot.cli import EXIT_USAGE
    from bot.config import DiscordSection

    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(readme_block("## Running under systemd", "ini"))
    service = unit["Service"]
    assert service["ExecStart"].split() == ["/opt/seedream-bot/.venv/bin/seedream-bot", "run"]
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == str(EXIT_USAGE)  # a bad config, token or intent would only loop
    grace = DiscordSection().shutdown_grace_seconds
    assert float(service["TimeoutStopSec"]) > grace + 30  # SIGTERM gets the grace, then the drain and the close
    assert unit["Unit"]["After"] == "network-online.target"


def test_the_licence_is_mit_as_pyproject_and_readme_say() -> None:
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == {"text": "MIT"}
    assert "MIT: see [LICENSE](LICENSE)" in (REPO / "README.md").read_text()
