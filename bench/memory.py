"""Peak RSS of the bot process with 50 jobs of 4 x 4K images in flight.

Run: python bench/memory.py [--jobs 50] [--patch NAME]

The real ``python -m bot run`` in its own process, ``workers`` = 50 and the provider's ``max_concurrent``
= 50, so every job is in flight at once: 50 creates at the fake Novita, 200 downloads of a photo-like
4096x4096 PNG (about 16 MB, made once), then 50 uploads of 4 files (64 MB per message, into a boost-tier-3
server so nothing is re-encoded). RSS is read from /proc every 20 ms; the peak is VmHWM read just before
the bot is stopped. Side by side: the code as it is and with the proposed probe fix (``cheap_probe`` in
_botproc.py), each on a fresh fake and database.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import _common as c
import aiosqlite

from tests.fakediscord import FakeDiscord

TARGET_MB = 200.0


async def one_run(novita: c.PhotoNovita, jobs: int, patches: list[str]) -> dict[str, Any]:
    with c.workdir("memory") as tmp:
        async with FakeDiscord(token=c.BOT_TOKEN) as fake:
            world = await c.World(fake).build(users=25, channels=5, premium_tier=3)
            settings = c.settings_for(
                fake,
                world.guild,
                tmp,
                discord={"status_edit_seconds": 5.0, "shutdown_grace_seconds": 0},
                generation={"workers": 50, "default_provider": "novita"},
                providers={"novita": c.novita_provider(novita, 50)},
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
                            options={"prompt": f"a koala number {i}", "count": 4, "resolution": "4K"},
                        )
                        for i in range(jobs)
                    )
                )
                samples: list[float] = []
                async with aiosqlite.connect(settings.storage.database) as conn:
                    sql = "SELECT COUNT(*) FROM jobs WHERE state IN ('done', 'failed', 'cancelled')"
                    while time.monotonic() - started < 110:
                        samples.append(c.rss_mb(process.pid))
                        async with conn.execute(sql) as cursor:
                            if (await cursor.fetchone())[0] >= jobs:
                                break
                        await asyncio.sleep(0.02)
                    async with conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state") as cursor:
                        states = dict(await cursor.fetchall())
                elapsed = time.monotonic() - started
                peak = c.peak_rss_mb(process.pid)
            images = sum(len(m.attachments) for t in fake.threads() for m in fake.bot_messages(t))
    return {
        "idle": idle,
        "peak": peak,
        "p50": c.summary(samples)["median"],
        "elapsed": elapsed,
        "done": states.get("done", 0),
        "images": images,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--patch", action="append", default=None, help="proposed fixes from _botproc.py")
    args = parser.parse_args()
    fixes = args.patch if args.patch is not None else ["cheap_probe"]
    c.header(f"memory: {args.jobs} jobs x 4 images at 4K (~16 MB PNGs) in flight at once")
    c.photo_png(4096, 4096)
    rows, peaks = [], {}
    async with c.PhotoNovita() as novita:
        for label, patches in (("as is", []), ("+" + "+".join(fixes), fixes)):
            r = await one_run(novita, args.jobs, patches)
            peaks[label] = r["peak"]
            rows.append(
                [
                    label,
                    f"{r['idle']:.0f}",
                    f"{r['p50']:.0f}",
                    f"{r['peak']:.0f}",
                    f"{r['peak'] - r['idle']:.0f}",
                    f"{r['done']}/{args.jobs}",
                    f"{r['images']}/{4 * args.jobs}",
                    f"{r['elapsed']:.1f}",
                ]
            )
    print(c.table(["bot", "idle MB", "RSS p50 MB", "peak MB", "peak - idle", "jobs done", "images", "s"], rows))
    first, second = list(peaks)
    verdict = "PASS" if peaks[first] < TARGET_MB else "MISS"
    print(
        f"\nSUMMARY memory: peak RSS {peaks[first]:.0f} MB (target < {TARGET_MB:.0f}) {verdict}; "
        f"{peaks[second]:.0f} MB with {second[1:]} (x{peaks[second] / peaks[first]:.2f})"
    )


if __name__ == "__main__":
    asyncio.run(main())
