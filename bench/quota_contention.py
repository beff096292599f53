"""Concurrent quota reservations on SQLite and on PostgreSQL, 1, 2 and 4 processes: reservations/s and overspend.

Run: python bench/quota_contention.py [--database PATH_OR_URL ...] [--processes 1,2,4] [--users 20] [--limit 150]
                                      [--attempts 200] [--tasks 64] [--rules none,cap] [--rounds 3]

Each attempt is what /imagine does to admit a job: the engine's own call, ``Ledger.admit`` with
``JobRepository.admit``. One INSERT of the job row, in which the ``jobs_admit`` trigger (migration 0004 on
either store) checks the allowance and appends the 'reserve' entry: under SQLite's write lock, or under the
member's advisory lock on PostgreSQL. A refusal is explained with the usual reads.

``--database`` (repeatable) names the stores side by side: a SQLite file path (a fresh file next to it per
layout, removed afterwards) or a ``postgresql://`` server URL (a throwaway database per layout: CREATE
DATABASE, dropped afterwards). The default is both: a SQLite file in a temporary folder and the server of
``TEST_POSTGRES_URL`` (else postgresql://postgres@127.0.0.1:5432/test); a server that does not answer is
left out with a line saying why.

``--users`` members each have ``--limit`` units and get ``--attempts`` one-unit attempts, so about a quarter
are refused near the limit, where overspending would show. Every layout runs in separate processes (1, 2 or
4; ``--tasks`` tasks split between them), each opening its own store connection (SQLite) or pool
(PostgreSQL), and all start together once each is connected. The "cap" rule repeats the layouts with a
bot-wide daily cap of 60 % of what the members may spend (every capped reservation then also takes the
bot-wide lock). Overspend = sum over members of max(0, reserved - limit), plus the daily cap's excess, read
back from the ledger afterwards; it must be 0. "granted/s" counts reservations written over the slowest
process's busy time; "attempts/s" includes refusals. Without a daily cap each layout runs ``--rounds`` times
(the stores alternating within each round) and the table shows the median and the range; the capped layouts
run once (they are there for the overspend under the bot-wide lock, not for speed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import _botproc
import _common as c

from bot.config import QuotaSection
from bot.errors import QuotaExceeded
from bot.jobs.repository import JobRepository
from bot.providers.base import GenerationRequest
from bot.quota import Ledger
from bot.storage import Database, PostgresDatabase, Store, is_postgres_url

TARGET = 2000.0
GUILD = 1


def open_store(database: str, tasks: int) -> Store:
    """This process's own store: a SQLite connection, or a pool with a connection per task (up to 16)."""
    if is_postgres_url(database):
        return PostgresDatabase(database, min_size=min(tasks, 16), max_size=min(tasks, 16))
    return Database(database)


async def worker_load(database: str, args: argparse.Namespace) -> dict[str, object]:
    """One process: connect, say ready, wait for "go" on stdin, run ``args.tasks`` tasks; returns counts."""
    db = await open_store(database, args.tasks).open()
    ledger = Ledger(db, QuotaSection(default_limit=args.limit, global_daily_cap=args.cap))
    jobs = JobRepository(db)
    request = GenerationRequest(prompt="bench", resolution="1K")
    users = list(range(1000, 1000 + args.users))
    work = [u for _ in range(args.attempts) for u in users]
    granted = refused = 0
    latencies: list[float] = []

    async def one(user: int) -> None:
        nonlocal granted, refused
        job = c.one_unit_job(user, GUILD, request)
        started = time.perf_counter()
        try:
            await ledger.admit(
                lambda admission: jobs.admit(job, admission), guild_id=GUILD, user_id=user, units=1, limit=args.limit
            )
            granted += 1
        except QuotaExceeded:
            refused += 1
        latencies.append(time.perf_counter() - started)

    async def run_task() -> None:
        while work:
            await one(work.pop())

    await ledger.window_for(GUILD)  # warm the window cache and the connection, as a running bot has
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    started = time.perf_counter()
    await asyncio.gather(*(run_task() for _ in range(args.tasks)))
    elapsed = time.perf_counter() - started
    await db.close()
    return {"granted": granted, "refused": refused, "elapsed": elapsed, "latencies": latencies}


async def overspend(db: Store, limit: int, cap: int) -> tuple[int, int]:
    rows = await db.fetchall(
        "SELECT user_id, SUM(CASE entry WHEN 'reserve' THEN units WHEN 'refund' THEN -units ELSE 0 END)"
        " FROM quota_ledger GROUP BY user_id"
    )
    total = sum(int(r[1]) for r in rows)
    over = sum(max(0, int(r[1]) - limit) for r in rows)
    return over + (max(0, total - cap) if cap else 0), total


