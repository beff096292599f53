"""What a test holds after acting as a user: `InteractionHandle` (callback, original, followups, modal,
timings) and `FileSpec` (an attachment, optionally hostile). Also the option/modal payload builders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import payloads
from .constants import ComponentType, OptionType
from .state import CallbackAttempt, FakeChannel, FakeMessage, FakeRole, FakeUser, InteractionRecord

if TYPE_CHECKING:
    from .actions import UserActions
    from .harness import FakeDiscord


@dataclass
class FileSpec:
    """A file a user attaches. The extra fields make it hostile: lie about size/type, redirect, fail, stall."""

    filename: str
    data: bytes
    content_type: str | None = None
    declared_size: int | None = None
    status: int = 200
    redirect_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    delay: float = 0.0

    @classmethod
    def of(cls, value: Any) -> FileSpec:
        if isinstance(value, FileSpec):
            return value
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], bytes | bytearray):
            return cls(str(value[0]), bytes(value[1]))
        raise TypeError(f"expected (filename, bytes) or FileSpec, got {value!r}")

    @staticmethod
    def is_file(value: Any) -> bool:
        return isinstance(value, FileSpec) or (
            isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], bytes | bytearray)
        )


class InteractionHandle:
    """The test's view of one interaction: what the bot answered, and when."""

    def __init__(self, fake: FakeDiscord, record: InteractionRecord) -> None:
        self.fake = fake
        self.record = record

    def __repr__(self) -> str:
        return f"<InteractionHandle id={self.id} type={self.record.type} callback={self.callback_type}>"

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def token(self) -> str:
        return self.record.token

    @property
    def callback_type(self) -> int | None:
        return self.record.callback_type

    @property
    def callback_data(self) -> dict[str, Any] | None:
        return self.record.callback_data

    @property
    def attempts(self) -> list[CallbackAttempt]:
        """Every callback POST, including refused ones (status/code as answered)."""
        return self.record.attempts

    @property
    def dispatched_at(self) -> float | None:
        return self.record.dispatched_at

    @property
    def callback_at(self) -> float | None:
        return self.record.callback_at

    @property
    def ack_latency(self) -> float | None:
        """Seconds from INTERACTION_CREATE on the wire to the accepted callback (perf_counter clock)."""
        if self.record.dispatched_at is None or self.record.callback_at is None:
            return None
        return self.record.callback_at - self.record.dispatched_at

    @property
    def modal(self) -> dict[str, Any] | None:
        return self.record.modal

    @property
    def autocomplete_choices(self) -> list[dict[str, Any]] | None:
        return self.record.autocomplete_choices

    @property
    def original(self) -> FakeMessage | None:
        """The @original response message in its current state (None if there is none or it was deleted)."""
        msg = self.fake.state.messages.get(self.record.original_message_id or 0)
        return None if msg is None or msg.deleted else msg

    @property
    def followups(self) -> list[FakeMessage]:
        msgs = (self.fake.state.messages[m] for m in dict.fromkeys(self.record.followup_ids))
        return [m for m in msgs if not m.deleted]

    @property
    def messages(self) -> list[FakeMessage]:
        """Original (once no longer loading) plus followups, without duplicates."""
        out = [] if self.original is None or self.original.loading else [self.original]
        clicked = self.record.source_message_id is not None
        if clicked and self.record.original_message_id == self.record.source_message_id and self.callback_type != 7:
            out = []  # the clicked message is only a response once UPDATE_MESSAGE edits it
        return out + [m for m in self.followups if m not in out]

    async def wait_for_callback(self, timeout: float = 5.0) -> CallbackAttempt:
        """The first accepted callback; AssertionError (listing refused attempts) if none arrives in time."""

        def done() -> CallbackAttempt | None:
            return next((a for a in self.record.attempts if a.status < 300), None)

        try:
            return await self.fake.wait_for(done, timeout=timeout)
        except TimeoutError:
            refused = [(a.type, a.status, a.code) for a in self.record.attempts]
            raise AssertionError(f"no accepted callback for {self!r} in {timeout}s; refused: {refused}") from None

    async def wait_for_response(
        self, predicate: Callable[[FakeMessage], bool] | None = None, timeout: float = 5.0
    ) -> FakeMessage:
        """The first response message (original or followup, not loading) matching `predicate`."""

        def find() -> FakeMessage | None:
            return next((m for m in self.messages if predicate is None or predicate(m)), None)

        return await self.fake.wait_for(find, timeout=timeout)

    async def wait_for_followups(self, count: int = 1, timeout: float = 5.0) -> list[FakeMessage]:
        return await self.fake.wait_for(lambda: self.followups if len(self.followups) >= count else None, timeout)

    async def submit_modal(self, values: dict[str, Any], *, user: FakeUser | None = None) -> InteractionHandle:
        """Fill in the modal the bot answered with and submit it (as the same user by default)."""
        if self.record.modal is None:
            raise AssertionError(f"interaction {self.id} was not answered with a modal (callback {self.callback_type})")
        return await self.fake.submit_modal(
            self.record.modal["custom_id"],
            values,
            user=user or self.fake.state.users[self.record.user_id],
            channel=self.fake.state.channels[self.record.channel_id],
            modal=self.record.modal,
            message=self.fake.state.messages.get(self.record.source_message_id or 0),
        )


# --- payload builders used by the harness ---------------------------------------------------------------


