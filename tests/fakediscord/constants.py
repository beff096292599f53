"""Discord constants the fake needs: error codes, limits, bits and enums.

Limits marked "spec" are copied from Discord's official OpenAPI spec (MIT licensed, v10 preview), so the
tests never read the spec at run time. The rest come from Discord's developer documentation.
"""

from __future__ import annotations

DISCORD_EPOCH_MS = 1420070400000
API_VERSION = 10
DEFAULT_API_BASE = "https://discord.com/api/v10"

MIB = 1024 * 1024


class Limits:
    """Message limits Discord enforces on bots."""

    USER_INSTALL_FOLLOWUPS = 5  # docs: follow-ups per interaction that only a user's install authorizes
    CONTENT = 2000  # spec: IncomingWebhookRequestPartial.content (MessageCreateRequest says 4000, which is Nitro users)
    EMBEDS = 10  # spec: maxItems
    EMBED_TITLE = 256  # spec: RichEmbed.title
    EMBED_DESCRIPTION = 4096  # spec: RichEmbed.description
    EMBED_FIELDS = 25  # spec: RichEmbed.fields
    EMBED_FIELD_NAME = 256  # spec: RichEmbedField.name
    EMBED_FIELD_VALUE = 1024  # spec: RichEmbedField.value
    EMBED_FOOTER = 2048  # spec: RichEmbedFooter.text
    EMBED_AUTHOR = 256  # spec: RichEmbedAuthor.name
    EMBED_TOTAL = 6000  # docs: sum of title, description, field names/values, footer text, author name
    FILES = 10  # spec: attachments maxItems, files[0]..files[9]
    ACTION_ROWS = 5  # docs: legacy (non components-v2) messages
    ROW_COMPONENTS = 5  # spec: ActionRowComponentForMessageRequest.components maxItems
    COMPONENTS_V2_TOTAL = 40  # spec: components maxItems
    CUSTOM_ID = 100  # spec: ButtonComponentForMessageRequest.custom_id
    BUTTON_LABEL = 80  # spec


# Upload limit per guild boost tier for bots (docs, 2024+): tiers 0 and 1 share the 10 MiB default.
UPLOAD_LIMIT_BY_TIER: dict[int, int] = {0: 10 * MIB, 1: 10 * MIB, 2: 50 * MIB, 3: 100 * MIB}
DM_UPLOAD_LIMIT = 10 * MIB


class ErrorCode:
    """JSON error codes from https://discord.com/developers/docs/topics/opcodes-and-status-codes."""

    GENERAL = 0
    UNKNOWN_CHANNEL = 10003
    UNKNOWN_GUILD = 10004
    UNKNOWN_MEMBER = 10007
    UNKNOWN_MESSAGE = 10008
    UNKNOWN_USER = 10013
    UNKNOWN_WEBHOOK = 10015
    UNKNOWN_INTERACTION = 10062
    UNKNOWN_APPLICATION_COMMAND = 10063
    ENTITY_TOO_LARGE = 40005
    ALREADY_ACKNOWLEDGED = 40060
    MAX_FOLLOWUP_MESSAGES = 40094
    MISSING_ACCESS = 50001
    CANNOT_MESSAGE_USER = 50007
    CANNOT_EDIT_OTHERS_MESSAGE = 50005
    EMPTY_MESSAGE = 50006
    MISSING_PERMISSIONS = 50013
    INVALID_WEBHOOK_TOKEN = 50027
    INVALID_FORM_BODY = 50035
    THREAD_ALREADY_CREATED = 160004


