"""``python -m bot run`` with optional bench-only patches, to measure a proposed fix before it is applied.

Run: python bench/_botproc.py --config FILE [--patch NAME ...]   (the bench scripts start it for you)

Patches change nothing on disk: they wrap functions in this process only. The "proposed fix" ones are
the code change suggested for a bottleneck found by profiling (see bench/README.md), so before/after
figures come from the same run; the others are diagnostics or a bench provider.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("BENCH_BOT_ROOT", Path(__file__).resolve().parent.parent)).resolve()
sys.path.insert(0, str(ROOT))


def patch_probe() -> None:
    """Diagnostic: per-interaction timestamps (parsed, defer start/end; perf_counter, which is the fake's
    clock too) and aiosqlite thread hops counted per call site, written as JSON to ``$BENCH_PROBE``."""
    import discord
    from discord.state import ConnectionState

    marks: dict[str, dict[str, float]] = {}
    parse = ConnectionState.parse_interaction_create
    defer = discord.InteractionResponse.defer

    def parse_interaction_create(self: Any, data: dict[str, Any]) -> None:
        marks.setdefault(str(data["id"]), {})["parsed"] = time.perf_counter()
        parse(self, data)

    async def timed_defer(self: Any, **kwargs: Any) -> Any:
        mark = marks.setdefault(str(self._parent.id), {})
        mark["defer_start"] = time.perf_counter()
        try:
            return await defer(self, **kwargs)
        finally:
            mark["defer_end"] = time.perf_counter()

    import aiosqlite.core

    hops = aiosqlite.core.Connection._execute

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        db = marks.setdefault("_db", {})
        db["hops"] = db.get("hops", 0.0) + 1
        frame, where = sys._getframe(1), []
        while frame is not None and len(where) < 3:
            name = frame.f_code.co_filename
            if f"{ROOT}/bot/" in name or f"{ROOT}/cogs/" in name:
                where.append(f"{Path(name).stem}.{frame.f_code.co_name}")
            frame = frame.f_back
        key = " < ".join(where) or "?"
        db[key] = db.get(key, 0.0) + 1
        return await hops(self, fn, *args, **kwargs)

    aiosqlite.core.Connection._execute = counted  # type: ignore[method-assign]
    ConnectionState.parse_interaction_create = parse_interaction_create  # type: ignore[method-assign]
    discord.InteractionResponse.defer = timed_defer  # type: ignore[method-assign]
    atexit.register(lambda: Path(os.environ["BENCH_PROBE"]).write_text(json.dumps(marks)))


def patch_connector() -> None:
    """Proposed fix: a bounded keep-alive pool instead of discord.py's ``TCPConnector(limit=0)``.

    In the code: ``SeedreamBot.__init__`` passes ``connector=aiohttp.TCPConnector(limit=32)`` to
    ``super().__init__`` (discord.Client accepts ``connector``); a burst of callbacks then reuses warm
    connections instead of opening one socket (and, on discord.com, one TLS handshake) per interaction.
    """
    import aiohttp
    from discord import http
    from discord.utils import MISSING

    login = http.HTTPClient.static_login

    async def static_login(self: Any, token: str) -> Any:
        if self.connector is MISSING:
            self.connector = aiohttp.TCPConnector(limit=int(os.environ.get("BENCH_CONNECTIONS", "32")))
        return await login(self, token)

    http.HTTPClient.static_login = static_login  # type: ignore[method-assign]


def after_load(extension: str, apply: Any) -> None:
    """Run ``apply(module)`` once discord.py has loaded ``extension`` (it execs a fresh module object)."""
    from discord.ext import commands

    load = commands.Bot.load_extension

    async def load_extension(self: Any, name: str, *, package: str | None = None) -> None:
        await load(self, name, package=package)
        if name == extension:
            apply(sys.modules[name])

    commands.Bot.load_extension = load_extension  # type: ignore[method-assign]


def on_engine_start(apply: Any) -> None:
    """Run ``apply()`` on the bot's event loop once the job engine has started (the bot is up)."""
    from bot.jobs import engine

    start = engine.JobEngine.start

    async def started(self: Any) -> None:
        await start(self)
        apply()

    engine.JobEngine.start = started  # type: ignore[method-assign]


def patch_ack_only() -> None:
    """Diagnostic floor, not a fix: /imagine returns right after its defer (no policy, queue or posting)."""

    async def imagine(self: Any, interaction: Any, *args: Any) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)

    after_load("cogs.imagine", lambda module: setattr(module.Imagine, "imagine", imagine))