def infer_option_type(value: Any) -> int:
    if isinstance(value, bool):
        return OptionType.BOOLEAN
    if isinstance(value, int):
        return OptionType.INTEGER
    if isinstance(value, float):
        return OptionType.NUMBER
    if isinstance(value, FakeUser):
        return OptionType.USER
    if isinstance(value, FakeChannel):
        return OptionType.CHANNEL
    if isinstance(value, FakeRole):
        return OptionType.ROLE
    if FileSpec.is_file(value):
        return OptionType.ATTACHMENT
    return OptionType.STRING


def build_options(
    fake: UserActions,
    channel: FakeChannel,
    definitions: list[dict[str, Any]],
    values: dict[str, Any],
    resolved: dict[str, dict[str, Any]],
    focused: str | None = None,
) -> list[dict[str, Any]]:
    """Turn {name: python value} into interaction options, filling `resolved` for users, channels, roles
    and attachments (which the fake hosts)."""
    state = fake.state
    defs = {d["name"]: d for d in definitions}
    out: list[dict[str, Any]] = []
    for name, value in values.items():
        opt_type = int(defs[name]["type"]) if name in defs else infer_option_type(value)
        option: dict[str, Any] = {"name": name, "type": opt_type}
        if opt_type == OptionType.USER or (opt_type == OptionType.MENTIONABLE and isinstance(value, FakeUser)):
            option["value"] = str(value.id)
            resolved.setdefault("users", {})[str(value.id)] = payloads.user(value)
            guild = state.guild_of(channel)
            if guild and value.id in guild.members:
                mem = payloads.member(guild.members[value.id], with_user=False)
                resolved.setdefault("members", {})[str(value.id)] = mem
        elif opt_type == OptionType.CHANNEL:
            option["value"] = str(value.id)
            resolved.setdefault("channels", {})[str(value.id)] = {
                **payloads.channel(state, value),
                "permissions": str(fake.permissions(value, state.users[state.bot.id])),
            }
        elif opt_type in (OptionType.ROLE, OptionType.MENTIONABLE):
            option["value"] = str(value.id)
            resolved.setdefault("roles", {})[str(value.id)] = payloads.role(value)
        elif opt_type == OptionType.ATTACHMENT:
            att = fake.host_file(channel, FileSpec.of(value), ephemeral=True)
            option["value"] = str(att.id)
            resolved.setdefault("attachments", {})[str(att.id)] = payloads.attachment(att)
        else:
            option["value"] = value
        if name == focused:
            option["focused"] = True
        out.append(option)
    return out


def modal_components(
    modal: dict[str, Any] | None,
    values: dict[str, Any],
    host: Callable[[FileSpec], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The submitted components, mirroring the modal the bot sent (action rows or labels). A file upload's
    value is a file or a list of files: ``host`` hosts each and returns its attachment payload, which the
    caller puts in ``resolved.attachments`` (Discord submits only the attachment ids in the component)."""
    remaining = dict(values)

    def fill(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for item in items:
            kind = item.get("type")
            if kind == ComponentType.ACTION_ROW:
                out.append({"type": kind, "id": item.get("id", 0), "components": fill(item.get("components") or [])})
            elif kind == ComponentType.LABEL and isinstance(item.get("component"), dict):
                inner = fill([item["component"]])
                if inner:
                    out.append({"type": kind, "id": item.get("id", 0), "component": inner[0]})
            elif "custom_id" in item:
                cid = item["custom_id"]
                value = remaining.pop(cid, item.get("value", "") if kind == ComponentType.TEXT_INPUT else [])
                entry: dict[str, Any] = {"type": kind, "id": item.get("id", 0), "custom_id": cid}
                if kind == ComponentType.TEXT_INPUT:
                    entry["value"] = value
                elif kind == ComponentType.FILE_UPLOAD:
                    entry["values"] = _uploaded(item, value, host)
                else:
                    entry["values"] = list(value)
                out.append(entry)
        return out

    if modal is None:
        return [{"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()]
    result = fill(modal.get("components") or [])
    if remaining:
        raise KeyError(f"modal {modal.get('custom_id')!r} has no inputs {sorted(remaining)}")
    return result


def _uploaded(item: dict[str, Any], value: Any, host: Callable[[FileSpec], dict[str, Any]] | None) -> list[str]:
    """The attachment ids a file upload submits; the Discord client enforces required/min/max before sending."""
    files = [] if value in ([], None) else ([value] if FileSpec.is_file(value) else list(value))
    required = int(item.get("required", True) is not False)
    minimum = max(required, int(item.get("min_values") or 0))
    maximum = item.get("max_values") or 1
    if not minimum <= len(files) <= maximum:
        raise ValueError(f"file upload {item['custom_id']!r} takes {minimum}-{maximum} files, not {len(files)}")
    if files and host is None:
        raise ValueError("uploading files needs a host for them")
    return [host(FileSpec.of(f))["id"] for f in files] if host is not None else []


def find_component(message: FakeMessage, custom_id: str) -> dict[str, Any] | None:
    def walk(items: list[dict[str, Any]]) -> dict[str, Any] | None:
        for item in items:
            if item.get("custom_id") == custom_id:
                return item
            for child in [*(item.get("components") or []), item.get("accessory"), item.get("component")]:
                if isinstance(child, dict) and (hit := walk([child])):
                    return hit
        return None

    return walk(message.components)
