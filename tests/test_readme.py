"""README promises: the capabilities table matches the code, and the set-up commands are the ones CI runs."""

from __future__ import annotations

import re
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
