"""Peak RSS of the bot process: many 4K jobs in flight, one thin-strip reference, two 4K results re-encoded.

Run: python bench/memory.py [--case flight|strip|reencode ...] [--jobs 50] [--patch NAME]

Each case is the real ``python -m bot run`` in its own fresh process against the strict fake Novita
(seedream-4.5, whose references must stay within [1/3, 3] and 12 MP), on a fresh fake and database. RSS is
read from /proc every 20 ms; the peak is VmHWM read just before the bot is stopped. Target: < 200 MB each.

- ``flight``: ``workers`` = 50 and ``max_concurrent`` = 50, so every job is in flight at once: 50 creates,
  200 downloads of a photo-like 4096x4096 PNG (about 16 MB, made once), then 50 uploads of 4 files (64 MB per
  message, into a boost-tier-3 server so nothing is re-encoded). Side by side: the code as it is and with
  ``--patch`` fixes from _botproc.py (default ``cheap_probe``).
- ``strip``: one /imagine with a 48 x 24,000 reference (a ~20 kB PNG). The provider's minimum aspect ratio
  means it is padded to 1:3 and shrunk to 12 MP before it is sent.
- ``reencode``: one /imagine of 2 images at 4K (two ~16 MB PNGs) into a server with the default 10 MiB
  upload limit, so both are re-encoded to fit.

``strip`` and ``reencode`` print one row per bot: the code as it is and, with ``BENCH_BEFORE=/path/to/copy``
(e.g. ``git archive <rev> | tar -x -C /tmp/before``), that checkout too, consecutively in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import re
import time
from pathlib import Path
from typing import Any

import _common as c
import aiosqlite
from PIL import Image

from tests.fakediscord import FakeDiscord
from tests.fakeproviders.common import signed_link

TARGET_MB = 200.0
CASES = ("flight", "strip", "reencode")


class SignedPhotoNovita(c.PhotoNovita):
    """``PhotoNovita`` behind signed result links: the fake's file store refuses any other link since ce63586."""

    def host_image(self, width: int, height: int, suffix: str = "png") -> str:
        name = f"{self.next_id('img')}.{suffix}"
        self.files[name] = c.photo_png(width, height)
        return signed_link(self.base_url, f"/files/{name}")


async def one_run(
    novita: c.PhotoNovita,
    commands: list[dict[str, Any]],
    patches: list[str],
    *,
    premium_tier: int,
    workers: int,
    timeout: float = 110.0,
) -> dict[str, Any]:
    """Run the bot, send the /imagine commands at once, wait until every job ends; measure RSS."""
    with c.workdir("memory") as tmp:
        async with FakeDiscord(token=c.BOT_TOKEN) as fake:
            world = await c.World(fake).build(users=25, channels=5, premium_tier=premium_tier)
            settings = c.settings_for(
                fake,
                world.guild,
                tmp,
                discord={"status_edit_seconds": 5.0, "shutdown_grace_seconds": 0},
                generation={"workers": workers, "default_provider": "novita"},
                providers={"novita": c.novita_provider(novita, workers)},
            )
            async with c.bot_process(fake, settings, tmp, env=c.NOVITA_ENV, patches=patches) as process:
                await asyncio.sleep(1.0)
                idle = c.rss_mb(process.pid)
                started = time.monotonic()
                await asyncio.gather(
                    *(
                        fake.slash_command(
                            "imagine",
                            user=world.users[i % 25],
                            channel=world.channels[i % 5],
                            options=command["options"],
                            attachments=command.get("attachments"),
                        )
                        for i, command in enumerate(commands)
                    )
                )
                samples: list[float] = []
                async with aiosqlite.connect(settings.storage.database) as conn:
                    sql = "SELECT COUNT(*) FROM jobs WHERE state IN ('done', 'failed', 'cancelled')"
                    while time.monotonic() - started < timeout:
                        samples.append(c.rss_mb(process.pid))
                        async with conn.execute(sql) as cursor:
                            if (await cursor.fetchone())[0] >= len(commands):
                                break
                        await asyncio.sleep(0.02)
                    async with conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state") as cursor:
                        states = dict(await cursor.fetchall())
                # Delivery runs after the job is marked done: wait for the uploads, still sampling.
                expected = states.get("done", 0) * commands[0]["options"]["count"]
                while time.monotonic() - started < timeout and attachments_posted(fake) < expected:
                    samples.append(c.rss_mb(process.pid))
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.5)
                elapsed = time.monotonic() - started
                peak = c.peak_rss_mb(process.pid)
            uploads = [a for t in fake.threads() for m in fake.bot_messages(t) for a in m.attachments]
            messages = [m for t in fake.threads() for m in fake.bot_messages(t) if m.attachments]
            largest_message = max((sum(len(a.data) for a in m.attachments) for m in messages), default=0)
    return {
        "idle": idle,
        "peak": peak,
        "p50": c.summary(samples)["median"],
        "elapsed": elapsed,
        "done": states.get("done", 0),
        "jobs": len(commands),
        "uploads": uploads,
        "largest_message": largest_message,
        "upload_limit": world.guild.upload_limit,
    }


