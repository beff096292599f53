"""Config loading: defaults, the file, env overrides, and one clear line per mistake."""

from __future__ import annotations

import os
import re
import tomllib
import typing
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from bot.config import LeonardoConfig, ProviderConfig, ProviderSection, Settings, load_settings
from bot.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_use_local_provider_and_sqlite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None)
    assert settings.generation.default_provider == "local"
    assert list(settings.providers) == ["local"]
    assert settings.storage.database == "seedream-bot.sqlite3"
    assert settings.discord.api_base == "https://discord.com/api/v10"


def test_example_config_is_valid() -> None:
    settings = load_settings(REPO / "config.example.toml")
    assert settings.discord.attachment_hosts == ["https://cdn.discordapp.com", "https://media.discordapp.net"]
    assert settings.generation.default_provider == "local"


def test_the_example_enables_nothing_that_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A newcomer copies the example and runs the bot: no provider may wait for a key they do not have."""
    for name in [n for n in os.environ if n.startswith("SEEDREAM_")]:
        monkeypatch.delenv(name)
    settings = load_settings(REPO / "config.example.toml")
    assert {name: p.api_key_env for name, p in settings.providers.items() if p.api_key_env} == {}
    assert list(settings.secret_env_vars().values()) == ["DISCORD_TOKEN"]


def example_blocks() -> dict[str, str]:
    """Each ``[providers.NAME]`` table of the example, enabled or commented out, as TOML with the '# ' removed."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (REPO / "config.example.toml").read_text().splitlines():
        bare = line.removeprefix("# ") if line.startswith("# ") else line
        header = re.match(r"^\[providers\.([a-z0-9_-]+)\]", bare)
        if header:
            current = blocks.setdefault(header.group(1), [])
        elif current is not None and re.match(r"^\s*[a-z_]+ = ", bare):
            current.append(bare)
        elif not line.strip() or line.startswith("["):
            current = None
    return {name: "\n".join(lines) for name, lines in blocks.items()}


PROVIDER_CLASSES = typing.get_args(typing.get_args(ProviderConfig)[0])


@pytest.mark.parametrize("cls", PROVIDER_CLASSES, ids=lambda c: c.__name__)
def test_every_provider_kind_has_a_block_with_every_key_in_the_example(cls: type[ProviderSection]) -> None:
    """Each kind's block lists every field it reads; uncommented, it is valid and shows the defaults."""
    kind = cls.model_fields["kind"].default
    blocks = [text for text in example_blocks().values() if f'kind = "{kind}"' in text]
    assert len(blocks) == 1, f"config.example.toml needs one [providers.NAME] block with kind = {kind!r}"
    data = tomllib.loads(blocks[0])
    missing = sorted(set(cls.model_fields) - set(data))
    assert missing == [], f"[providers] kind={kind}: add {missing} to config.example.toml"
    if kind == "local":
        assert data.pop("api_key_env") == ""  # listed only to say it is not used
    config = TypeAdapter(ProviderConfig).validate_python(data)
    defaults = cls()
    assert {k: getattr(config, k) for k in data} == {k: getattr(defaults, k) for k in data}


def test_every_key_in_the_example_has_a_comment() -> None:
    lines = (REPO / "config.example.toml").read_text().splitlines()
    bare = [line.removeprefix("# ") for line in lines]
    uncommented = [line for line in bare if re.match(r"^[a-z_]+ = ", line) and " # " not in line]
    assert uncommented == []


def test_contract_keys_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[discord]
token_env = "MY_TOKEN"
api_base = "http://127.0.0.1:8080/api/v10"
attachment_hosts = ["http://127.0.0.1:8080"]
command_guilds = [123]
[storage]
database = "x.sqlite3"
data_dir = "imgs"
[generation]
default_provider = "leo"
[providers.leo]
kind = "leonardo"
base_url = "http://127.0.0.1:9/api/rest"
api_key_env = "LEO_KEY"
model = "seedream-4.0"
""",
    )
    settings = load_settings(path)
    assert settings.discord.token_env == "MY_TOKEN"
    assert settings.discord.command_guilds == [123]
    assert settings.discord.attachment_hosts == ["http://127.0.0.1:8080"]
    assert settings.storage.data_dir == "imgs"
    assert settings.providers["leo"].model == "seedream-4.0"


def test_env_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[generation]\nworkers = 2\n")
    monkeypatch.setenv("SEEDREAM_GENERATION__WORKERS", "7")
    monkeypatch.setenv("SEEDREAM_PROVIDERS__LOCAL__DELAY_SECONDS", "0.5")
    settings = load_settings(path)
    assert settings.generation.workers == 7
    assert settings.providers["local"].delay_seconds == 0.5


def test_owner_ids_default_to_the_application_owner_and_can_be_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(write(tmp_path, "")).discord.owner_ids == []  # empty: the Discord application's owner
    assert load_settings(write(tmp_path, "[discord]\nowner_ids = [42, 43]\n")).discord.owner_ids == [42, 43]
    monkeypatch.setenv("SEEDREAM_DISCORD__OWNER_IDS", "[7]")
    assert load_settings(write(tmp_path, "")).discord.owner_ids == [7]


def test_every_key_of_the_plain_sections_is_in_the_example() -> None:
    """config.example.toml is the reference for deployments: a new key must show up there."""
    text = (REPO / "config.example.toml").read_text()
    missing = [
        f"{section}.{key}"
        for section, field in Settings.model_fields.items()
        if section != "providers"
        for key in getattr(field.annotation, "model_fields", {})
        if f"\n{key} = " not in text
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[generation]\nworkrs = 3\n", "generation.workrs: unknown key"),
        ('[providers.leo]\nkind = "leonardo"\nmodel = "seedream-5"\n', "providers.leo.model = 'seedream-5'"),
        ('[providers.x]\nkind = "midjourney"\n', "providers.x.kind: 'midjourney' is not a provider kind"),
        ('[generation]\ndefault_provider = "nope"\n', "'nope' is not a configured provider"),
        ('[discord]\nattachment_hosts = ["cdn.discordapp.com"]\n', "discord.attachment_hosts"),
        ("[generation]\nworkers = 0\n", "generation.workers = 0"),
        ("[generation\n", "not valid TOML"),
        ('[discord]\nowner_ids = ["me"]\n', "discord.owner_ids.0 = 'me'"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert expected in str(info.value)
    assert "Traceback" not in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_api_key_comes_from_the_named_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    config = LeonardoConfig(api_key_env="SOME_KEY_VAR")
    monkeypatch.delenv("SOME_KEY_VAR", raising=False)
    assert config.api_key() is None
    monkeypatch.setenv("SOME_KEY_VAR", "secret-value")
    assert config.api_key() == "secret-value"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[discord]\nshard_count = 2\nshard_ids = [2]", "shard_ids [2] are not below shard_count = 2"),
        ("[discord]\nshard_count = 0\nshard_ids = [0]", "shard_ids needs shard_count"),
        ("[generation]\nlease_seconds = 6\nlease_poll_seconds = 5", "at most half of lease_seconds"),
    ],
)
def test_shards_and_leases_that_cannot_work_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        load_settings(write(tmp_path, text))
