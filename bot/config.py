"""Configuration: a TOML file, overridden by ``SEEDREAM_*`` environment variables, validated by pydantic.

Key names here are a contract with deployments; add keys freely, rename none. Secrets never live in
the file: the file names the environment variable that holds each one.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from bot import sizes
from bot.errors import ConfigError

DISCORD_API_BASE = "https://discord.com/api/v10"
DEFAULT_CONFIG_PATH = Path("config.toml")


class Section(BaseModel):
    """A config table: unknown keys are errors, so typos are caught at start-up."""

    model_config = ConfigDict(extra="forbid")


class DiscordSection(Section):
    token_env: str = "DISCORD_TOKEN"  # noqa: S105 - the name of the variable, not a secret
    api_base: str = DISCORD_API_BASE
    attachment_hosts: list[str] = ["https://cdn.discordapp.com", "https://media.discordapp.net"]
    command_guilds: list[int] = []
    message_content_intent: bool = False
    thread_auto_archive_minutes: Literal[60, 1440, 4320, 10080] = 1440
    guilds_only: bool = True
    status_edit_seconds: float = Field(default=5.0, ge=0)  # at most one status-message edit per job this often
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    guild_ready_timeout: float = Field(default=2.0, ge=0)  # discord.py waits this long for guilds before on_ready
    #: ``run`` retries an unreachable Discord (no DNS, connection refused, no answer) with backoff for this
    #: long, one log line per attempt, then exits with code 1 (a supervisor restarts it later).
    login_timeout_seconds: float = Field(default=120.0, gt=0)
    #: Who may take bot-wide actions (resume a provider paused for credit for every server); empty = the
    #: Discord application's owner, or its team's admins and developers. When set, only these user ids.
    owner_ids: list[int] = []
    #: Split the gateway over several ``run`` processes (discord.py's sharded client). 1: one connection, no
    #: sharding. 0: ask Discord for the recommended count (one process then runs every shard).
    shard_count: int = Field(default=1, ge=0)
    #: The shards this process runs (each below ``shard_count``); empty = all of them.
    shard_ids: list[int] = []

    @model_validator(mode="after")
    def _shards_fit(self) -> DiscordSection:
        if self.shard_ids and not self.shard_count:
            raise ValueError("shard_ids needs shard_count: the total number of shards every process splits")
        outside = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
        if outside:
            raise ValueError(f"shard_ids {outside} are not below shard_count = {self.shard_count}")
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError("shard_ids lists a shard twice")
        return self

    @field_validator("api_base")
    @classmethod
    def _api_base_is_http(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL such as https://discord.com/api/v10")
        return value.rstrip("/")

    @field_validator("attachment_hosts")
    @classmethod
    def _hosts_are_origins(cls, hosts: list[str]) -> list[str]:
        cleaned = []
        for host in hosts:
            parts = urlsplit(host)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
                raise ValueError(f"{host!r} must be an origin like https://cdn.discordapp.com (scheme://host[:port])")
            cleaned.append(f"{parts.scheme}://{parts.netloc}".lower())
        return cleaned


class StorageSection(Section):
    database: str = "seedream-bot.sqlite3"
    data_dir: str = "data"
    retention_days: int = Field(default=30, ge=1)


class GenerationSection(Section):
    default_provider: str = "local"
    default_aspect: str = "1:1"
    default_resolution: Literal["1K", "2K", "4K"] = "2K"
    workers: int = Field(default=4, ge=1, le=64)
    delivery_workers: int = Field(default=8, ge=1, le=64)
    per_user_in_flight: int = Field(default=2, ge=1)
    max_reference_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(default=50_000_000, ge=1_000_000)
    max_result_bytes: int = Field(default=60 * 1024 * 1024, ge=1024)
    download_timeout_seconds: float = Field(default=60.0, gt=0)
    #: Posted images carry their prompt, model, seed and job id in the file's metadata (PNG text, JPEG XMP).
    provenance: bool = True
    #: Several processes on one PostgreSQL database: a job whose process stops renewing its lease for this long
    #: (it died, or lost the database or Discord) is taken over by another process.
    lease_seconds: float = Field(default=60.0, ge=1, le=600)
    #: How often a process renews its leases, looks for jobs other processes queued or left, and for Cancel
    #: pressed elsewhere (PostgreSQL also notifies at once; this poll covers a missed notification).
    lease_poll_seconds: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _renewed_within_the_lease(self) -> GenerationSection:
        if self.lease_poll_seconds * 2 > self.lease_seconds:
            raise ValueError(
                "lease_poll_seconds must be at most half of lease_seconds, or leases lapse between renewals"
            )
        return self

    @field_validator("default_aspect")
    @classmethod
    def _aspect_is_listed(cls, value: str) -> str:
        if value not in sizes.ASPECT_RATIOS:
            raise ValueError(f"choose one of {' '.join(sizes.ASPECT_RATIOS)}")
        return value


class QuotaSection(Section):
    """Default allowance per member; moderators refine it per guild, role, channel and member."""

    window: Literal["daily", "weekly", "monthly", "rolling"] = "daily"
    rolling_hours: int = Field(default=24, ge=1)
    timezone: str = "UTC"
    default_limit: int = Field(default=50, ge=0)
    max_queued_per_user: int = Field(default=10, ge=1)
    resolution_weights: dict[str, int] = {"1K": 1, "2K": 1, "3K": 2, "4K": 2}
    global_daily_cap: int = Field(default=0, ge=0)  # 0 = no cap on the whole bot
    guild_allowlist: list[int] = []  # empty = every guild may use the bot
    #: Units per member per day for personal use: DMs, group DMs and servers without the bot, where a member
    #: installed the bot to their own account. One allowance across all those places; 0 = personal use off.
    personal_daily: int = Field(default=10, ge=0)

    @field_validator("timezone")
    @classmethod
    def _timezone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                "not a known time zone; use an IANA name such as UTC, Europe/Paris or America/New_York"
            ) from None
        return value

    @field_validator("resolution_weights")
    @classmethod
    def _weights_are_resolutions(cls, weights: dict[str, int]) -> dict[str, int]:
        for resolution, weight in weights.items():
            if resolution not in sizes.RESOLUTIONS:
                raise ValueError(f"{resolution!r} is not a resolution; use {', '.join(sizes.RESOLUTIONS)}")
            if weight < 0:
                raise ValueError(f"the weight of {resolution} must be 0 or more")
        return weights


class MetricsSection(Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)


class LoggingSection(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class ProviderSection(Section):
    """Settings every provider shares."""

    max_concurrent: int = Field(default=4, ge=1, le=100)
    cost_weight: int = Field(default=1, ge=0)
    #: After "out of credit" the provider is paused this long (or until a moderator resumes it).
    credit_cooldown_minutes: float = Field(default=30.0, gt=0)
    timeout_seconds: float = Field(default=120.0, gt=0)
    api_key_env: str | None = None

    def api_key(self) -> str | None:
        """The secret, read from the environment at the moment it is needed."""
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env) or None


class LocalProviderConfig(ProviderSection):
    kind: Literal["local"] = "local"
    model: str = "placeholder"
    delay_seconds: float = Field(default=0.0, ge=0)


class RemoteProviderSection(ProviderSection):
    base_url: str
    api_key_env: str | None = Field(default=None, min_length=1)
    poll_interval_seconds: float = Field(default=3.0, gt=0)
    max_attempts: int = Field(default=4, ge=1, le=10)
    #: Longest a generation may take before the job fails (and is refunded).
    max_wait_seconds: float = Field(default=600.0, gt=0)
    #: First backoff step between retries (doubles, with jitter); Retry-After wins when given.
    retry_base_seconds: float = Field(default=1.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _base_is_http(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")


class LeonardoConfig(RemoteProviderSection):
    kind: Literal["leonardo"] = "leonardo"
    base_url: str = "https://cloud.leonardo.ai/api/rest"
    api_key_env: str | None = "LEONARDO_API_KEY"
    model: Literal[
        "seedream-4.5", "seedream-4.0", "seedream-5.0-pro", "bytedance/seedream-5.0-flash", "bytedance/seedream-5.5"
    ] = "seedream-4.5"
    reference_strength: Literal["LOW", "MID", "HIGH"] = "MID"


class NovitaConfig(RemoteProviderSection):
    timeout_seconds: float = Field(default=300.0, gt=0)  # synchronous: one call makes every image
    kind: Literal["novita"] = "novita"
    base_url: str = "https://api.novita.ai"
    api_key_env: str | None = "NOVITA_API_KEY"
    model: Literal["seedream-4.5", "seedream-4.0", "seedream-5.0-lite"] = "seedream-4.5"
    watermark: bool = False


class HighwayConfig(RemoteProviderSection):
    timeout_seconds: float = Field(default=300.0, gt=0)  # synchronous: one call makes every image
    kind: Literal["highway"] = "highway"
    base_url: str = "https://api.highwayapi.ai"
    api_key_env: str | None = "HIGHWAY_API_KEY"
    model: Literal["seedream-4.5", "seedream-4.0", "seedream-5.0-lite"] = "seedream-4.5"
    watermark: bool = False


class TaskApiConfig(RemoteProviderSection):
    max_wait_seconds: float = Field(default=900.0, gt=0)  # tasks queue on the provider's side
    kind: Literal["taskapi"] = "taskapi"
    base_url: str = "https://gccai.heqingsong.uk"
    api_key_env: str | None = "TASKAPI_API_KEY"
    model: str = "doubao-seedream-4-5"
    watermark: bool = False


class ArkConfig(RemoteProviderSection):
    timeout_seconds: float = Field(default=300.0, gt=0)  # synchronous: one call makes every image
    kind: Literal["ark"] = "ark"
    base_url: str = "https://ark.ap-southeast.bytepluses.com/api/v3"
    api_key_env: str | None = "ARK_API_KEY"
    model: str = "seedream-4-5-251128"
    watermark: bool = False


ProviderConfig = Annotated[
    LocalProviderConfig | LeonardoConfig | NovitaConfig | HighwayConfig | TaskApiConfig | ArkConfig,
    Field(discriminator="kind"),
]
PROVIDER_KINDS: tuple[str, ...] = ("local", "leonardo", "novita", "highway", "taskapi", "ark")


def _default_providers() -> dict[str, ProviderConfig]:
    return {"local": LocalProviderConfig()}


#: A provider's name is what members pick in /imagine and what ``SEEDREAM_PROVIDERS__NAME__KEY`` targets
#: (environment names are read in lower case), so it is lower case, short and has no spaces.
PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class Settings(Section):
    """The whole configuration. Precedence: ``SEEDREAM_*`` env > TOML file > defaults."""

    discord: DiscordSection = DiscordSection()
    storage: StorageSection = StorageSection()
    generation: GenerationSection = GenerationSection()
    quota: QuotaSection = QuotaSection()
    logging: LoggingSection = LoggingSection()
    metrics: MetricsSection = MetricsSection()
    providers: dict[str, ProviderConfig] = Field(default_factory=_default_providers)
    #: Dotted keys set by ``SEEDREAM_*`` variables (``generation.workers`` -> ``SEEDREAM_GENERATION__WORKERS``).
    _from_env: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("providers")
    @classmethod
    def _provider_names(cls, providers: dict[str, ProviderConfig]) -> dict[str, ProviderConfig]:
        if not providers:
            raise ValueError('configure at least one provider, e.g. [providers.local] kind = "local"')
        for name in providers:
            if not PROVIDER_NAME.match(name):
                raise ValueError(
                    f"provider name {name!r} must be 1-32 lower-case letters, digits, '-' or '_' (members pick it"
                    " in /imagine)"
                )
        if len(providers) > 25:
            raise ValueError("at most 25 providers (Discord offers at most 25 choices)")
        return providers

    @model_validator(mode="after")
    def _default_provider_exists(self) -> Settings:
        if self.generation.default_provider not in self.providers:
            names = ", ".join(sorted(self.providers)) or "none"
            raise ValueError(
                f"generation.default_provider {self.generation.default_provider!r} is not a configured provider"
                f" (configured: {names})"
            )
        return self

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir)

    @property
    def uses_real_discord(self) -> bool:
        return self.discord.api_base == DISCORD_API_BASE

    @property
    def from_env(self) -> dict[str, str]:
        """Which settings came from the environment: dotted key -> the ``SEEDREAM_*`` variable that set it."""
        return dict(self._from_env)

    def secret_env_vars(self) -> dict[str, str]:
        """Every environment variable that holds a secret, keyed by what it is for."""
        names = {"discord token": self.discord.token_env}
        for name, provider in self.providers.items():
            if provider.api_key_env:
                names[f"provider {name}"] = provider.api_key_env
        return names


def _error_path(error: Any) -> list[str]:
    loc = [str(part) for part in error["loc"]]
    # A discriminated union puts the chosen kind into the path (providers.leo.leonardo.model): drop it.
    if len(loc) > 2 and loc[0] == "providers" and loc[2] in PROVIDER_KINDS:
        del loc[2]
    return loc


def _describe_error(error: Any) -> str:
    loc = _error_path(error)
    key = ".".join(loc) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (check its spelling against config.example.toml)"
    if error["type"] == "union_tag_invalid":
        tag = error.get("ctx", {}).get("tag", "?")
        return f"{key}.kind: {tag!r} is not a provider kind; allowed: {', '.join(PROVIDER_KINDS)}"
    if error["type"] == "union_tag_not_found":
        return f"{key}: missing 'kind'; allowed: {', '.join(PROVIDER_KINDS)}"
    if "input" in error and not isinstance(error["input"], dict):
        return f"{key} = {error['input']!r}: {message}"
    return f"{key}: {message}"


ENV_PREFIX = "SEEDREAM_"


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Overlay ``SEEDREAM_SECTION__KEY=value`` variables onto the file's data (``__`` nests deeper).

    Values are read as JSON when they parse (numbers, booleans, lists), else taken as plain strings.
    Returns the key path each variable set, so a mistake can be blamed on the variable, not the file.
    """
    applied: dict[tuple[str, ...], str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
        applied[tuple(path)] = name
    return applied


def _env_source(loc: list[str], applied: Mapping[tuple[str, ...], str]) -> str | None:
    """The variable that set the key at ``loc`` (or a table around it, or a value inside it), if any."""
    for path, name in applied.items():
        depth = min(len(path), len(loc))
        if depth and tuple(loc[:depth]) == path[:depth]:
            return name
    return None


def _read_config(path: Path) -> dict[str, Any]:
    """The TOML file as data; ``ConfigError`` with one line for anything that is not a readable UTF-8 TOML file."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a config file: pass the TOML file itself") from None
    except PermissionError:
        raise ConfigError(f"cannot read {path}: permission denied (give the bot's user read access)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}): save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_settings(path: Path | None = None) -> Settings:
    """Read the config file (``config.toml`` by default, if present) and validate it.

    Raises ConfigError with one line per problem, each naming the key and what is allowed.
    """
    source = "built-in defaults"
    data: dict[str, Any] = {}
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        source = str(path)
        data = _read_config(path)
    data.setdefault("providers", {"local": {"kind": "local"}})
    applied = apply_env_overrides(data, os.environ)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            variable = _env_source(_error_path(err), applied)
            origin = f"environment variable {variable}" if variable else source
            lines.append(f"{origin}: {_describe_error(err)}")
        raise ConfigError("\n".join(lines)) from None
    settings._from_env = {".".join(path): name for path, name in applied.items()}
    return settings
