"""Jobs/s through /imagine + queue + ledger + the local provider + posting to the fake Discord.

Run: python bench/throughput.py [--jobs 300] [--workers 1,4,16]

The real ``python -m bot run`` runs in its own process; this process (the fake Discord) fires ``--jobs``
/imagine commands at once from 32 members in 4 channels and reads the jobs table until all are done.
Per job the bot checks the policy, reserves quota and writes the job (one transaction), posts a status
message and opens a thread, edits the status (``status_edit_seconds`` = 5, the default), posts the
result, settles the ledger and saves each state. Jobs/s is taken in the steady state (10 % to 90 % of the
jobs finished); "CPU ms/job" is the CPU time each process spent per finished job in that window, so
1000 / (bot CPU ms/job) is the bot's ceiling on one free core. Two providers side by side: ``local``
draws a 1K (1024x1024) PNG per job with Pillow (~27 ms CPU, which dominates), ``instant`` reuses one 1K
PNG (bench-only patch, see _botproc.py) and leaves the bot's own ceiling; the third row adds the proposed
fix (``one_hop`` in _botproc.py: one aiosqlite hop per query). The fake's rate limit is raised
to 100,000/s: real Discord limits posting per channel (about 5 messages per 5 s), so this is the bot's
ceiling spread over many channels, not what one channel would take.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import _common as c
import aiosqlite

from tests.fakediscord import FakeDiscord

TARGET = 100.0


async def drain(database: str, jobs: int, pid: int) -> list[tuple[float, int, float, float]]:
    """(time, jobs finished, bot CPU s, this process's CPU s) every 50 ms until every job is finished."""
    samples = []
    async with aiosqlite.connect(database) as conn:
        deadline = time.monotonic() + 100
        while time.monotonic() < deadline:
            async with conn.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('done', 'failed')") as cur:
                finished = (await cur.fetchone())[0]
            samples.append((time.monotonic(), finished, c.cpu_seconds(pid), c.cpu_seconds()))
            if finished >= jobs:
                break
            await asyncio.sleep(0.05)
    return samples


async def one_run(workers: int, jobs: int, patches: list[str]) -> dict[str, float]:
    with c.workdir(f"tp{workers}") as tmp:
        async with FakeDiscord(token=c.BOT_TOKEN, rate_limit=100_000, discord_limits=False) as fake:  # no limits
            world = await c.World(fake).build(users=32, channels=4)
            settings = c.settings_for(
                fake,
                world.guild,
                tmp,
                discord={"status_edit_seconds": 5.0, "shutdown_grace_seconds": 0},
                generation={"workers": workers},
                providers={"local": {"kind": "local", "max_concurrent": 64}},
            )
            async with c.bot_process(fake, settings, tmp, patches=patches) as process:
                await asyncio.sleep(0.5)
                await asyncio.gather(
                    *(
                        fake.slash_command(
                            "imagine",
                            user=world.users[i % 32],
                            channel=world.channels[i % 4],
                            options={"prompt": f"a koala number {i}", "resolution": "1K"},
                        )
                        for i in range(jobs)
                    )
                )
                samples = await drain(settings.storage.database, jobs, process.pid)
                async with (
                    aiosqlite.connect(settings.storage.database) as conn,
                    conn.execute(
                        "SELECT finished_at - created_at, state FROM jobs WHERE state IN ('done', 'failed')"
                    ) as cur,
                ):
                    rows = list(await cur.fetchall())
    spans = [row[0] for row in rows if row[1] == "done"]
    # Steady state: from 10 % to 90 % of the jobs finished (start-up and the tail left out).
    first = next(s for s in samples if s[1] >= jobs * 0.1)
    last = next((s for s in samples if s[1] >= jobs * 0.9), samples[-1])
    finished = max(1, last[1] - first[1])
    return {
        "jobs_s": finished / max(1e-9, last[0] - first[0]),
        "done": len(spans),
        "failed": len(rows) - len(spans),
        "bot_ms": 1000 * (last[2] - first[2]) / finished,
        "fake_ms": 1000 * (last[3] - first[3]) / finished,
        "p50": c.summary(spans)["median"],
        "p99": c.summary(spans)["p99"],
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--workers", default="1,4,16")
    parser.add_argument("--patch", action="append", default=None, help="proposed fixes from _botproc.py")
    args = parser.parse_args()
    fixes = args.patch if args.patch is not None else ["one_hop"]
    fixed = "instant +" + "+".join(fixes)
    c.header(f"throughput: /imagine x {args.jobs} drained by the bot process (1K, fake rate limit raised)")
    rows, best = [], {}
    for workers in [int(w) for w in args.workers.split(",")]:
        for label, patches in (("local 1K", []), ("instant", ["instant_local"]), (fixed, ["instant_local", *fixes])):
            r = await one_run(workers, args.jobs, patches)
            best[label] = max(best.get(label, 0.0), r["jobs_s"])
            rows.append(
                [
                    workers,
                    label,
                    f"{r['jobs_s']:.1f}",
                    f"{r['done']}/{args.jobs}",
                    f"{r['p50']:.2f}",
                    f"{r['p99']:.2f}",
                    f"{r['bot_ms']:.1f}",
                    f"{r['fake_ms']:.1f}",
                ]
            )
    print(
        c.table(
            ["workers", "provider", "jobs/s", "done", "job p50 s", "job p99 s", "bot CPU ms/job", "fake CPU ms/job"],
            rows,
        )
    )
    verdict = "PASS" if best["instant"] >= TARGET else "MISS"
    print(
        f"\nSUMMARY throughput: best {best['instant']:.1f} jobs/s with the instant provider (target >= {TARGET:.0f}) "
        f"{verdict}; {best[fixed]:.1f} with {fixed[9:]}; {best['local 1K']:.1f} jobs/s drawing 1K PNGs"
    )


if __name__ == "__main__":
    asyncio.run(main())