def patch_instant_local() -> None:
    """Bench provider, not a fix: the local provider draws each size once and then reuses the PNG bytes,
    so throughput measures queue + ledger + posting instead of Pillow drawing (about 27 ms per 1K image)."""
    import asyncio
    import hashlib
    import io

    from bot.images import StoredImage
    from bot.providers import local
    from bot.providers.base import GenerationResult

    cache: dict[tuple[int, int], bytes] = {}

    async def collect(self: Any, request: Any, submission: Any) -> Any:
        width, height = self.capabilities.dimensions(request)
        if (width, height) not in cache:
            picture = local.draw_placeholder(width, height, 1, "bench", [], 0)
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG", compress_level=1)
            cache[width, height] = buffer.getvalue()
        data = cache[width, height]
        images = []
        for _ in range(request.count):
            path = self.store._new_path("png")
            await asyncio.to_thread(path.write_bytes, data)
            images.append(
                StoredImage(
                    path=path,
                    sha256=hashlib.sha256(data).hexdigest(),
                    size_bytes=len(data),
                    width=width,
                    height=height,
                    mime="image/png",
                    provider=self.name,
                )
            )
        return GenerationResult(images=images)

    local.LocalProvider.collect = collect  # type: ignore[method-assign]


def patch_one_hop() -> None:
    """Proposed fix: one aiosqlite thread hop per query instead of three (execute, fetch, close).

    Every ``conn.execute`` here runs the statement, fetches its rows and closes the cursor in a single
    call on the database thread. In the code: ``Database.fetchone/fetchall`` use ``conn.execute_fetchall``,
    and the ``async with conn.execute(...) as cursor: await cursor.fetchone()`` reads in quota.py,
    moderation/store.py, usage.py and jobs/repository.py become ``await conn.execute_fetchall(...)``.
    """
    import aiosqlite.core
    from aiosqlite.context import Result

    class Prefetched:
        def __init__(self, rows: list[Any], rowcount: int, lastrowid: int | None) -> None:
            self._rows, self.rowcount, self.lastrowid = rows, rowcount, lastrowid

        async def fetchone(self) -> Any:
            return self._rows.pop(0) if self._rows else None

        async def fetchall(self) -> list[Any]:
            rows, self._rows = self._rows, []
            return rows

        async def close(self) -> None:
            return None

    def run(conn: Any, sql: str, parameters: Any) -> Prefetched:
        cursor = conn.execute(sql, parameters)
        try:
            return Prefetched(cursor.fetchall(), cursor.rowcount, cursor.lastrowid)
        finally:
            cursor.close()

    def execute(self: Any, sql: str, parameters: Any = None) -> Any:
        return Result(self._execute(run, self._conn, sql, [] if parameters is None else parameters))

    aiosqlite.core.Connection.execute = execute  # type: ignore[method-assign]


def patch_cheap_probe() -> None:
    """Proposed fix: ``bot/images.py:_probe`` checks a PNG's chunks instead of inflating every pixel.

    The full ``img.load()`` of every downloaded result costs ~50 ms CPU and 12 MB per 2K PNG (~180 ms,
    48 MB at 4K) and holds the GIL in Pillow's Python loop, which stalls the event loop's 64 KB writes.
    ``PngImageFile.verify()`` reads every chunk and checks its CRC and the IEND marker (a truncated or
    corrupted file still fails, ~1 ms at 2K); JPEG decodes at 1/8 scale (``draft``), which still needs
    the whole entropy-coded stream; other formats keep the full decode. Same checks before it (format,
    pixel cap, bomb guard).
    """
    from PIL import Image

    from bot import images

    full = images._probe

    def probe(path: Any, max_pixels: int) -> tuple[str, int, int]:
        with Image.open(path) as img:
            fmt, (width, height) = img.format or "", img.size
        if fmt not in ("PNG", "JPEG") or width * height > max_pixels:
            return full(path, max_pixels)  # the usual checks and messages
        try:
            with Image.open(path) as img:
                if fmt == "PNG":
                    img.verify()
                else:
                    img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                    img.load()
        except (OSError, SyntaxError, ValueError):
            raise images.ImageRejected("That image is damaged or truncated and cannot be read.") from None
        return fmt, width, height

    images._probe = probe


