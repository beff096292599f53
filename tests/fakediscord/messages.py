"""Creating, editing and deleting messages and threads, shared by channel routes, interaction webhooks and the
harness; plus hosting attachments and parsing JSON or multipart (`payload_json` + `files[n]`) bodies."""

from __future__ import annotations

import asyncio
import io
import json
import mimetypes
import re
import secrets
import time
from typing import Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from . import payloads
from .constants import ChannelType, ErrorCode, Intent, MessageFlag, MessageType
from .gateway import Gateway, GatewaySession
from .rules import DiscordError, FormErrors
from .state import FakeAttachment, FakeChannel, FakeMessage, State, Upload

USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")
UNSAFE_FILENAME = re.compile(r"[\s/\\\x00-\x1f]")
SENDABLE_FLAGS = MessageFlag.SUPPRESS_EMBEDS | MessageFlag.SUPPRESS_NOTIFICATIONS | MessageFlag.IS_COMPONENTS_V2


async def read_body(request: web.Request) -> tuple[Any, list[Upload]]:
    """JSON body, or multipart with `payload_json` and `files[n]` parts, as discord.py sends them."""
    ctype = request.content_type
    if ctype.startswith("multipart/"):
        reader = await request.multipart()
        body: Any = None
        uploads: list[Upload] = []
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue
            data = await part.read(decode=False)
            if part.name == "payload_json":
                body = json.loads(bytes(data) or b"null")
            elif part.filename is not None:
                ptype = part.headers.get("Content-Type")
                uploads.append(Upload(part.name or "", part.filename, ptype, bytes(data)))
        return body, uploads
    raw = await request.read()
    if not raw:
        return None, []
    try:
        return json.loads(raw), []
    except ValueError as exc:
        raise DiscordError(400, ErrorCode.GENERAL, "400: Bad Request") from exc


def sniff(data: bytes, filename: str, declared: str | None) -> tuple[str | None, int | None, int | None]:
    """Content type and image size the way Discord's media pipeline reports them."""
    width = height = None
    ctype = declared if declared and declared != "application/octet-stream" else None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            ctype = Image.MIME.get(img.format or "", ctype)
    except Exception:
        pass
    if ctype is None:
        ctype = mimetypes.guess_type(filename)[0]
    return ctype, width, height


