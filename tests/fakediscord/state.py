"""The fake's world: users, guilds, channels, messages, interactions, and the logs tests assert on.

Everything here is plain data. REST handlers and the gateway mutate it and call `State.changed()`, which
wakes anyone blocked in `State.wait_for`, so tests wait on events instead of sleeping.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .constants import (
    DEFAULT_EVERYONE_PERMISSIONS,
    DISCORD_EPOCH_MS,
    DM_UPLOAD_LIMIT,
    UPLOAD_LIMIT_BY_TIER,
    ChannelType,
    MessageFlag,
)

T = TypeVar("T")


def iso(ts: float) -> str:
    """Discord's ISO-8601 timestamp format."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


@dataclass
class FakeConfig:
    """Knobs a test may turn. Times are seconds."""

    token: str = "fake-bot-token"
    interaction_ack_timeout: float = 3.0
    interaction_token_ttl: float = 15 * 60.0
    heartbeat_interval_ms: int = 41250
    rate_limit: int = 50  # X-RateLimit-Limit per bucket and window (the generic per-route limit)
    rate_limit_window: float = 1.0
    enforce_rate_limits: bool = True  # False: headers are still sent, but nothing is answered with 429
    # Discord's own limits (see ratelimits.py). False: one generic bucket per route and major parameter and
    # no global limit (the fake's behaviour before these existed).
    discord_limits: bool = True
    message_limit: int = 5  # POST .../messages per channel, and separately PATCH .../messages/{id} per channel
    message_window: float = 5.0
    message_delete_limit: int = 5  # DELETE .../messages/{id} per channel
    message_delete_window: float = 1.0
    webhook_limit: int = 5  # every /webhooks/{id}/{token}... call, per webhook id + token
    webhook_window: float = 2.0
    global_rate_limit: int = 50  # bot-token requests per window, all routes but interaction/webhook-token ones
    global_rate_limit_window: float = 1.0
    privileged_intents: bool = True  # whether the application may ask for privileged intents
    message_content_enabled: bool = True  # application flag: REST reads return content
    replay_buffer: int = 5000
    recommended_shards: int = 1  # GET /gateway/bot's "shards": what a client with shard_count unset runs


@dataclass
class FakeUser:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    avatar: str | None = None
    locale: str = "en-US"  # the language their Discord client is set to (sent with each interaction)
    allows_dms: bool = True  # False: the user's privacy settings refuse DMs from apps (403 50007)

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass
class FakeRole:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 0
    color: int = 0
    hoist: bool = False
    managed: bool = False
    mentionable: bool = False

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"


@dataclass
class Overwrite:
    """A channel permission overwrite; type 0 targets a role, 1 a member."""

    id: int
    type: int
    allow: int = 0
    deny: int = 0


@dataclass
class FakeMember:
    user: FakeUser
    guild_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: float = field(default_factory=time.time)


@dataclass
class FakeGuild:
    id: int
    name: str
    owner_id: int
    premium_tier: int = 0
    upload_limit_override: int | None = None
    locale: str = "en-US"  # the server's preferred locale (Server Settings -> Community -> language)
    roles: dict[int, FakeRole] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)

    @property
    def everyone(self) -> FakeRole:
        return self.roles[self.id]

    @property
    def upload_limit(self) -> int:
        """Max total upload size; tiers 0/1 are 10 MiB, 2 is 50 MiB, 3 is 100 MiB unless overridden."""
        if self.upload_limit_override is not None:
            return self.upload_limit_override
        return UPLOAD_LIMIT_BY_TIER.get(self.premium_tier, UPLOAD_LIMIT_BY_TIER[0])


@dataclass
class FakeChannel:
    id: int
    type: int
    name: str | None
    guild_id: int | None = None
    parent_id: int | None = None
    position: int = 0
    overwrites: list[Overwrite] = field(default_factory=list)
    topic: str | None = None
    nsfw: bool = False
    recipients: list[int] = field(default_factory=list)  # DMs
    owner_id: int | None = None  # threads
    archived: bool = False
    locked: bool = False
    auto_archive_duration: int = 1440
    created_at: float = field(default_factory=time.time)
    member_ids: set[int] = field(default_factory=set)  # thread members
    last_message_id: int | None = None

    @property
    def is_thread(self) -> bool:
        return self.type in ChannelType.THREADS

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"


@dataclass
class FakeAttachment:
    """A file the fake hosts at its own URL (uploaded by the bot or provided by a test)."""

    id: int
    channel_id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    proxy_url: str
    width: int | None = None
    height: int | None = None
    description: str | None = None
    ephemeral: bool = False
    declared_size: int | None = None  # lie about the size (hostile-input tests)
    status: int = 200
    redirect_to: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the file server answers

    @property
    def size(self) -> int:
        return self.declared_size if self.declared_size is not None else len(self.data)