def patch_probe_phases() -> None:
    """Diagnostic: wall time spent inside the job's phases (summed over jobs), printed at exit."""
    import collections

    import discord

    from bot.jobs import engine
    from bot.providers import seedream_v3
    from bot.uploads import plan_parts
    from cogs import delivery

    spent: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()

    def timed(owner: Any, attr: str, name: str) -> None:
        original = getattr(owner, attr)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started
                calls[name] += 1

        setattr(owner, attr, wrapper)

    timed(engine.JobEngine, "_advance", "job")
    timed(engine.JobEngine, "_set", "engine._set (state write)")
    timed(engine.JobEngine, "save_delivery", "engine.save_delivery")
    timed(engine.JobEngine, "_record_message", "engine._record_message")
    timed(seedream_v3.SeedreamV3Provider, "submit", "provider.submit")
    timed(seedream_v3.SeedreamV3Provider, "collect", "provider.collect (download+probe)")
    timed(delivery.DiscordSink, "progress", "sink.progress (status edit)")
    timed(delivery.DiscordSink, "deliver", "sink.deliver")
    timed(delivery.DiscordSink, "show_card", "sink.show_card (card via the token)")
    timed(delivery.DiscordSink, "_open_thread", "sink._open_thread (thread from the card)")
    timed(delivery.DiscordSink, "finished", "sink.finished (final edit)")
    timed(discord.abc.Messageable, "send", "Messageable.send (result posts)")
    import bot.uploads

    def planned(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return plan_parts(*args, **kwargs)
        finally:
            spent["plan_parts (thread)"] += time.perf_counter() - started
            calls["plan_parts (thread)"] += 1

    bot.uploads.plan_parts = planned
    delivery.plan_parts = planned

    def report() -> None:
        for name, seconds in spent.most_common():
            print(f"probe_phases: {seconds:8.3f} s {calls[name]:6d} calls  {name}", file=sys.stderr)

    atexit.register(report)


def patch_no_checks() -> None:
    """Diagnostic, not a fix: downloaded results are neither hashed nor probed (what do the checks cost?)."""
    from bot import images

    images._digest_and_probe = lambda path, max_pixels: ("0" * 64, ("PNG", 2048, 2048))


def patch_no_status() -> None:
    """Diagnostic, not a fix: no card edits and no thread; results go to the channel."""
    from cogs import delivery

    async def no_thread(self: Any, job: Any) -> Any:
        job.delivery = job.delivery.model_copy(update={"fallback": True})
        return None

    async def nothing(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    delivery.DiscordSink._open_thread = no_thread  # type: ignore[method-assign]
    delivery.DiscordSink.show_card = nothing  # type: ignore[method-assign]
    delivery.DiscordSink.progress = nothing  # type: ignore[method-assign]
    delivery.DiscordSink._final_edit = nothing  # type: ignore[method-assign]


def patch_cprofile() -> None:
    """Diagnostic: cProfile the whole bot process; stats are written to ``$BENCH_CPROFILE`` at exit."""
    import cProfile

    profile = cProfile.Profile()
    profile.enable()
    atexit.register(lambda: (profile.disable(), profile.dump_stats(os.environ["BENCH_CPROFILE"])))


def patch_no_ack_first() -> None:
    """The code before ``cogs/ackfirst.py``: a command's slow work does not wait for others' acknowledgements."""
    from cogs import ackfirst

    async def after_ack(self: Any, interaction: Any) -> None:
        return None

    ackfirst.AckFirst.after_ack = after_ack  # type: ignore[method-assign]


def patch_loop_lag() -> None:
    """Diagnostic: how late the event loop runs a 5 ms timer, and how long each database hop takes
    (waiting in aiosqlite's queue + running in its thread + getting back to the loop), printed at exit."""
    import asyncio

    import aiosqlite.core

    lags: list[float] = []
    hops: list[tuple[float, float]] = []  # (total, inside the thread)
    execute = aiosqlite.core.Connection._execute

    async def timed(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        inside: list[float] = []

        def run() -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                inside.append(time.perf_counter() - began)

        try:
            return await execute(self, run)
        finally:
            hops.append((time.perf_counter() - started, inside[0] if inside else 0.0))

    aiosqlite.core.Connection._execute = timed  # type: ignore[method-assign]

    async def watch() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - started - 0.005)

    watching: list[asyncio.Task[None]] = []
    on_engine_start(lambda: watching.append(asyncio.create_task(watch())))

    def q(values: list[float], p: float) -> float:
        return sorted(values)[min(len(values) - 1, int(len(values) * p))] * 1000 if values else 0.0

    def report() -> None:
        busy = [v for v in lags if v > 0.001]
        print(
            f"loop_lag: {len(lags)} ticks, {len(busy)} late >1ms, p50 {q(lags, 0.5):.1f} p90 {q(lags, 0.9):.1f} "
            f"p99 {q(lags, 0.99):.1f} max {q(lags, 1):.1f} ms",
            file=sys.stderr,
        )
        total, inside = [h[0] for h in hops], [h[1] for h in hops]
        print(
            f"db_hops: {len(hops)} hops, total p50 {q(total, 0.5):.1f} p90 {q(total, 0.9):.1f} "
            f"p99 {q(total, 0.99):.1f} ms; in thread p50 {q(inside, 0.5):.2f} p99 {q(inside, 0.99):.2f} ms, "
            f"sum {sum(inside):.2f} s",
            file=sys.stderr,
        )

    atexit.register(report)


def patch_slow_callbacks() -> None:
    """Diagnostic: asyncio debug mode logs every event-loop step longer than 3 ms (to bot.log)."""
    import asyncio
    import logging

    def debug() -> None:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.003
        logging.getLogger("asyncio").setLevel(logging.WARNING)

    on_engine_start(debug)


def patch_gc_pauses() -> None:
    """Diagnostic: every garbage collection's generation and pause, summed per generation at exit."""
    import gc

    pauses: list[tuple[int, float]] = []
    began: list[float] = [0.0]

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - began[0]))

    gc.callbacks.append(watch)

    def report() -> None:
        for gen in (0, 1, 2):
            mine = [p for g, p in pauses if g == gen]
            worst = max(mine, default=0) * 1000
            total = sum(mine) * 1000
            print(f"gc_pauses: gen{gen} {len(mine)} runs, {total:.1f} ms, worst {worst:.1f} ms", file=sys.stderr)

    atexit.register(report)


