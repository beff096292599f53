"""The gateway: an aiohttp websocket speaking Discord's v10 protocol to an unmodified discord.py client.

HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, RESUME with replay of missed dispatches, INVALID_SESSION,
REQUEST_GUILD_MEMBERS, and the transport compression discord.py asks for in the query string
(`compress=zlib-stream` on Python 3.11; `zstd-stream` when a zstd module is installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from . import payloads
from .constants import PRIVILEGED_INTENTS, Intent, Op
from .state import GatewayRecord, State

Builder = Callable[["GatewaySession"], "dict[str, Any] | None"]
OnSent = Callable[[float], None]


def _zstd_encoder() -> Callable[[bytes], bytes] | None:
    """A streaming zstd encoder whose every message is a flushed block, like Discord's zstd-stream."""
    try:
        import zstandard

        cobj = zstandard.ZstdCompressor().compressobj()
        return lambda raw: cobj.compress(raw) + cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    except ImportError:
        pass
    try:
        from compression import zstd

        comp = zstd.ZstdCompressor()
        return lambda raw: comp.compress(raw, mode=zstd.ZstdCompressor.FLUSH_BLOCK)
    except ImportError:
        return None


class Connection:
    """One websocket, with its own compression context (zlib-stream shares one deflate stream per socket)."""

    def __init__(self, state: State, ws: web.WebSocketResponse, path: str, compress: str | None) -> None:
        self.state = state
        self.ws = ws
        self.path = path
        self.compress = compress
        self.session: GatewaySession | None = None
        self._encode: Callable[[bytes], bytes] | None = None
        if compress == "zlib-stream":
            deflate = zlib.compressobj()
            self._encode = lambda raw: deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)
        elif compress == "zstd-stream":
            self._encode = _zstd_encoder()

    async def send(self, payload: dict[str, Any]) -> float:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        if self._encode is not None:
            await self.ws.send_bytes(self._encode(raw))
        else:
            await self.ws.send_str(raw.decode())
        sent = self.state.now()
        self._log("send", payload, sent)
        return sent

    def _log(self, direction: str, payload: dict[str, Any], at: float) -> None:
        sid = self.session.id if self.session else None
        record = GatewayRecord(
            direction, payload.get("op", -1), payload.get("t"), payload.get("s"), payload.get("d"), at, sid, self.path
        )
        self.state.gateway_log.append(record)
        self.state.changed()


@dataclass
class GatewaySession:
    id: str
    intents: int
    shard: tuple[int, int] | None
    seq: int = 0
    conn: Connection | None = None
    buffer: deque[list[Any]] = field(default_factory=deque)  # [seq, payload, on_sent or None]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    identified_at: float = 0.0

    def wants(self, intent: int | None) -> bool:
        return intent is None or bool(self.intents & intent)


