"""A protocol-level fake Discord for end-to-end tests.

The real bot (or a real discord.py client in the test) talks HTTP and websocket to this fake on 127.0.0.1,
exactly as it would talk to discord.com. See README.md in this package for how to write a test.
"""

from .actions import CommandNotAvailable
from .constants import (
    CallbackType,
    ChannelType,
    CommandType,
    ErrorCode,
    Intent,
    InteractionType,
    Limits,
    MessageFlag,
    MessageType,
    Perm,
)
from .core import Fault
from .handles import FileSpec, InteractionHandle
from .harness import DEFAULT_BOT_PERMISSIONS, FakeDiscord
from .state import (
    CallbackAttempt,
    FakeAttachment,
    FakeChannel,
    FakeConfig,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    GatewayRecord,
    Overwrite,
    RestCall,
    Upload,
)

__all__ = [
    "DEFAULT_BOT_PERMISSIONS",
    "CallbackAttempt",
    "CallbackType",
    "ChannelType",
    "CommandNotAvailable",
    "CommandType",
    "ErrorCode",
    "FakeAttachment",
    "FakeChannel",
    "FakeConfig",
    "FakeDiscord",
    "FakeGuild",
    "FakeMember",
    "FakeMessage",
    "FakeRole",
    "FakeUser",
    "Fault",
    "FileSpec",
    "GatewayRecord",
    "Intent",
    "InteractionHandle",
    "InteractionType",
    "Limits",
    "MessageFlag",
    "MessageType",
    "Overwrite",
    "Perm",
    "RestCall",
    "Upload",
]
