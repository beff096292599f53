"""Acting as Discord users: slash commands (with hosted attachments), autocomplete, button clicks, select
menus, modal submits, context menus and plain messages. Mixed into `FakeDiscord`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from . import interactions, payloads
from .constants import CommandType, ComponentType, InteractionType, Perm
from .core import Core
from .handles import FileSpec, InteractionHandle, build_options, find_component, modal_components
from .rules import base_permissions, channel_permissions
from .state import FakeAttachment, FakeChannel, FakeGuild, FakeMessage, FakeRole, FakeUser, State

if TYPE_CHECKING:
    from .harness import FakeDiscord


class InteractionContext:
    GUILD = 0
    BOT_DM = 1
    PRIVATE_CHANNEL = 2


CONTEXT_NAMES = {0: "guild", 1: "bot DM", 2: "private channel"}


def command_context(channel: FakeChannel) -> int:
    return interactions.context_of(channel)


class CommandNotAvailable(Exception):
    """A user tried to invoke a synced command Discord would not offer them there (missing
    default_member_permissions, or a guild-only command in a DM); no interaction was dispatched."""

    def __init__(self, name: str, user: FakeUser, channel: FakeChannel, reason: str) -> None:
        self.name, self.user, self.channel, self.reason = name, user, channel, reason
        super().__init__(f"{user.username} cannot use /{name} in channel {channel.id}: {reason}")


class UserActions:
    """What a human does in the Discord client; each interaction returns an `InteractionHandle`."""

    state: State
    core: Core

    def permissions(self, channel: FakeChannel, user: FakeUser) -> int:
        return channel_permissions(self.state, channel, user.id)

    def host_file(
        self, channel: FakeChannel, spec: FileSpec | tuple[str, bytes], *, ephemeral: bool = False
    ) -> FakeAttachment:
        """Host a file at the fake's own URL (redirects, wrong sizes, errors and delays come from the spec)."""
        spec = FileSpec.of(spec)
        return self.core.messages.host(
            channel.id,
            spec.filename,
            spec.data,
            spec.content_type,
            content_type_override=spec.content_type,
            width=spec.width,
            height=spec.height,
            ephemeral=ephemeral,
            declared_size=spec.declared_size,
            status=spec.status,
            redirect_to=spec.redirect_to,
            extra_headers=dict(spec.headers),
            delay=spec.delay,
        )

    # --- acting as users ------------------------------------------------------------------------------

    def _synced(self, channel: FakeChannel) -> list[dict[str, Any]]:
        """Every synced command that exists in this channel: the guild's own first, then the global ones."""
        stores = [self.state.guild_commands.get(channel.guild_id, {})] if channel.guild_id else []
        return [cmd for store in [*stores, self.state.global_commands] for cmd in store.values()]

    def command_unavailable(self, command: dict[str, Any], user: FakeUser, channel: FakeChannel) -> str | None:
        """Why Discord would not let `user` invoke `command` in `channel` (None when it would): the command's
        `contexts` (0 guild, 1 bot DM, 2 private channel) or, without them, `dm_permission: false` in a DM; and in
        a guild its `default_member_permissions`, checked against the member's guild-level permissions (owner and
        Administrator have all; "0" leaves only them), unless a command permission overwrite set with
        `set_command_permission` applies."""
        context = command_context(channel)
        installed = self._installs_reaching(command, user, channel)
        if installed is not None:
            return installed
        contexts = command.get("contexts")
        if contexts is not None and context not in contexts:
            return f"its contexts {contexts} exclude context {context} ({CONTEXT_NAMES[context]})"
        if contexts is None and context != InteractionContext.GUILD and command.get("dm_permission") is False:
            return "it is guild-only (dm_permission false)"
        guild = self.state.guild_of(channel)
        if guild is None or not self.state.bot_in(channel):
            return None  # a user install: the server's command permissions do not apply
        have = base_permissions(guild, user.id)
        if have & Perm.ADMINISTRATOR:
            return None
        overwrite = self._command_overwrite(guild, command["name"], user, channel)
        if overwrite is not None:
            return None if overwrite else f"a command permission overwrite in {guild.name} denies it"
        required = command.get("default_member_permissions")
        if required is None:
            return None
        needed = int(required)
        if needed and have & needed == needed:
            return None
        missing = needed & ~have if needed else Perm.ADMINISTRATOR
        return f"default_member_permissions {needed} needs {missing} that {user.username} lacks at guild level"

    def _installs_reaching(self, command: dict[str, Any], user: FakeUser, channel: FakeChannel) -> str | None:
        """Why no install of the app offers `command` here (None when one does): the server's install (the bot
        is there; `integration_types` has 0, or is unset) or the user's own (1, global commands only)."""
        kinds = command.get("integration_types") or [0]
        if self.state.bot_in(channel) and 0 in kinds:
            return None
        if 1 in kinds and user.id in self.state.user_installs and not command.get("guild_id"):
            return None
        if not self.state.bot_in(channel):
            return "the app is not installed here: not in this server, and not by the user for a global command"
        return f"its integration_types {kinds} need the user's own install, which {user.username} lacks"

    def _command_overwrite(self, guild: FakeGuild, name: str, user: FakeUser, channel: FakeChannel) -> bool | None:
        """Discord's command permission overwrites: a channel deny (the thread's parent for threads) forbids;
        then the member's own overwrite, else their roles' (any allow wins), else @everyone's decides; None when
        none applies and default_member_permissions rules."""
        targets = self.state.command_permissions.get(guild.id, {}).get(name, {})
        where = channel.parent_id if channel.is_thread and channel.parent_id else channel.id
        if targets.get(where) == (3, False):
            return False
        if user.id in targets:
            return targets[user.id][1]
        member = guild.members.get(user.id)
        roles = [targets[r][1] for r in (member.roles if member else []) if r in targets]
        if roles:
            return any(roles)
        if guild.id in targets:
            return targets[guild.id][1]
        return None

    def set_command_permission(
        self,
        guild: FakeGuild,
        name: str,
        target: FakeUser | FakeRole | FakeGuild | FakeChannel,
        *,
        allow: bool = True,
    ) -> None:
        """What a server admin does in Server Settings > Integrations: allow or deny command `name` (by its top
        name) to a member, a role, everyone (pass the guild) or in a channel. Overrides the command's
        default_member_permissions; owner and Administrator are never restricted."""
        kind = {FakeUser: 2, FakeRole: 1, FakeGuild: 1, FakeChannel: 3}[type(target)]
        self.state.command_permissions.setdefault(guild.id, {}).setdefault(name, {})[target.id] = (kind, allow)

    def available_commands(
        self, user: FakeUser, channel: FakeChannel, command_type: int | None = None
    ) -> list[dict[str, Any]]:
        """The synced commands `user` can see and invoke in `channel` (guild commands first, then global;
        optionally only one command type), as the Discord client would list them."""
        return [
            cmd
            for cmd in self._synced(channel)
            if (command_type is None or cmd.get("type", 1) == command_type)
            and self.command_unavailable(cmd, user, channel) is None
        ]

    def find_command(
        self,
        name: str,
        channel: FakeChannel,
        command_type: int = CommandType.CHAT_INPUT,
        *,
        user: FakeUser | None = None,
    ) -> dict[str, Any]:
        """The synced command the Discord client would show in this channel (guild commands first). With a
        `user`, only one they may invoke: `CommandNotAvailable` when it exists but they may not."""
        matching = [c for c in self._synced(channel) if c["name"] == name and c.get("type", 1) == command_type]
        if not matching:
            raise LookupError(f"no synced command {name!r} (type {command_type}); did the bot sync its tree?")
        if user is None:
            return matching[0]
        reasons = []
        for cmd in matching:
            reason = self.command_unavailable(cmd, user, channel)
            if reason is None:
                return cmd
            reasons.append(reason)
        raise CommandNotAvailable(name, user, channel, reasons[0])

    async def slash_command(
        self,
        name: str,
        *,
        user: FakeUser,
        channel: FakeChannel,
        options: dict[str, Any] | None = None,
        attachments: dict[str, Any] | None = None,
        focused: str | None = None,
    ) -> InteractionHandle:
        """Invoke `/name` (or "group sub" for subcommands). Attachment options take (filename, bytes) or a
        FileSpec; the fake hosts them and fills `resolved.attachments`."""
        root, *subs = name.split()
        cmd = self.find_command(root, channel, user=user)
        data: dict[str, Any] = {"id": cmd["id"], "name": root, "type": CommandType.CHAT_INPUT}
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        resolved: dict[str, dict[str, Any]] = {}
        values = {**(options or {}), **(attachments or {})}
        definitions = cmd.get("options") or []
        chain: list[dict[str, Any]] = []
        for sub in subs:
            sub_def = next((o for o in definitions if o["name"] == sub), {"type": 1, "options": []})
            chain.append({"name": sub, "type": sub_def["type"]})
            definitions = sub_def.get("options") or []
        leaf = build_options(self, channel, definitions, values, resolved, focused)
        for link in reversed(chain):
            leaf = [{**link, "options": leaf}]
        data["options"] = leaf
        if resolved:
            data["resolved"] = resolved
        kind = InteractionType.AUTOCOMPLETE if focused else InteractionType.APPLICATION_COMMAND
        return await self._interact(kind, user, channel, data)

    async def autocomplete(
        self, name: str, *, user: FakeUser, channel: FakeChannel, options: dict[str, Any], focused: str
    ) -> InteractionHandle:
        return await self.slash_command(name, user=user, channel=channel, options=options, focused=focused)

    async def click_button(self, message: FakeMessage, custom_id: str, *, user: FakeUser) -> InteractionHandle:
        return await self._component(message, custom_id, user, ComponentType.BUTTON, None)

    async def select_menu(
        self, message: FakeMessage, custom_id: str, values: list[str], *, user: FakeUser
    ) -> InteractionHandle:
        return await self._component(message, custom_id, user, None, values)

    async def _component(
        self, message: FakeMessage, custom_id: str, user: FakeUser, kind: int | None, values: list[str] | None
    ) -> InteractionHandle:
        component = find_component(message, custom_id)
        if component is None:
            raise LookupError(f"message {message.id} has no component {custom_id!r}; it has {message.custom_ids()}")
        if component.get("disabled"):
            raise AssertionError(f"component {custom_id!r} is disabled; a user cannot use it")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": kind or component.get("type")}
        if values is not None:
            data["values"] = values
        channel = self.state.channels[message.channel_id]
        return await self._interact(InteractionType.MESSAGE_COMPONENT, user, channel, data, message)

    async def submit_modal(
        self,
        custom_id: str,
        values: dict[str, Any],
        *,
        user: FakeUser,
        channel: FakeChannel,
        modal: dict[str, Any] | None = None,
        message: FakeMessage | None = None,
    ) -> InteractionHandle:
        """Submit a modal; prefer `handle.submit_modal(values)`, which mirrors the modal the bot sent. A file
        upload takes (filename, bytes), a FileSpec or a list of them: hosted like a slash command's attachment,
        its ids in the component and the attachments in `resolved`, as Discord submits them."""
        uploaded: dict[str, Any] = {}

        def host(spec: FileSpec) -> dict[str, Any]:
            attachment = payloads.attachment(self.host_file(channel, spec, ephemeral=True))
            uploaded[attachment["id"]] = attachment
            return attachment

        data: dict[str, Any] = {"custom_id": custom_id, "components": modal_components(modal, values, host)}
        if uploaded:
            data["resolved"] = {"attachments": uploaded}
        return await self._interact(InteractionType.MODAL_SUBMIT, user, channel, data, message)

    async def message_context_menu(self, name: str, message: FakeMessage, *, user: FakeUser) -> InteractionHandle:
        channel = self.state.channels[message.channel_id]
        cmd = self.find_command(name, channel, CommandType.MESSAGE, user=user)
        data: dict[str, Any] = {
            "id": cmd["id"],
            "name": name,
            "type": CommandType.MESSAGE,
            "target_id": str(message.id),
            "resolved": {"messages": {str(message.id): payloads.message(self.state, message)}},
        }
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        return await self._interact(InteractionType.APPLICATION_COMMAND, user, channel, data)

    async def user_context_menu(
        self, name: str, target: FakeUser, *, user: FakeUser, channel: FakeChannel
    ) -> InteractionHandle:
        cmd = self.find_command(name, channel, CommandType.USER, user=user)
        resolved: dict[str, Any] = {"users": {str(target.id): payloads.user(target)}}
        guild = self.state.guild_of(channel)
        if guild and target.id in guild.members:
            resolved["members"] = {str(target.id): payloads.member(guild.members[target.id], with_user=False)}
        data: dict[str, Any] = {
            "id": cmd["id"],
            "name": name,
            "type": CommandType.USER,
            "target_id": str(target.id),
            "resolved": resolved,
        }
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        return await self._interact(InteractionType.APPLICATION_COMMAND, user, channel, data)

    async def _interact(
        self, kind: int, user: FakeUser, channel: FakeChannel, data: dict[str, Any], message: FakeMessage | None = None
    ) -> InteractionHandle:
        rec = await interactions.create_interaction(
            self.core, kind=kind, user=user, channel=channel, data=data, message=message
        )
        return InteractionHandle(cast("FakeDiscord", self), rec)

    async def send_message(
        self,
        channel: FakeChannel,
        user: FakeUser,
        content: str = "",
        *,
        attachments: list[Any] | None = None,
        reply_to: FakeMessage | None = None,
        mentions: list[FakeUser] | None = None,
        embeds: list[dict[str, Any]] | None = None,
    ) -> FakeMessage:
        """A user posts a message (MESSAGE_CREATE follows Discord's message-content intent rule)."""
        body: dict[str, Any] = {"content": content, "embeds": embeds or []}
        if reply_to is not None:
            body["message_reference"] = {"message_id": str(reply_to.id), "channel_id": str(reply_to.channel_id)}
        msg = await self.core.messages.create(
            channel, user.id, body, [], explicit_mentions=[u.id for u in mentions or []], dispatch=False
        )
        msg.attachments = [self.host_file(channel, FileSpec.of(a)) for a in attachments or []]
        await self.core.messages.dispatch("MESSAGE_CREATE", msg)
        self.state.changed()
        return msg
