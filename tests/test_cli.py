"""The command line: generate, check-config, status, run without a token, and the layering rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bot.cli import main

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


def test_check_config_masks_and_lists_missing_env(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "super-secret-token-value")
    monkeypatch.delenv("LEONARDO_API_KEY", raising=False)
    assert main(["check-config", "--config", str(REPO / "config.example.toml")]) == 0
    out = capsys.readouterr().out
    assert "super-secret-token-value" not in out
    assert "DISCORD_TOKEN: set (value hidden)" in out
    assert "missing environment variables: LEONARDO_API_KEY" in out


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


def test_status_on_a_fresh_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
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
