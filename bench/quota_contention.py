"""Concurrent quota reservations against one SQLite file: reservations/s and overspend.

Run: python bench/quota_contention.py [--users 20] [--limit 150] [--attempts 200] [--tasks 64]

Each attempt is what /imagine does to admit a job. "as is" is the engine's own call, ``Ledger.admit`` with
``JobRepository.admit``: one INSERT of the job row under the write lock, in which the ``jobs_admit``
trigger (migration 0004) checks the allowance and appends the 'reserve' entry; a refusal is explained
with the usual reads. "before" is the shape it replaced, side by side: BEGIN IMMEDIATE, insert the job,
read the used units, append the entry, COMMIT (four or more aiosqlite thread hops under the write lock).
``--users`` members each have ``--limit`` units and get ``--attempts`` one-unit attempts, so about a
quarter are refused near the limit, where overspending would show. Layouts side by side on a fresh file
each: one process with ``--tasks`` tasks, and two processes with half the tasks each (both on the same
file, started together). Overspend = sum over members of max(0, reserved - limit), read back from the
ledger afterwards; it must be 0. "granted/s" counts reservations written; "attempts/s" includes refusals.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import _botproc
import _common as c

from bot.config import QuotaSection
from bot.errors import QuotaExceeded
from bot.jobs.repository import JobRepository
from bot.providers.base import GenerationRequest
from bot.quota import Ledger
from bot.storage import Database

TARGET = 2000.0
GUILD = 1


async def worker_load(
    path: str, users: list[int], limit: int, attempts: int, tasks: int, before: bool = False
) -> dict[str, object]:
    """Run ``tasks`` tasks sharing ``attempts`` one-unit attempts per member; returns counts and latencies."""
    db = await Database(path).open()
    ledger, jobs = Ledger(db, QuotaSection(default_limit=limit)), JobRepository(db)
    request = GenerationRequest(prompt="bench", resolution="1K")
    work = [u for _ in range(attempts) for u in users]
    granted = refused = 0
    latencies: list[float] = []

    async def one(user: int) -> None:
        nonlocal granted, refused
        job = c.one_unit_job(user, GUILD, request)
        started = time.perf_counter()
        try:
            if before:
                async with db.transaction() as conn:
                    await jobs.insert(conn, job)
                    await ledger._ensure_fits(conn, GUILD, user, 1, limit)
                    await ledger._append(conn, GUILD, user, job.id, "reserve", 1, None)
            else:
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

    started = time.perf_counter()
    await asyncio.gather(*(run_task() for _ in range(tasks)))
    elapsed = time.perf_counter() - started
    await db.close()
    return {"granted": granted, "refused": refused, "elapsed": elapsed, "latencies": latencies}


async def overspend(path: str, limit: int) -> tuple[int, int]:
    db = await Database(path).open()
    rows = await db.fetchall(
        "SELECT user_id, SUM(CASE entry WHEN 'reserve' THEN units WHEN 'refund' THEN -units ELSE 0 END)"
        " FROM quota_ledger GROUP BY user_id"
    )
    await db.close()
    return sum(max(0, int(r[1]) - limit) for r in rows), sum(int(r[1]) for r in rows)


async def fresh_db(path: Path) -> str:
    db = await Database(path).open()
    await db.migrate()
    await db.close()
    return str(path)


async def run_layout(tmp: Path, processes: int, args: argparse.Namespace, before: bool) -> dict[str, object]:
    path = await fresh_db(tmp / f"quota-{processes}-{before}.sqlite3")
    users = list(range(1000, 1000 + args.users))
    per = max(1, args.attempts // processes)
    tasks = max(1, args.tasks // processes)
    started = time.perf_counter()
    if processes == 1:
        results = [await worker_load(path, users, args.limit, per, tasks, before)]
    else:
        spawned = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--worker",
                path,
                "--users",
                str(args.users),
                "--limit",
                str(args.limit),
                "--attempts",
                str(per),
                "--tasks",
                str(tasks),
                *[f"--patch={p}" for p in args.patch],
                *(["--before"] if before else []),
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(processes)
        ]
        results = [json.loads((await p.communicate())[0]) for p in spawned]
    wall = time.perf_counter() - started
    over, total = await overspend(path, args.limit)
    granted = sum(int(r["granted"]) for r in results)  # type: ignore[call-overload]
    refused = sum(int(r["refused"]) for r in results)  # type: ignore[call-overload]
    busy = max(float(r["elapsed"]) for r in results)  # type: ignore[arg-type]
    latencies = [x for r in results for x in r["latencies"]]  # type: ignore[attr-defined]
    return {
        "processes": processes,
        "tasks": tasks * processes,
        "granted": granted,
        "refused": refused,
        "granted_s": granted / busy,
        "attempts_s": (granted + refused) / busy,
        "wall": wall,
        "lat": c.summary(latencies),
        "overspend": over,
        "reserved": total,
        "expected": min(args.users * args.limit, args.users * per * processes),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--limit", type=int, default=150)
    parser.add_argument("--attempts", type=int, default=200, help="attempts per member (split across processes)")
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--patch", action="append", default=[], help="proposed fixes from _botproc.py")
    parser.add_argument("--before", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in args.patch:
        _botproc.PATCHES[name]()
    if args.worker:
        users = list(range(1000, 1000 + args.users))
        result = await worker_load(args.worker, users, args.limit, args.attempts, args.tasks, args.before)
        print(json.dumps(result))
        return
    c.header("quota_contention: job insert + allowance check + reservation on one SQLite file (WAL)")
    rows, results = [], []
    with c.workdir("quota") as tmp:
        for before in (False, True):
            for processes in (1, 2):
                results.append(await run_layout(tmp, processes, args, before))
        for r, variant in zip(results, ["as is (trigger)"] * 2 + ["before (4-hop txn)"] * 2, strict=True):
            lat = r["lat"]
            rows.append(
                [
                    variant,
                    r["processes"],
                    r["tasks"],
                    r["granted"],
                    r["refused"],
                    f"{r['granted_s']:.0f}",
                    f"{r['attempts_s']:.0f}",
                    c.ms(lat["median"]),
                    c.ms(lat["p99"]),
                    c.ms(lat["max"]),
                    f"{r['reserved']}/{r['expected']}",
                    r["overspend"],
                ]
            )
    print(
        c.table(
            [
                "code",
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
    rate = [float(r["granted_s"]) for r in results]  # type: ignore[arg-type]
    over = sum(int(r["overspend"]) for r in results)  # type: ignore[call-overload]
    verdict = "PASS" if min(rate[:2]) >= TARGET and over == 0 else "MISS"
    print(
        f"\nSUMMARY quota_contention: {rate[0]:.0f} granted/s in 1 process, {rate[1]:.0f}/s in 2, overspend {over} "
        f"(target >= {TARGET:.0f}/s, 0) {verdict}; before: {rate[2]:.0f}/s and {rate[3]:.0f}/s "
        f"(as is x{rate[0] / rate[2]:.1f}, x{rate[1] / rate[3]:.1f})"
    )


if __name__ == "__main__":
    asyncio.run(main())
