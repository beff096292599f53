"""Concurrent quota reservations against one PostgreSQL database: reservations/s and overspend, 1/2/4 processes.

Run: python bench/quota_contention_pg.py [--database URL] [--users 20] [--limit 150] [--attempts 200] [--tasks 64]

The PostgreSQL twin of bench/quota_contention.py. Each attempt is the engine's own call, ``Ledger.admit``
with ``JobRepository.admit``, on ``bot.storage.postgres.PostgresDatabase``: one INSERT of the job row in
which the ``jobs_admit`` trigger (pg_migrations/0004) takes the member's advisory lock, checks the
allowance and appends the 'reserve' entry; a refusal is explained with the usual reads. ``--users``
members each have ``--limit`` units and get ``--attempts`` one-unit attempts, so about a quarter are
refused near the limit, where overspending would show. Layouts side by side, each on a fresh database
(CREATE DATABASE on the server of ``--database``, dropped afterwards): 1, 2 and 4 processes sharing
``--tasks`` tasks, each process with its own pool; then the same with a bot-wide daily cap set (every
capped reservation takes the bot-wide lock exclusively, so all of them queue on it). Overspend = sum over
members of max(0, reserved - limit), plus the daily cap's excess, read back from the ledger afterwards;
it must be 0. "granted/s" counts reservations written over the slowest process's busy time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import _common as c

from bot.config import QuotaSection
from bot.errors import QuotaExceeded
from bot.jobs.repository import JobRepository
from bot.providers.base import GenerationRequest
from bot.quota import Ledger
from bot.storage.postgres import PostgresDatabase, redact_url
from tests.pg import DEFAULT_URL, ENV, throwaway_database

TARGET = 2000.0
GUILD = 1


async def worker_load(url: str, users: list[int], limit: int, cap: int, attempts: int, tasks: int) -> dict[str, object]:
    """Run ``tasks`` tasks sharing ``attempts`` one-unit attempts per member; returns counts and latencies."""
    db = await PostgresDatabase(url, min_size=min(tasks, 16), max_size=min(tasks, 16)).open()
    ledger = Ledger(db, QuotaSection(default_limit=limit, global_daily_cap=cap))
    jobs = JobRepository(db)
    request = GenerationRequest(prompt="bench", resolution="1K")
    work = [u for _ in range(attempts) for u in users]
    granted = refused = 0
    latencies: list[float] = []

    async def one(user: int) -> None:
        nonlocal granted, refused
        job = c.one_unit_job(user, GUILD, request)
        started = time.perf_counter()
        try:
            await ledger.admit(
                lambda admission: jobs.admit(job, admission), guild_id=GUILD, user_id=user, units=1, limit=limit
            )
            granted += 1
        except QuotaExceeded:
            refused += 1
        latencies.append(time.perf_counter() - started)

    async def run_task() -> None:
        while work:
            await one(work.pop())

    await ledger.window_for(GUILD)  # warm the window cache and the pool, as a running bot has
    started = time.perf_counter()
    await asyncio.gather(*(run_task() for _ in range(tasks)))
    elapsed = time.perf_counter() - started
    await db.close()
    return {"granted": granted, "refused": refused, "elapsed": elapsed, "latencies": latencies}


async def overspend(url: str, limit: int, cap: int) -> tuple[int, int]:
    async with PostgresDatabase(url) as db:
        rows = await db.fetchall(
            "SELECT user_id, SUM(CASE entry WHEN 'reserve' THEN units WHEN 'refund' THEN -units ELSE 0 END)"
            " FROM quota_ledger GROUP BY user_id"
        )
    total = sum(int(r[1]) for r in rows)
    over = sum(max(0, int(r[1]) - limit) for r in rows)
    return over + (max(0, total - cap) if cap else 0), total


async def run_layout(server: str, processes: int, cap: int, args: argparse.Namespace) -> dict[str, object]:
    users = list(range(1000, 1000 + args.users))
    per = max(1, args.attempts // processes)
    tasks = max(1, args.tasks // processes)
    async with throwaway_database(server) as url:
        async with PostgresDatabase(url) as db:
            await db.migrate()
        started = time.perf_counter()
        if processes == 1:
            results = [await worker_load(url, users, args.limit, cap, per, tasks)]
        else:
            spawned = [
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--worker",
                    url,
                    "--users",
                    str(args.users),
                    "--limit",
                    str(args.limit),
                    "--cap",
                    str(cap),
                    "--attempts",
                    str(per),
                    "--tasks",
                    str(tasks),
                    stdout=asyncio.subprocess.PIPE,
                )
                for _ in range(processes)
            ]
            results = [json.loads((await p.communicate())[0]) for p in spawned]
        wall = time.perf_counter() - started
        over, total = await overspend(url, args.limit, cap)
    granted = sum(int(r["granted"]) for r in results)  # type: ignore[call-overload]
    refused = sum(int(r["refused"]) for r in results)  # type: ignore[call-overload]
    busy = max(float(r["elapsed"]) for r in results)  # type: ignore[arg-type]
    latencies = [x for r in results for x in r["latencies"]]  # type: ignore[attr-defined]
    allowed = min(args.users * args.limit, args.users * per * processes)
    return {
        "processes": processes,
        "tasks": tasks * processes,
        "cap": cap,
        "granted": granted,
        "refused": refused,
        "granted_s": granted / busy,
        "attempts_s": (granted + refused) / busy,
        "wall": wall,
        "lat": c.summary(latencies),
        "overspend": over,
        "reserved": total,
        "expected": min(allowed, cap) if cap else allowed,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default=os.environ.get(ENV, DEFAULT_URL), help=f"server URL (env {ENV})")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--limit", type=int, default=150)
    parser.add_argument("--attempts", type=int, default=200, help="attempts per member (split across processes)")
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--cap", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        users = list(range(1000, 1000 + args.users))
        result = await worker_load(args.worker, users, args.limit, args.cap, args.attempts, args.tasks)
        print(json.dumps(result))
        return
    c.header(
        f"quota_contention_pg: job insert + allowance check + reservation on PostgreSQL ({redact_url(args.database)})"
    )
    layouts = [int(n) for n in args.processes.split(",")]
    # With a cap of 60 % of what the members may spend, the bot-wide cap refuses the last 40 %.
    daily_cap = int(args.users * args.limit * 0.6)
    results = []
    for cap in (0, daily_cap):
        for processes in layouts:
            results.append(await run_layout(args.database, processes, cap, args))
    rows = []
    for r in results:
        lat = r["lat"]
        rows.append(
            [
                f"daily cap {r['cap']}" if r["cap"] else "no daily cap",
                r["processes"],
                r["tasks"],
                r["granted"],
                r["refused"],
                f"{r['granted_s']:.0f}",
                f"{r['attempts_s']:.0f}",
                c.ms(lat["median"]),  # type: ignore[index]
                c.ms(lat["p99"]),  # type: ignore[index]
                c.ms(lat["max"]),  # type: ignore[index]
                f"{r['reserved']}/{r['expected']}",
                r["overspend"],
            ]
        )
    print(
        c.table(
            [
                "rule",
                "processes",
                "tasks",
                "granted",
                "refused",
                "granted/s",
                "attempts/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "reserved/allowed",
                "overspend",
            ],
            rows,
        )
    )
    uncapped = [float(r["granted_s"]) for r in results if not r["cap"]]  # type: ignore[arg-type]
    capped = [float(r["granted_s"]) for r in results if r["cap"]]  # type: ignore[arg-type]
    over = sum(int(r["overspend"]) for r in results)  # type: ignore[call-overload]
    verdict = "PASS" if min(uncapped) >= TARGET and over == 0 else "MISS"
    shown = ", ".join(f"{rate:.0f}/s in {n}" for rate, n in zip(uncapped, layouts, strict=True))
    shown_capped = ", ".join(f"{rate:.0f}/s in {n}" for rate, n in zip(capped, layouts, strict=True))
    print(
        f"\nSUMMARY quota_contention_pg: granted {shown} process(es), overspend {over} "
        f"(target >= {TARGET:.0f}/s, 0) {verdict}; with a bot-wide daily cap: {shown_capped}"
    )


if __name__ == "__main__":
    asyncio.run(main())