async def run_layout(database: str, processes: int, cap: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    per = max(1, args.attempts // processes)
    tasks = max(1, args.tasks // processes)
    async with c.fresh_store(database, tmp, f"p{processes}-cap{cap}") as store:
        worker_args = ["--users", str(args.users), "--limit", str(args.limit), "--cap", str(cap)]
        worker_args += ["--attempts", str(per), "--tasks", str(tasks), *[f"--patch={p}" for p in args.patch]]
        spawned = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--worker",
                store,
                *worker_args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(processes)
        ]
        for process in spawned:  # every process connected before any starts
            assert process.stdout is not None
            line = await process.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError(f"a worker did not start: {line!r}")
        started = time.perf_counter()
        for process in spawned:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
        results = [json.loads((await p.communicate())[0]) for p in spawned]
        wall = time.perf_counter() - started
        db = await open_store(store, 1).open()
        try:
            over, total = await overspend(db, args.limit, cap)
        finally:
            await db.close()
    granted = sum(int(r["granted"]) for r in results)
    refused = sum(int(r["refused"]) for r in results)
    busy = max(float(r["elapsed"]) for r in results)
    allowed = min(args.users * args.limit, args.users * per * processes)
    return {
        "store": c.store_name(database),
        "processes": processes,
        "tasks": tasks * processes,
        "cap": cap,
        "granted": granted,
        "refused": refused,
        "granted_s": granted / busy,
        "attempts_s": (granted + refused) / busy,
        "wall": wall,
        "latencies": [x for r in results for x in r["latencies"]],
        "overspend": over,
        "reserved": total,
        "expected": min(allowed, cap) if cap else allowed,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    c.database_option(parser)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--limit", type=int, default=150)
    parser.add_argument("--attempts", type=int, default=200, help="attempts per member (split across processes)")
    parser.add_argument("--tasks", type=int, default=64, help="concurrent tasks (split across processes)")
    parser.add_argument("--rules", default="none,cap", help="none: no daily cap; cap: a bot-wide daily cap")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the layouts without a daily cap")
    parser.add_argument("--cap", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--patch", action="append", default=[], help="proposed fixes from _botproc.py")
    args = parser.parse_args()
    for name in args.patch:
        _botproc.PATCHES[name]()
    if args.worker:
        print(json.dumps(await worker_load(args.worker, args)))
        return

    c.header("quota_contention: job insert + allowance check + reservation, SQLite and PostgreSQL side by side")
    layouts = [int(n) for n in args.processes.split(",")]
    daily_cap = int(args.users * args.limit * 0.6)  # the bot-wide cap refuses the last 40 %
    caps = [{"none": 0, "cap": daily_cap}[rule] for rule in args.rules.split(",")]
    stores = await c.usable_stores(args.database)
    runs: dict[tuple[int, int, str], list[dict[str, Any]]] = {}
    with c.workdir("quota") as tmp:
        for round_ in range(args.rounds):
            for cap in caps:
                if cap and round_:
                    continue
                for processes in layouts:
                    for database in stores:  # the stores alternate, so a noisy moment hits both
                        runs.setdefault((cap, processes, database), []).append(
                            await run_layout(database, processes, cap, args, tmp)
                        )
    results = [merged(rounds) for rounds in runs.values()]
    print(c.table(HEADERS, [row(r) for r in results]))
    print()
    print(side_by_side(results, layouts, caps))
    print("\n" + summary_line(results, layouts))


def merged(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One layout's rounds: the median rates (and their range), latencies pooled, the worst overspend."""
    first = rounds[0]
    rates = sorted(r["granted_s"] for r in rounds)
    return {
        **first,
        "granted_s": statistics.median(rates),
        "range": (rates[0], rates[-1]),
        "rounds": len(rounds),
        "attempts_s": statistics.median(r["attempts_s"] for r in rounds),
        "lat": c.summary([x for r in rounds for x in r["latencies"]]),
        "overspend": max(r["overspend"] for r in rounds),
        "reserved": max(r["reserved"] for r in rounds),
    }


HEADERS = [
    "store",
    "rule",
    "processes",
    "rounds",
    "tasks",
    "granted",
    "refused",
    "granted/s (median)",
    "range",
    "attempts/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "reserved/allowed",
    "overspend",
]


def row(r: dict[str, Any]) -> list[object]:
    lat = r["lat"]
    return [
        r["store"],
        f"daily cap {r['cap']}" if r["cap"] else "no daily cap",
        r["processes"],
        r["rounds"],
        r["tasks"],
        r["granted"],
        r["refused"],
        f"{r['granted_s']:.0f}",
        f"{r['range'][0]:.0f}-{r['range'][1]:.0f}",
        f"{r['attempts_s']:.0f}",
        c.ms(lat["median"]),
        c.ms(lat["p99"]),
        c.ms(lat["max"]),
        f"{r['reserved']}/{r['expected']}",
        r["overspend"],
    ]


def side_by_side(results: list[dict[str, Any]], layouts: list[int], caps: list[int]) -> str:
    """granted/s per layout, one column per store, and PostgreSQL over SQLite where both ran."""
    stores = list(dict.fromkeys(r["store"] for r in results))
    rows = []
    for cap in caps:
        for processes in layouts:
            rate = {r["store"]: r["granted_s"] for r in results if r["cap"] == cap and r["processes"] == processes}
            ratio = f"x{rate['PostgreSQL'] / rate['SQLite']:.2f}" if len(rate) == 2 else "-"
            label = f"daily cap {cap}" if cap else "no daily cap"
            rows.append([label, processes, *(f"{rate.get(s, float('nan')):.0f}" for s in stores), ratio])
    return c.table(["rule", "processes", *(f"{s} granted/s" for s in stores), "PostgreSQL / SQLite"], rows)


def summary_line(results: list[dict[str, Any]], layouts: list[int]) -> str:
    over = sum(int(r["overspend"]) for r in results)
    parts, rates = [], []
    for store in dict.fromkeys(r["store"] for r in results):
        uncapped = [r for r in results if r["store"] == store and not r["cap"]]
        rates += [r["granted_s"] for r in uncapped]
        parts.append(f"{store} " + ", ".join(f"{r['granted_s']:.0f}/s in {r['processes']}" for r in uncapped))
    verdict = "PASS" if rates and min(rates) >= TARGET and over == 0 else "MISS"
    return (
        f"SUMMARY quota_contention: granted {'; '.join(parts)} process(es) without a daily cap; overspend {over}"
        f" (target >= {TARGET:.0f}/s on either store, 0) {verdict}"
    )


if __name__ == "__main__":
    asyncio.run(main())
