"""Jobs/s through /imagine + queue + ledger + the local provider + posting, on SQLite and PostgreSQL, 1/2/4 processes.

Run: python bench/throughput.py [--database PATH_OR_URL ...] [--processes 1,2,4] [--jobs 300] [--workers 4]

The real ``python -m bot run`` runs in its own process, joined by N-1 ``python -m bot worker`` processes on the
same config and database (so 1, 2 or 4 processes run jobs; workers need PostgreSQL, so SQLite has the 1-process
row only); this process (the fake Discord) fires ``--jobs``
/imagine commands at once from 32 members in 4 channels and reads the jobs table until all are done. Per job
the bot checks the policy, reserves quota and writes the job (one transaction), posts the card and opens a
thread, edits the card (``status_edit_seconds`` = 5, the default), posts the result, settles the ledger and
saves each state. ``--database`` (repeatable) names the stores side by side: a SQLite file path (a fresh file
next to it per run) or a ``postgresql://`` server URL (a throwaway database per run); the default is both, a
SQLite file in a temporary folder and the server of ``TEST_POSTGRES_URL`` (else the CI default).

Jobs/s is taken in the steady state (10 % to 90 % of the jobs finished); "CPU ms/job" is the CPU time the bot
processes together and this process spent per finished job in that window, so 1000 / (bot CPU ms/job) is the
bot's ceiling on one free core. Two providers: ``local`` draws a 1K (1024x1024) PNG per job with Pillow
(~27 ms CPU, which dominates), ``instant`` reuses one 1K PNG (bench-only patch, see _botproc.py) and leaves the
bot's own ceiling. ``--patch NAME`` adds a row with a proposed fix from _botproc.py. The fake's rate limit is
raised to 100,000/s: real Discord limits posting per channel (about 5 messages per 5 s), so this is the bot's
ceiling spread over many channels, not what one channel would take. The machine has 2 cores shared with
the fake Discord (and PostgreSQL), so more processes share the same two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

import _common as c

from bot.storage import is_postgres_url, store_for
from tests.fakediscord import FakeDiscord

TARGET = 100.0


async def drain(database: str, jobs: int, pids: list[int]) -> list[tuple[float, int, float, float]]:
    """(time, jobs finished, bot CPU s, this process's CPU s) every 50 ms until every job is finished."""
    samples = []
    db = await store_for(database).open()
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            row = await db.fetchone("SELECT COUNT(*) FROM jobs WHERE state IN ('done', 'failed')")
            finished = int(row[0])
            samples.append((time.monotonic(), finished, sum(c.cpu_seconds(p) for p in pids), c.cpu_seconds()))
            if finished >= jobs:
                break
            await asyncio.sleep(0.05)
    finally:
        await db.close()
    return samples


async def finished_jobs(database: str) -> tuple[list[Any], str]:
    """(time taken, state) of every finished job, and what the unfinished ones are doing, e.g. "posted 3"."""
    db = await store_for(database).open()
    try:
        rows = await db.fetchall("SELECT finished_at - created_at, state FROM jobs WHERE state IN ('done', 'failed')")
        left = await db.fetchall(
            "SELECT state, lease_owner IS NOT NULL, COUNT(*) FROM jobs WHERE state NOT IN ('done', 'failed')"
            " GROUP BY state, lease_owner IS NOT NULL"
        )
    finally:
        await db.close()
    return rows, ", ".join(f"{r[0]}{' leased' if r[1] else ''} {r[2]}" for r in left)


async def one_run(database: str, processes: int, workers: int, jobs: int, patches: list[str]) -> dict[str, Any]:
    with c.workdir(f"tp{processes}") as tmp:
        async with (
            c.fresh_store(database, tmp, f"p{processes}", migrate=False) as store,  # the bot migrates
            FakeDiscord(token=c.BOT_TOKEN, rate_limit=100_000, discord_limits=False) as fake,  # no limits
        ):
            world = await c.World(fake).build(users=32, channels=4)
            settings = c.settings_for(
                fake,
                world.guild,
                tmp,
                discord={"status_edit_seconds": 5.0, "shutdown_grace_seconds": 0},
                storage={"database": store},
                generation={"workers": workers},
                providers={"local": {"kind": "local", "max_concurrent": 64}},
            )
            async with (
                c.worker_processes(settings, tmp, processes - 1, patches) as others,
                c.bot_process(fake, settings, tmp, patches=patches) as process,
            ):
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
                samples = await drain(store, jobs, [process.pid, *(o.pid for o in others)])
                rows, unfinished = await finished_jobs(store)
    spans = [float(row[0]) for row in rows if row[1] == "done"]
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
        "p50": c.summary(spans or [float("nan")])["median"],
        "p99": c.summary(spans or [float("nan")])["p99"],
        "unfinished": unfinished,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    c.database_option(parser)
    parser.add_argument("--processes", default="1,2,4", help="1 = run alone; N = run + N-1 workers")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--workers", type=int, default=4, help="generation.workers in each process")
    parser.add_argument("--patch", action="append", default=[], help="proposed fixes from _botproc.py (extra row)")
    args = parser.parse_args()
    variants: list[tuple[str, list[str]]] = [("local 1K", []), ("instant", ["instant_local"])]
    if args.patch:
        variants.append(("instant +" + "+".join(args.patch), ["instant_local", *args.patch]))
    c.header(f"throughput: /imagine x {args.jobs} drained by 1-4 bot processes (1K, fake rate limit raised)")
    stores = await c.usable_stores(args.database)
    layouts = [int(n) for n in args.processes.split(",")]
    if max(layouts) > 1 and not c.has_command("worker"):
        print("# left out 2+ processes: this checkout has no `seedream-bot worker`")
        layouts = [n for n in layouts if n == 1]
    rows, rate = [], {}
    if max(layouts) > 1 and any(not is_postgres_url(d) for d in stores):
        print("# SQLite: 1 process only (seedream-bot worker needs PostgreSQL; on SQLite `run` runs every job)")
    for processes in layouts:
        for label, patches in variants:
            for database in stores:  # the stores alternate, so a noisy moment hits both
                if processes > 1 and not is_postgres_url(database):
                    continue
                try:
                    r = await one_run(database, processes, args.workers, args.jobs, patches)
                except (TimeoutError, RuntimeError, StopIteration) as exc:
                    print(f"# {c.store_name(database)}, {processes} processes, {label}: {type(exc).__name__} {exc}")
                    continue
                rate[(c.store_name(database), processes, label)] = r["jobs_s"]
                if r["unfinished"]:
                    print(f"# {c.store_name(database)}, {processes} processes, {label}: unfinished {r['unfinished']}")
                rows.append(
                    [
                        c.store_name(database),
                        processes,
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
            [
                "store",
                "processes",
                "provider",
                "jobs/s",
                "done",
                "job p50 s",
                "job p99 s",
                "bot CPU ms/job",
                "fake CPU ms/job",
            ],
            rows,
        )
    )
    print()
    print(side_by_side(rate, layouts, [label for label, _ in variants]))
    best = max((v for (_, _, label), v in rate.items() if label == "instant"), default=0.0)
    verdict = "PASS" if best >= TARGET else "MISS"
    drawn = {(store, n): v for (store, n, label), v in rate.items() if label == "local 1K"}
    per = "; ".join(
        f"{store} " + ", ".join(f"{drawn[(store, n)]:.1f}" for n in layouts if (store, n) in drawn)
        for store in dict.fromkeys(s for s, _ in drawn)
    )
    print(
        f"\nSUMMARY throughput: jobs/s drawing 1K PNGs in {'/'.join(map(str, layouts))} process(es): {per};"
        f" best {best:.1f} jobs/s with the instant provider (target >= {TARGET:.0f}) {verdict}"
    )


def side_by_side(rate: dict[tuple[str, int, str], float], layouts: list[int], labels: list[str]) -> str:
    stores = list(dict.fromkeys(s for s, _, _ in rate))
    rows = []
    for label in labels:
        for n in layouts:
            values = {s: rate.get((s, n, label)) for s in stores}
            ratio = "-"
            with contextlib.suppress(KeyError, TypeError, ZeroDivisionError):
                ratio = f"x{values['PostgreSQL'] / values['SQLite']:.2f}"  # type: ignore[operator]
            rows.append([label, n, *(f"{v:.1f}" if v is not None else "-" for v in values.values()), ratio])
    return c.table(["provider", "processes", *(f"{s} jobs/s" for s in stores), "PostgreSQL / SQLite"], rows)


if __name__ == "__main__":
    asyncio.run(main())