@dataclass
class FakeMessage:
    """A message as stored by the fake, with the request fields (e.g. allowed_mentions) kept as sent."""

    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    allowed_mentions: dict[str, Any] | None = None
    message_reference: dict[str, Any] | None = None
    mentions: list[int] = field(default_factory=list)
    mention_roles: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    tts: bool = False
    nonce: str | int | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_id: int | None = None
    interaction_user_id: int | None = None
    thread_id: int | None = None
    poll: dict[str, Any] | None = None
    timestamp: float = field(default_factory=time.time)
    edited_timestamp: float | None = None
    deleted: bool = False
    raw: dict[str, Any] = field(default_factory=dict)  # last request body that shaped this message

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & MessageFlag.LOADING)

    def custom_ids(self) -> list[str]:
        """Every custom_id in this message's components, depth first."""
        found: list[str] = []

        def walk(items: list[dict[str, Any]]) -> None:
            for item in items:
                if "custom_id" in item:
                    found.append(str(item["custom_id"]))
                walk(item.get("components") or [])
                for key in ("component", "accessory"):
                    if isinstance(item.get(key), dict):
                        walk([item[key]])

        walk(self.components)
        return found


@dataclass
class Upload:
    """One `files[n]` part of a multipart request."""

    field: str
    filename: str
    content_type: str | None
    data: bytes


@dataclass
class RestCall:
    method: str
    path: str  # concrete path below the API base, e.g. /channels/1/messages
    route: str | None  # template key, e.g. "POST /channels/{channel_id}/messages"; None when unknown
    query: dict[str, str]
    json: Any = None  # JSON body or the multipart payload_json
    files: list[Upload] = field(default_factory=list)
    status: int = 0
    code: int | None = None
    response: Any = None
    started: float = 0.0
    finished: float = 0.0
    injected: str | None = None  # "429", "429-global", "error" when a fault was injected
    auth: str = "none"  # "bot" (Authorization: Bot ...), "interaction" (callback), "webhook" (token in path), "none"
    bucket: str | None = None  # X-RateLimit-Bucket answered (the bucket's shape; None for unknown routes)
    major: str = ""  # the major parameter(s) that, with the bucket, identify the rate-limit bucket
    ratelimit_scope: str | None = None  # on a 429: "user" (per route), "global" or as injected
    retry_after: float | None = None  # on a 429: the retry_after answered


@dataclass
class GatewayRecord:
    direction: str  # "send" (fake -> bot) or "recv"
    op: int
    t: str | None
    s: int | None
    d: Any
    time: float
    session_id: str | None
    path: str


@dataclass
class CallbackAttempt:
    type: int | None
    data: dict[str, Any] | None
    files: list[Upload]
    status: int
    code: int | None
    time: float


@dataclass
class InteractionRecord:
    id: int
    token: str
    type: int
    payload: dict[str, Any]
    user_id: int
    channel_id: int
    guild_id: int | None
    created_at: float
    dispatched_at: float | None = None
    callback_at: float | None = None
    callback_type: int | None = None
    callback_data: dict[str, Any] | None = None
    attempts: list[CallbackAttempt] = field(default_factory=list)
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    followups_sent: int = 0  # follow-up messages created (the cap counts sends, deleted or not)
    modal: dict[str, Any] | None = None
    source_message_id: int | None = None
    autocomplete_choices: list[dict[str, Any]] | None = None