def attachments_posted(fake: FakeDiscord) -> int:
    return sum(len(m.attachments) for t in fake.threads() for m in fake.bot_messages(t))


def strip_png(width: int = 48, height: int = 24_000) -> bytes:
    """A thin vertical strip that compresses like the one in the report (~20 kB)."""
    picture = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def references_sent(novita: c.PhotoNovita) -> list[tuple[str, tuple[int, int], int]]:
    """(format, size, bytes) of every reference the fake received."""
    found = []
    for call in novita.calls_to("POST", "/v3/"):
        for uri in call.body.get("image", []) if isinstance(call.body, dict) else []:
            data = base64.b64decode(re.sub(r"^data:image/[a-z]+;base64,", "", uri))
            with Image.open(io.BytesIO(data)) as picture:
                found.append((picture.format or "?", picture.size, len(data)))
    return found


def bots() -> list[tuple[str, str | None]]:
    """(label, BENCH_BOT_ROOT) pairs: the checkout under test, and BENCH_BEFORE when given (run first)."""
    before = os.environ.get("BENCH_BEFORE")
    current = ("as is", None)
    return [(f"{Path(before).name} (BENCH_BEFORE)", before), current] if before else [current]


async def with_bot_root(root: str | None, run: Any) -> dict[str, Any]:
    saved = c.BOT_ROOT
    c.BOT_ROOT = Path(root).resolve() if root else saved
    try:
        return await run()
    finally:
        c.BOT_ROOT = saved


async def case_flight(novita: c.PhotoNovita, jobs: int, fixes: list[str]) -> list[float]:
    print(f"## flight: {jobs} jobs x 4 images at 4K (~16 MB PNGs) in flight at once\n")
    c.photo_png(4096, 4096)
    command = {"options": {"prompt": "a koala", "count": 4, "resolution": "4K"}}
    rows, peaks = [], {}
    for label, patches in (("as is", []), ("+" + "+".join(fixes), fixes)):
        r = await one_run(novita, [command] * jobs, patches, premium_tier=3, workers=50)
        peaks[label] = r["peak"]
        rows.append(
            [
                label,
                f"{r['idle']:.0f}",
                f"{r['p50']:.0f}",
                f"{r['peak']:.0f}",
                f"{r['peak'] - r['idle']:.0f}",
                f"{r['done']}/{jobs}",
                f"{len(r['uploads'])}/{4 * jobs}",
                f"{r['elapsed']:.1f}",
            ]
        )
    print(c.table(["bot", "idle MB", "RSS p50 MB", "peak MB", "peak - idle", "jobs done", "images", "s"], rows))
    first, second = list(peaks)
    verdict = "PASS" if peaks[first] < TARGET_MB else "MISS"
    print(
        f"\nSUMMARY memory flight: peak RSS {peaks[first]:.0f} MB (target < {TARGET_MB:.0f}) {verdict}; "
        f"{peaks[second]:.0f} MB with {second[1:]} (x{peaks[second] / peaks[first]:.2f})\n"
    )
    return [peaks[first]]