ERROR_MESSAGES: dict[int, str] = {
    ErrorCode.UNKNOWN_CHANNEL: "Unknown Channel",
    ErrorCode.UNKNOWN_GUILD: "Unknown Guild",
    ErrorCode.UNKNOWN_MEMBER: "Unknown Member",
    ErrorCode.UNKNOWN_MESSAGE: "Unknown Message",
    ErrorCode.UNKNOWN_USER: "Unknown User",
    ErrorCode.UNKNOWN_WEBHOOK: "Unknown Webhook",
    ErrorCode.UNKNOWN_INTERACTION: "Unknown interaction",
    ErrorCode.UNKNOWN_APPLICATION_COMMAND: "Unknown application command",
    ErrorCode.ENTITY_TOO_LARGE: "Request entity too large",
    ErrorCode.ALREADY_ACKNOWLEDGED: "Interaction has already been acknowledged.",
    ErrorCode.MAX_FOLLOWUP_MESSAGES: "This interaction has hit the maximum number of follow up messages",
    ErrorCode.MISSING_ACCESS: "Missing Access",
    ErrorCode.CANNOT_MESSAGE_USER: "Cannot send messages to this user",
    ErrorCode.CANNOT_EDIT_OTHERS_MESSAGE: "Cannot edit a message authored by another user",
    ErrorCode.EMPTY_MESSAGE: "Cannot send an empty message",
    ErrorCode.MISSING_PERMISSIONS: "Missing Permissions",
    ErrorCode.INVALID_WEBHOOK_TOKEN: "Invalid Webhook Token",
    ErrorCode.INVALID_FORM_BODY: "Invalid Form Body",
    ErrorCode.THREAD_ALREADY_CREATED: "A thread has already been created for this message",
}


class Perm:
    """Permission bits."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CONNECT = 1 << 20
    SPEAK = 1 << 21
    CHANGE_NICKNAME = 1 << 26
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    SEND_MESSAGES_IN_THREADS = 1 << 38
    SEND_POLLS = 1 << 49


ALL_PERMISSIONS = (1 << 51) - 1
#: app_permissions where the bot itself is absent (a user install in a DM, group DM or server without the
#: bot): what the interaction's own answers may carry, nothing the bot token could use.
USER_INSTALL_APP_PERMISSIONS = Perm.EMBED_LINKS | Perm.ATTACH_FILES | Perm.MENTION_EVERYONE | Perm.USE_EXTERNAL_EMOJIS
DEFAULT_EVERYONE_PERMISSIONS = (
    Perm.CREATE_INSTANT_INVITE
    | Perm.ADD_REACTIONS
    | Perm.VIEW_CHANNEL
    | Perm.SEND_MESSAGES
    | Perm.EMBED_LINKS
    | Perm.ATTACH_FILES
    | Perm.READ_MESSAGE_HISTORY
    | Perm.USE_EXTERNAL_EMOJIS
    | Perm.CONNECT
    | Perm.SPEAK
    | Perm.CHANGE_NICKNAME
    | Perm.USE_APPLICATION_COMMANDS
    | Perm.CREATE_PUBLIC_THREADS
    | Perm.CREATE_PRIVATE_THREADS
    | Perm.SEND_MESSAGES_IN_THREADS
    | Perm.SEND_POLLS
)


class Intent:
    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_TYPING = 1 << 11
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_TYPING = 1 << 14
    MESSAGE_CONTENT = 1 << 15


PRIVILEGED_INTENTS = Intent.GUILD_MEMBERS | Intent.GUILD_PRESENCES | Intent.MESSAGE_CONTENT


class AppFlag:
    GATEWAY_PRESENCE = 1 << 12
    GATEWAY_GUILD_MEMBERS = 1 << 14
    GATEWAY_MESSAGE_CONTENT = 1 << 18


class Op:
    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11


class ChannelType:
    GUILD_TEXT = 0
    DM = 1
    GROUP_DM = 3
    GUILD_CATEGORY = 4
    GUILD_ANNOUNCEMENT = 5
    ANNOUNCEMENT_THREAD = 10
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12
    GUILD_FORUM = 15

    THREADS = frozenset({10, 11, 12})


class InteractionType:
    PING = 1
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class CallbackType:
    PONG = 1
    CHANNEL_MESSAGE_WITH_SOURCE = 4
    DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    AUTOCOMPLETE_RESULT = 8
    MODAL = 9
    LAUNCH_ACTIVITY = 12


class CommandType:
    CHAT_INPUT = 1
    USER = 2
    MESSAGE = 3


class OptionType:
    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


class ComponentType:
    ACTION_ROW = 1
    BUTTON = 2
    STRING_SELECT = 3
    TEXT_INPUT = 4
    LABEL = 18
    FILE_UPLOAD = 19


class MessageFlag:
    SUPPRESS_EMBEDS = 1 << 2
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7
    SUPPRESS_NOTIFICATIONS = 1 << 12
    IS_COMPONENTS_V2 = 1 << 15


class MessageType:
    DEFAULT = 0
    THREAD_CREATED = 18
    REPLY = 19
    CHAT_INPUT_COMMAND = 20
    THREAD_STARTER_MESSAGE = 21
    CONTEXT_MENU_COMMAND = 23