class State:
    """All mutable fake-Discord state plus the change signal."""

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.base_url = ""
        self._counter = itertools.count(1)
        self.users: dict[int, FakeUser] = {}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, FakeMessage] = {}
        self.channel_messages: dict[int, list[int]] = {}
        self.files: dict[int, FakeAttachment] = {}
        self.interactions: dict[int, InteractionRecord] = {}
        self.interactions_by_token: dict[str, InteractionRecord] = {}
        self.global_commands: dict[int, dict[str, Any]] = {}
        self.guild_commands: dict[int, dict[int, dict[str, Any]]] = {}
        # guild id -> command name -> target id -> (type 1 role / 2 user / 3 channel, allowed): what a server
        # admin sets in Server Settings > Integrations; it overrides default_member_permissions
        self.command_permissions: dict[int, dict[str, dict[int, tuple[int, bool]]]] = {}
        self.rest_log: list[RestCall] = []
        self.gateway_log: list[GatewayRecord] = []
        self.typing: list[tuple[int, float]] = []
        self.user_installs: set[int] = set()  # users who installed the app to their account
        self.clock_offset = 0.0  # advance_clock: time that passed for the fake (token lifetimes, ack windows)
        self._event = asyncio.Event()
        self.version = 0
        self.bot = self.add_user("FakeBot", bot=True)
        self.application_id = self.bot.id
        self.owner = self.add_user("app-owner")

    # --- ids, time, change signal -------------------------------------------------------------------

    def snowflake(self) -> int:
        """A real-looking snowflake, so discord.py's created_at works."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (1 << 17) | (next(self._counter) & 0xFFF)

    def now(self) -> float:
        """Monotonic clock used for every recorded time (perf_counter, plus any `advance_clock`)."""
        return time.perf_counter() + self.clock_offset

    @staticmethod
    def token() -> str:
        return "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)

    def changed(self) -> None:
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 5.0, poll: float = 0.05) -> T:
        """Return the first truthy predicate() result; re-checked on each state change (and every `poll`
        seconds, for predicates over bot-side state the fake cannot see change)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s")
            event = self._event
            try:
                await asyncio.wait_for(event.wait(), min(poll, remaining))
            except TimeoutError:
                pass

    # --- world building -------------------------------------------------------------------------------

    def add_user(self, username: str, *, bot: bool = False, global_name: str | None = None) -> FakeUser:
        user = FakeUser(id=self.snowflake(), username=username, bot=bot, global_name=global_name)
        self.users[user.id] = user
        return user

    def add_guild(self, name: str, *, owner: FakeUser | None, premium_tier: int, upload_limit: int | None) -> FakeGuild:
        guild = FakeGuild(
            id=self.snowflake(),
            name=name,
            owner_id=(owner or self.owner).id,
            premium_tier=premium_tier,
            upload_limit_override=upload_limit,
        )
        guild.roles[guild.id] = FakeRole(guild.id, guild.id, "@everyone", DEFAULT_EVERYONE_PERMISSIONS)
        self.guilds[guild.id] = guild
        return guild

    def add_channel(self, channel: FakeChannel) -> FakeChannel:
        self.channels[channel.id] = channel
        self.channel_messages.setdefault(channel.id, [])
        if channel.guild_id is not None and not channel.is_thread:
            self.guilds[channel.guild_id].channel_ids.append(channel.id)
        return channel

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        for channel in self.channels.values():
            if channel.type == ChannelType.DM and channel.recipients == [user.id]:
                return channel
        return self.add_channel(FakeChannel(id=self.snowflake(), type=ChannelType.DM, name=None, recipients=[user.id]))

    def private_channel(self, users: list[FakeUser]) -> FakeChannel:
        """A DM between two people, or a group DM: places the bot can never post in (it is not a recipient)."""
        kind = ChannelType.DM if len(users) == 2 else ChannelType.GROUP_DM
        channel = FakeChannel(
            id=self.snowflake(), type=kind, name=None, recipients=[u.id for u in users], owner_id=users[0].id
        )
        return self.add_channel(channel)

    def guilds_with_bot(self) -> list[FakeGuild]:
        return [g for g in self.guilds.values() if self.bot.id in g.members]

    def bot_in(self, channel: FakeChannel) -> bool:
        """Whether the bot is present where `channel` is: a member of its guild, or the other end of its DM."""
        if channel.guild_id is not None:
            guild = self.guilds.get(channel.guild_id)
            return guild is not None and self.bot.id in guild.members
        return channel.type == ChannelType.DM and len(channel.recipients) == 1

    def add_message(self, message: FakeMessage) -> FakeMessage:
        self.messages[message.id] = message
        self.channel_messages.setdefault(message.channel_id, []).append(message.id)
        channel = self.channels.get(message.channel_id)
        if channel is not None and not message.ephemeral:
            channel.last_message_id = message.id
        return message

    # --- lookups --------------------------------------------------------------------------------------

    def guild_of(self, channel: FakeChannel) -> FakeGuild | None:
        return self.guilds.get(channel.guild_id) if channel.guild_id is not None else None

    def upload_limit(self, channel: FakeChannel) -> int:
        guild = self.guild_of(channel)
        return guild.upload_limit if guild else DM_UPLOAD_LIMIT

    def visible_messages(self, channel_id: int, viewer_id: int | None = None) -> list[FakeMessage]:
        """Messages in a channel as `viewer_id` sees them: no deleted ones, ephemerals only for their user."""
        out = []
        for mid in self.channel_messages.get(channel_id, []):
            msg = self.messages[mid]
            if msg.deleted:
                continue
            if msg.ephemeral and (viewer_id is None or msg.interaction_user_id != viewer_id):
                continue
            out.append(msg)
        return sorted(out, key=lambda m: m.id)

    def threads(self, parent_id: int | None = None) -> list[FakeChannel]:
        return [c for c in self.channels.values() if c.is_thread and (parent_id is None or c.parent_id == parent_id)]