async def case_strip(novita: c.PhotoNovita) -> list[float]:
    data = strip_png()
    print(f"## strip: one /imagine with a 48x24000 reference ({len(data) / 1000:.0f} kB PNG), seedream-4.5 at 2K\n")
    command = {
        "options": {"prompt": "a koala on this ribbon", "count": 1, "resolution": "2K", "aspect": "1:1"},
        "attachments": {"image1": ("strip.png", data)},
    }
    rows, peaks = [], []
    for label, root in bots():
        novita.calls.clear()
        r = await with_bot_root(root, lambda: one_run(novita, [command], [], premium_tier=3, workers=4))
        sent = references_sent(novita)
        peaks.append(r["peak"])
        rows.append(
            [
                label,
                f"{r['idle']:.0f}",
                f"{r['peak']:.0f}",
                f"{r['peak'] - r['idle']:.0f}",
                f"{r['done']}/1",
                ", ".join(f"{fmt} {w}x{h} ({w / h:.3f}) {size / 1000:.0f} kB" for fmt, (w, h), size in sent) or "-",
                f"{r['elapsed']:.1f}",
            ]
        )
    print(c.table(["bot", "idle MB", "peak MB", "peak - idle", "job done", "reference sent", "s"], rows))
    print(summary_line("strip", rows, peaks))
    return peaks


async def case_reencode(novita: c.PhotoNovita) -> list[float]:
    print("## reencode: one /imagine of 2 images at 4K (~16 MB PNGs each) into a 10 MiB server\n")
    c.photo_png(4096, 4096)
    command = {"options": {"prompt": "two koalas", "count": 2, "resolution": "4K", "aspect": "1:1"}}
    rows, peaks = [], []
    for label, root in bots():
        r = await with_bot_root(root, lambda: one_run(novita, [command], [], premium_tier=0, workers=4))
        peaks.append(r["peak"])
        rows.append(
            [
                label,
                f"{r['idle']:.0f}",
                f"{r['peak']:.0f}",
                f"{r['peak'] - r['idle']:.0f}",
                f"{r['done']}/1",
                ", ".join(f"{a.filename.rsplit('-', 1)[-1]} {len(a.data) / 2**20:.1f} MiB" for a in r["uploads"])
                or "-",
                f"{r['largest_message'] / 2**20:.1f} / {r['upload_limit'] / 2**20:.0f} MiB",
                f"{r['elapsed']:.1f}",
            ]
        )
    headers = ["bot", "idle MB", "peak MB", "peak - idle", "job done", "uploads", "largest message", "s"]
    print(c.table(headers, rows))
    print(summary_line("reencode", rows, peaks))
    return peaks


def summary_line(case: str, rows: list[list[str]], peaks: list[float]) -> str:
    current = peaks[-1]
    verdict = "PASS" if current < TARGET_MB else "MISS"
    text = f"\nSUMMARY memory {case}: peak RSS {current:.0f} MB (target < {TARGET_MB:.0f}) {verdict}"
    if len(peaks) > 1:
        text += f"; {rows[0][0]}: {peaks[0]:.0f} MB (x{current / peaks[0]:.2f})"
    return text + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", action="append", choices=CASES, default=None, help="default: all")
    parser.add_argument("--jobs", type=int, default=50, help="jobs in flight for the flight case")
    parser.add_argument("--patch", action="append", default=None, help="proposed fixes from _botproc.py (flight)")
    args = parser.parse_args()
    cases = args.case or list(CASES)
    fixes = args.patch if args.patch is not None else ["cheap_probe"]
    c.header(f"memory: peak RSS of the bot process, cases {', '.join(cases)}")
    async with SignedPhotoNovita() as novita:
        for case in cases:
            if case == "flight":
                await case_flight(novita, args.jobs, fixes)
            elif case == "strip":
                await case_strip(novita)
            else:
                await case_reencode(novita)


if __name__ == "__main__":
    asyncio.run(main())