class Messages:
    def __init__(self, state: State, gateway: Gateway) -> None:
        self.state = state
        self.gateway = gateway
        self._soon: dict[int, asyncio.Task[None]] = {}  # message id -> its pending creation event

    # --- attachments ----------------------------------------------------------------------------------

    def host(
        self,
        channel_id: int,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        **extra: Any,
    ) -> FakeAttachment:
        """Store a file and give it Discord-CDN-like URLs on the fake (with ex/is/hm query parameters)."""
        aid = self.state.snowflake()
        filename = UNSAFE_FILENAME.sub("_", filename) or "unknown"  # Discord sanitises uploaded names
        ctype, width, height = sniff(data, filename, content_type)
        expiry = f"ex={int(time.time()) + 86400:x}&is={int(time.time()):x}&hm={secrets.token_hex(32)}&"
        path = f"{channel_id}/{aid}/{quote(filename)}"
        att = FakeAttachment(
            id=aid,
            channel_id=channel_id,
            filename=filename,
            data=data,
            content_type=extra.pop("content_type_override", None) or ctype,
            url=f"{self.state.base_url}/attachments/{path}?{expiry}",
            proxy_url=f"{self.state.base_url}/media/{path}?{expiry}",
            width=extra.pop("width", None) or width,
            height=extra.pop("height", None) or height,
            **extra,
        )
        self.state.files[aid] = att
        return att

    def _attachments(
        self, channel: FakeChannel, payload: dict[str, Any], uploads: list[Upload], keep: list[FakeAttachment]
    ) -> list[FakeAttachment]:
        by_index = {}
        for i, upload in enumerate(uploads):
            match = re.fullmatch(r"files\[(\d+)\]", upload.field)
            by_index[int(match.group(1)) if match else i] = upload
        ephemeral = bool(int(payload.get("flags") or 0) & MessageFlag.EPHEMERAL)
        spec = payload.get("attachments")
        if spec is None:
            spec = [{"id": i} for i in by_index]
        out: list[FakeAttachment] = []
        used: set[int] = set()
        existing = {a.id: a for a in keep}
        for item in spec:
            ident = int(item.get("id", -1))
            if ident in existing:
                out.append(existing[ident])
            elif ident in by_index:
                up = by_index[ident]
                used.add(ident)
                name = item.get("filename") or up.filename
                out.append(
                    self.host(
                        channel.id,
                        name,
                        up.data,
                        up.content_type,
                        description=item.get("description"),
                        ephemeral=ephemeral,
                    )
                )
        for ident, up in by_index.items():
            if ident not in used and payload.get("attachments") is not None:
                out.append(self.host(channel.id, up.filename, up.data, up.content_type, ephemeral=ephemeral))
        return out

    def _resolve_embeds(self, embeds: list[dict[str, Any]], atts: list[FakeAttachment]) -> list[dict[str, Any]]:
        """Add type "rich" and turn attachment://name URLs into the hosted attachment, as Discord does."""
        by_name = {a.filename: a for a in atts}
        out = []
        for embed in embeds:
            embed = {"type": "rich", **embed}
            for key in ("image", "thumbnail"):
                media = embed.get(key)
                if isinstance(media, dict) and str(media.get("url", "")).startswith("attachment://"):
                    att = by_name.get(media["url"].removeprefix("attachment://"))
                    if att is not None:
                        embed[key] = {**media, "url": att.url, "proxy_url": att.proxy_url}
                        if att.width is not None:
                            embed[key].update(width=att.width, height=att.height, content_type=att.content_type)
            out.append(embed)
        return out

    # --- mentions -------------------------------------------------------------------------------------

    def _mentions(
        self, channel: FakeChannel, content: str, allowed: dict[str, Any] | None, reply_author: int | None
    ) -> tuple[list[int], list[int], bool]:
        parse = {"users", "roles", "everyone"} if allowed is None else set(allowed.get("parse") or [])
        explicit_users = {int(u) for u in (allowed or {}).get("users") or []}
        explicit_roles = {int(r) for r in (allowed or {}).get("roles") or []}
        users: list[int] = []
        for uid in (int(u) for u in USER_MENTION.findall(content)):
            if uid in self.state.users and ("users" in parse or uid in explicit_users) and uid not in users:
                users.append(uid)
        guild = self.state.guild_of(channel)
        roles = [
            rid
            for rid in dict.fromkeys(int(r) for r in ROLE_MENTION.findall(content))
            if guild and rid in guild.roles and ("roles" in parse or rid in explicit_roles)
        ]
        everyone = "everyone" in parse and ("@everyone" in content or "@here" in content)
        replied = allowed is None or bool(allowed.get("replied_user"))
        if reply_author is not None and replied and reply_author not in users:
            users.append(reply_author)
        return users, roles, everyone

    # --- messages -------------------------------------------------------------------------------------

    def _reference(self, channel: FakeChannel, ref: dict[str, Any] | None) -> tuple[dict[str, Any] | None, int | None]:
        if not ref:
            return None, None
        target = self.state.messages.get(int(ref.get("message_id") or 0))
        target_channel = int(ref.get("channel_id") or channel.id)
        if target is None or target.deleted or target.channel_id != target_channel:
            if ref.get("fail_if_not_exists") is False:
                return None, None
            errors = FormErrors()
            errors.add(("message_reference",), "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
            errors.raise_if_any()
            raise AssertionError("unreachable")
        out = {"type": 0, "message_id": str(target.id), "channel_id": str(target.channel_id)}
        if target.guild_id is not None:
            out["guild_id"] = str(target.guild_id)
        return out, target.author_id

    async def create(
        self,
        channel: FakeChannel,
        author_id: int,
        payload: dict[str, Any],
        uploads: list[Upload],
        *,
        msg_type: int | None = None,
        extra_flags: int = 0,
        interaction_id: int | None = None,
        interaction_user_id: int | None = None,
        explicit_mentions: list[int] | None = None,
        dispatch: bool = True,
    ) -> FakeMessage:
        reference, reply_author = self._reference(channel, payload.get("message_reference"))
        content = str(payload.get("content") or "")
        allowed = payload.get("allowed_mentions")
        users, roles, everyone = self._mentions(channel, content, allowed, reply_author)
        for uid in explicit_mentions or []:
            if uid not in users:
                users.append(uid)
        flags = (int(payload.get("flags") or 0) & SENDABLE_FLAGS) | extra_flags
        msg = FakeMessage(
            id=self.state.snowflake(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author_id=author_id,
            content=content,
            components=list(payload.get("components") or []),
            flags=flags,
            type=msg_type if msg_type is not None else (MessageType.REPLY if reference else MessageType.DEFAULT),
            allowed_mentions=allowed,
            message_reference=reference,
            mentions=users,
            mention_roles=roles,
            mention_everyone=everyone,
            tts=bool(payload.get("tts")),
            nonce=payload.get("nonce"),
            poll=payload.get("poll"),
            interaction_id=interaction_id,
            interaction_user_id=interaction_user_id,
            raw=payload,
        )
        if interaction_id is not None:
            msg.webhook_id = msg.application_id = self.state.application_id
        msg.attachments = self._attachments(channel, {**payload, "flags": flags}, uploads, [])
        msg.embeds = self._resolve_embeds(list(payload.get("embeds") or []), msg.attachments)
        self.state.add_message(msg)
        if dispatch:
            await self.dispatch("MESSAGE_CREATE", msg)
        self.state.changed()
        return msg

    async def edit(self, msg: FakeMessage, payload: dict[str, Any], uploads: list[Upload]) -> FakeMessage:
        channel = self.state.channels[msg.channel_id]
        if "content" in payload:
            msg.content = str(payload["content"] or "")
            msg.mentions, msg.mention_roles, msg.mention_everyone = self._mentions(
                channel, msg.content, payload.get("allowed_mentions", msg.allowed_mentions), None
            )
        if "allowed_mentions" in payload:
            msg.allowed_mentions = payload["allowed_mentions"]
        if "components" in payload:
            msg.components = list(payload["components"] or [])
        if "flags" in payload and payload["flags"] is not None:
            keep = msg.flags & (MessageFlag.EPHEMERAL | MessageFlag.LOADING)
            msg.flags = (int(payload["flags"]) & SENDABLE_FLAGS) | keep
        if "attachments" in payload or uploads:
            spec = (
                payload
                if "attachments" in payload
                else {**payload, "attachments": [{"id": a.id} for a in msg.attachments]}
            )
            msg.attachments = self._attachments(channel, {**spec, "flags": msg.flags}, uploads, msg.attachments)
        if "embeds" in payload:
            msg.embeds = self._resolve_embeds(list(payload["embeds"] or []), msg.attachments)
        msg.flags &= ~MessageFlag.LOADING
        msg.edited_timestamp = time.time()
        msg.raw = payload
        await self.dispatch("MESSAGE_UPDATE", msg)
        self.state.changed()
        return msg

    async def delete(self, msg: FakeMessage) -> None:
        msg.deleted = True
        if not msg.ephemeral:
            d: dict[str, Any] = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id is not None:
                d["guild_id"] = str(msg.guild_id)
            await self._after_creation(msg)
            await self.gateway.dispatch_simple("MESSAGE_DELETE", d, self._intent(msg), msg.guild_id)
        self.state.changed()

    def _intent(self, msg: FakeMessage) -> int:
        return Intent.GUILD_MESSAGES if msg.guild_id is not None else Intent.DIRECT_MESSAGES

    def dispatch_soon(self, event: str, msg: FakeMessage) -> None:
        """Send ``event`` after the current REST answer: Discord's gateway fan-out does not hold up its HTTP reply."""
        task = asyncio.get_running_loop().create_task(self.dispatch(event, msg))
        self._soon[msg.id] = task
        task.add_done_callback(lambda _t: self._soon.pop(msg.id, None) if self._soon.get(msg.id) is task else None)

    async def flush(self) -> None:
        """Let the events ``dispatch_soon`` scheduled go out (at shutdown)."""
        if self._soon:
            await asyncio.gather(*self._soon.values(), return_exceptions=True)

    async def _after_creation(self, msg: FakeMessage) -> None:
        """A message's events keep their order: its creation event, if still pending, goes out first."""
        earlier = self._soon.get(msg.id)
        if earlier is not None and earlier is not asyncio.current_task():
            await asyncio.shield(earlier)

    async def dispatch(self, event: str, msg: FakeMessage, on_sent: Any = None) -> None:
        await self._after_creation(msg)
        if msg.ephemeral:
            return
        intent = self._intent(msg)

        def build(session: GatewaySession) -> dict[str, Any] | None:
            if not session.wants(intent):
                return None
            hide = not payloads.is_content_visible(self.state, msg, session.intents)
            return payloads.message(self.state, msg, gateway=True, hide_content=hide)

        await self.gateway.dispatch(event, build, guild_id=msg.guild_id, on_sent=on_sent)

    # --- threads --------------------------------------------------------------------------------------

    async def create_thread(
        self,
        parent: FakeChannel,
        name: str,
        owner_id: int,
        *,
        from_message: FakeMessage | None = None,
        thread_type: int = ChannelType.PUBLIC_THREAD,
        auto_archive_duration: int = 1440,
    ) -> FakeChannel:
        if from_message is not None and from_message.thread_id is not None:
            raise DiscordError(400, ErrorCode.THREAD_ALREADY_CREATED)
        thread = FakeChannel(
            id=from_message.id if from_message is not None else self.state.snowflake(),
            type=thread_type,
            name=name,
            guild_id=parent.guild_id,
            parent_id=parent.id,
            owner_id=owner_id,
            auto_archive_duration=auto_archive_duration,
            member_ids={owner_id},
        )
        self.state.add_channel(thread)
        if from_message is not None:
            from_message.thread_id = thread.id
        elif thread_type == ChannelType.PUBLIC_THREAD:
            ref = {"message_id": None, "channel_id": str(thread.id), "guild_id": str(parent.guild_id)}
            note = FakeMessage(
                id=self.state.snowflake(),
                channel_id=parent.id,
                guild_id=parent.guild_id,
                author_id=owner_id,
                content=name,
                type=MessageType.THREAD_CREATED,
                message_reference=ref,
            )
            self.state.add_message(note)
            await self.dispatch("MESSAGE_CREATE", note)
        data = {**payloads.channel(self.state, thread), "newly_created": True}
        await self.gateway.dispatch_simple("THREAD_CREATE", data, Intent.GUILDS, parent.guild_id)
        self.state.changed()
        return thread