class Gateway:
    def __init__(self, state: State) -> None:
        self.state = state
        self.url = ""
        self.resume_url = ""
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: set[Connection] = set()
        self._open = asyncio.Event()
        self._open.set()

    # --- websocket handler ----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=0)
        await ws.prepare(request)
        conn = Connection(self.state, ws, request.path, request.query.get("compress"))
        self.connections.add(conn)
        try:
            if request.query.get("encoding", "json") != "json":
                await ws.close(code=4002, message=b"Error while decoding payload.")
                return ws
            await self._open.wait()  # held here during an outage; the client just waits for HELLO
            if ws.closed:
                return ws
            await conn.send({"op": Op.HELLO, "d": {"heartbeat_interval": self.state.config.heartbeat_interval_ms}})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    conn._log("recv", data, self.state.now())
                    await self._on_op(conn, data)
                elif msg.type is WSMsgType.ERROR:
                    break
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            self.connections.discard(conn)
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            self.state.changed()
        return ws

    async def _on_op(self, conn: Connection, data: dict[str, Any]) -> None:
        op, d = data.get("op"), data.get("d")
        if op == Op.HEARTBEAT:
            await conn.send({"op": Op.HEARTBEAT_ACK})
        elif op == Op.IDENTIFY:
            await self._identify(conn, d or {})
        elif op == Op.RESUME:
            await self._resume(conn, d or {})
        elif op == Op.REQUEST_GUILD_MEMBERS:
            await self._members_chunk(conn, d or {})
        elif op in (Op.PRESENCE_UPDATE, 4):
            return
        else:
            await conn.ws.close(code=4001, message=b"Unknown opcode.")

    def _token_ok(self, token: Any) -> bool:
        return isinstance(token, str) and token.removeprefix("Bot ") == self.state.config.token

    async def _identify(self, conn: Connection, d: dict[str, Any]) -> None:
        if conn.session is not None:
            await conn.ws.close(code=4005, message=b"Already authenticated.")
            return
        if not self._token_ok(d.get("token")):
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = int(d.get("intents", 0))
        if intents & PRIVILEGED_INTENTS and not self.state.config.privileged_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard = (int(d["shard"][0]), int(d["shard"][1])) if d.get("shard") else None
        if shard is not None and not 0 <= shard[0] < shard[1]:
            await conn.ws.close(code=4010, message=b"Invalid shard.")  # Discord's answer to [id, count] out of range
            return
        session = GatewaySession(secrets.token_hex(16), intents, shard, identified_at=self.state.now())
        self.sessions[session.id] = session
        conn.session, session.conn = session, conn
        guilds = [g for g in self.state.guilds_with_bot() if self._in_shard(session, g.id)]
        flags = payloads.application(self.state)["flags"]
        ready: dict[str, Any] = {
            "v": 10,
            "user": payloads.bot_user(self.state.bot),
            "user_settings": {},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_url,
            "application": {"id": str(self.state.application_id), "flags": flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["fake"],
            "auth": {},
            "_trace": ['["fake-discord-gateway",{"micros":0}]'],
        }
        if shard is not None:
            ready["shard"] = list(shard)
        await self._send_dispatch(session, "READY", ready)
        if session.wants(Intent.GUILDS):
            for g in guilds:
                await self._send_dispatch(
                    session, "GUILD_CREATE", payloads.guild(self.state, g, intents=intents, create=True)
                )

    async def _resume(self, conn: Connection, d: dict[str, Any]) -> None:
        session = self.sessions.get(str(d.get("session_id")))
        if session is None or not self._token_ok(d.get("token")):
            await conn.send({"op": Op.INVALID_SESSION, "d": False})
            return
        old = session.conn
        if old is not None and old is not conn and not old.ws.closed:
            await old.ws.close(code=4000, message=b"Session resumed elsewhere.")
        conn.session, session.conn = session, conn
        seq = int(d.get("seq") or 0)
        async with session.lock:
            for entry in list(session.buffer):
                if entry[0] > seq:
                    sent = await conn.send(entry[1])
                    if entry[2] is not None:
                        entry[2](sent)
                        entry[2] = None
            await self._send_locked(session, "RESUMED", {"_trace": ['["fake-discord-gateway",{"micros":0}]']}, None)

    async def _members_chunk(self, conn: Connection, d: dict[str, Any]) -> None:
        if conn.session is None:
            return
        guild = self.state.guilds.get(int(d.get("guild_id") or 0))
        if guild is None:
            return
        wanted = {int(u) for u in d.get("user_ids") or []}
        members = [m for m in guild.members.values() if not wanted or m.user.id in wanted]
        query = (d.get("query") or "").lower()
        members = [m for m in members if m.user.username.lower().startswith(query)]
        limit = int(d.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [payloads.member(m) for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [str(u) for u in wanted - {m.user.id for m in members}],
        }
        if d.get("nonce") is not None:
            chunk["nonce"] = d["nonce"]
        await self._send_dispatch(conn.session, "GUILD_MEMBERS_CHUNK", chunk)

    @staticmethod
    def _in_shard(session: GatewaySession, guild_id: int) -> bool:
        if session.shard is None:
            return True
        shard_id, count = session.shard
        return (guild_id >> 22) % count == shard_id

    # --- dispatching ----------------------------------------------------------------------------------

    async def _send_dispatch(self, session: GatewaySession, event: str, d: Any, on_sent: OnSent | None = None) -> None:
        async with session.lock:
            await self._send_locked(session, event, d, on_sent)

    async def _send_locked(self, session: GatewaySession, event: str, d: Any, on_sent: OnSent | None) -> None:
        """Number, buffer (for replay) and send one dispatch; the caller holds `session.lock`."""
        session.seq += 1
        payload = {"op": Op.DISPATCH, "t": event, "s": session.seq, "d": d}
        entry: list[Any] = [session.seq, payload, on_sent]
        session.buffer.append(entry)
        while len(session.buffer) > self.state.config.replay_buffer:
            session.buffer.popleft()
        conn = session.conn
        if conn is None or conn.ws.closed:
            return  # buffered; replayed on RESUME
        try:
            sent = await conn.send(payload)
        except (ConnectionResetError, RuntimeError):
            session.conn = None
            return
        if on_sent is not None:
            on_sent(sent)
            entry[2] = None

    async def dispatch(
        self, event: str, build: Builder, *, guild_id: int | None = None, on_sent: OnSent | None = None
    ) -> None:
        """Send `event` to every session; `build(session)` returns the payload or None to skip (intents)."""
        for session in list(self.sessions.values()):
            if not self._in_shard(session, guild_id or 0):  # DMs go to shard 0, like Discord
                continue
            d = build(session)
            if d is not None:
                await self._send_dispatch(session, event, d, on_sent)

    async def dispatch_simple(self, event: str, d: Any, intent: int | None, guild_id: int | None = None) -> None:
        await self.dispatch(event, lambda s: d if s.wants(intent) else None, guild_id=guild_id)

    # --- fault injection ------------------------------------------------------------------------------

    async def drop(self, code: int = 4000) -> None:
        """Close every live socket with a resumable close code; the sessions stay resumable."""
        for conn in list(self.connections):
            if not conn.ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.ws.close(code=code, message=b"Fake drop."), 2.0)

    @contextlib.asynccontextmanager
    async def outage(self, code: int = 4000) -> AsyncIterator[None]:
        """Drop connections and hold reconnects (no HELLO) until the block exits; dispatches queue up."""
        self._open.clear()
        try:
            await self.drop(code)
            yield
        finally:
            self._open.set()

    async def invalidate(self, resumable: bool = False) -> None:
        """Send INVALID_SESSION; when not resumable the session is forgotten and the client must IDENTIFY."""
        for session in list(self.sessions.values()):
            if not resumable:
                self.sessions.pop(session.id, None)
            if session.conn is not None and not session.conn.ws.closed:
                await session.conn.send({"op": Op.INVALID_SESSION, "d": resumable})

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client closes and resumes."""
        for conn in list(self.connections):
            if not conn.ws.closed:
                await conn.send({"op": Op.RECONNECT, "d": None})

    async def close(self) -> None:
        self._open.set()
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=1001, message=b"Fake shutting down."), 1.0)

    def connected_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if s.conn is not None and not s.conn.ws.closed]