def patch_gc_freeze() -> None:
    """Candidate: after start-up, move every object alive then out of the collector's generations
    (``gc.freeze``), so a full collection scans only what the bot made since."""
    import gc

    on_engine_start(lambda: (gc.collect(), gc.freeze()))


def patch_no_hash() -> None:
    """Diagnostic, not a fix: downloaded results are probed but not hashed."""
    from bot import images

    images._digest_and_probe = lambda path, max_pixels: ("0" * 64, images._probe(path, max_pixels))


def patch_no_pending() -> None:
    """Diagnostic, not a fix: acknowledged commands are not noted in pending_answers (what does that write cost?)."""
    from bot.jobs import pending

    async def add(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    pending.PendingAnswers.add = add  # type: ignore[method-assign]


def patch_private_defer() -> None:
    """Diagnostic, not a fix: the card's "thinking…" is deferred privately (no public message, so no
    MESSAGE_CREATE/UPDATE per command for the fake to send and the bot to parse); cards stay invisible."""
    import discord

    defer = discord.InteractionResponse.defer

    async def private(self: Any, **kwargs: Any) -> Any:
        return await defer(self, **{**kwargs, "ephemeral": True})

    discord.InteractionResponse.defer = private  # type: ignore[method-assign]


PATCHES = {
    "no_hash": patch_no_hash,
    "gc_freeze": patch_gc_freeze,
    "gc_pauses": patch_gc_pauses,
    "slow_callbacks": patch_slow_callbacks,
    "loop_lag": patch_loop_lag,
    "no_ack_first": patch_no_ack_first,
    "cprofile": patch_cprofile,
    "no_checks": patch_no_checks,
    "no_status": patch_no_status,
    "probe_phases": patch_probe_phases,
    "cheap_probe": patch_cheap_probe,
    "one_hop": patch_one_hop,
    "instant_local": patch_instant_local,
    "probe": patch_probe,
    "connector": patch_connector,
    "ack_only": patch_ack_only,
    "no_pending": patch_no_pending,
    "private_defer": patch_private_defer,
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--command", default="run", help="the seedream-bot command to run (run, worker)")
    parser.add_argument("--patch", action="append", default=[], choices=sorted(PATCHES))
    args = parser.parse_args()
    for name in args.patch:
        PATCHES[name]()
    from bot.cli import main as cli_main

    return cli_main([args.command, "--config", args.config])


if __name__ == "__main__":
    sys.exit(main())
