"""Concurrent quota reservations against one SQLite file: reservations/s and overspend.

Run: python bench/quota_contention.py [--users 20] [--limit 150] [--attempts 200] [--tasks 64]

Each attempt is what /imagine does under the write lock: one BEGIN IMMEDIATE transaction that inserts the
job row and calls ``Ledger.reserve`` (allowance check + 'reserve' entry); a refusal (AllowanceExceeded)
rolls back. ``--users`` members each have ``--limit`` units and get ``--attempts`` one-unit attempts, so
about a quarter are refused near the limit, where overspending would show. Layouts side by side on a
fresh file each: one process with ``--tasks`` tasks, and two processes with half the tasks each (both on
the same file, started together); each for the code as it is (``Database.transaction()`` +
``JobRepository.insert`` + ``Ledger.reserve``: about 11 aiosqlite thread hops under the write lock) and
for the proposed one-hop transaction (the same SQL run by one function on the database thread).
Overspend = sum over members of max(0, reserved - limit), read back from the ledger afterwards; it
must be 0. "granted/s" counts reservations written; "attempts/s" includes refusals. ``--patch NAME``
applies a proposed fix from _botproc.py to the "as is" rows (e.g. ``one_hop``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import _botproc
import _common as c

from bot.config import QuotaSection
from bot.errors import QuotaExceeded
from bot.jobs.models import Job, JobState, new_job_id
from bot.jobs.repository import JobRepository
from bot.providers.base import GenerationRequest
from bot.quota import Ledger
from bot.storage import Database

TARGET = 2000.0
GUILD = 1


def one_hop_transaction(ledger: Ledger, job: Job, limit: int) -> Callable[[sqlite3.Connection], bool]:
    """The proposed shape: BEGIN IMMEDIATE, job insert, allowance check + append, COMMIT in one DB-thread call."""
    options = json.dumps(job.request.model_dump(mode="json", exclude={"references"}))

    def run(db: sqlite3.Connection) -> bool:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO jobs (id, kind, requester_id, guild_id, channel_id, provider, options, state, cost_units,"
                " delivery, parent_job_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.kind,
                    job.requester_id,
                    job.guild_id,
                    job.channel_id,
                    job.provider,
                    options,
                    job.state.value,
                    job.cost_units,
                    "{}",
                    None,
                    job.created_at,
                    job.updated_at,
                ),
            )
            ok = _botproc.reserve_sync(
                ledger, db, guild_id=job.guild_id, user_id=job.requester_id, job_id=job.id, units=1, limit=limit
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT" if ok else "ROLLBACK")
        return ok

    return run


async def worker_load(
    path: str, users: list[int], limit: int, attempts: int, tasks: int, one_hop: bool = False
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
        now = time.time()
        job = Job(
            id=new_job_id(),
            kind="imagine",
            requester_id=user,
            guild_id=GUILD,
            channel_id=1,
            provider="local",
            request=request,
            state=JobState.QUEUED,
            cost_units=1,
            created_at=now,
            updated_at=now,
        )
        started = time.perf_counter()
        if one_hop:
            async with db._write_lock:
                ok = await db.conn._execute(one_hop_transaction(ledger, job, limit), db.conn._conn)
            granted, refused = granted + ok, refused + (not ok)
            latencies.append(time.perf_counter() - started)
            return
        try:
            async with db.transaction() as conn:
                await jobs.insert(conn, job)
                await ledger.reserve(conn, guild_id=GUILD, user_id=user, job_id=job.id, units=1, limit=limit)
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


async def run_layout(tmp: Path, processes: int, args: argparse.Namespace, one_hop: bool) -> dict[str, object]:
    path = await fresh_db(tmp / f"quota-{processes}-{one_hop}.sqlite3")
    users = list(range(1000, 1000 + args.users))
    per = max(1, args.attempts // processes)
    tasks = max(1, args.tasks // processes)
    started = time.perf_counter()
    if processes == 1:
        results = [await worker_load(path, users, args.limit, per, tasks, one_hop)]
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
                *(["--one-hop"] if one_hop else []),
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
    parser.add_argument("--one-hop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in args.patch:
        _botproc.PATCHES[name]()
    if args.worker:
        users = list(range(1000, 1000 + args.users))
        result = await worker_load(args.worker, users, args.limit, args.attempts, args.tasks, args.one_hop)
        print(json.dumps(result))
        return
    c.header("quota_contention: BEGIN IMMEDIATE job insert + Ledger.reserve on one SQLite file (WAL)")
    rows, results = [], []
    with c.workdir("quota") as tmp:
        for one_hop in (False, True):
            for processes in (1, 2):
                results.append(await run_layout(tmp, processes, args, one_hop))
        for r, variant in zip(results, ["as is"] * 2 + ["one-hop txn (proposed)"] * 2, strict=True):
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
    proposed = "PASS" if min(rate[2:]) >= TARGET and over == 0 else "MISS"
    print(
        f"\nSUMMARY quota_contention: {rate[0]:.0f} granted/s in 1 process, {rate[1]:.0f}/s in 2, overspend {over} "
        f"(target >= {TARGET:.0f}/s, 0) {verdict}; one-hop transaction {rate[2]:.0f}/s and {rate[3]:.0f}/s "
        f"(x{rate[2] / rate[0]:.1f}, x{rate[3] / rate[1]:.1f}) {proposed}"
    )


if __name__ == "__main__":
    asyncio.run(main())
