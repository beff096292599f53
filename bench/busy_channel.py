"""N members use /imagine in one channel at the same moment, under Discord's real limits.

Run: python bench/busy_channel.py [--sizes 40,100] [--rounds 1]
     BENCH_BEFORE=/path/to/older/checkout python bench/busy_channel.py   # adds that code's row, same run

The bot is the real ``python -m bot run`` in its own process; the fake Discord applies Discord's limits
(5 messages and 5 edits per 5 s per channel, 5 per 2 s per interaction token, 50 bot-token requests per
second); the provider is the ``local`` one at 1K made instant (``instant_local`` in _botproc.py: each size is drawn
once), so Discord's limits alone set the pace. For each
member it measures, from the moment the commands are dispatched: when their answer became visible (the
card, or the old "Queued" reply) and when their pictures did. It prints the time until every result is
visible, the median and p95 per member, the requests per job by route and token, and the floor that
Discord's limits allow for the requests the bot must make (a thread and a result post per job, bot token).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _common as c

from tests.fakediscord import FakeDiscord

TARGETS = {40: 6.0, 100: 12.0}
GLOBAL_PER_SECOND = 50
BOT_REQUESTS_PER_JOB = 2  # the least a job in a thread needs with the bot token: the thread, the result post


def bots() -> list[tuple[str, str | None]]:
    """(label, checkout) pairs: BENCH_BEFORE first when given, then the code as it is."""
    before = os.environ.get("BENCH_BEFORE")
    return [(f"{Path(before).name} (before)", before), ("as is", None)] if before else [("as is", None)]


def floor_seconds(jobs: int) -> float:
    """Fixed one-second global windows of 50: the last of 2N bot-token requests goes out in window ⌈2N/50⌉."""
    return max(0.0, math.ceil(BOT_REQUESTS_PER_JOB * jobs / GLOBAL_PER_SECOND) - 1.0)


def answered(handle: Any) -> bool:
    """Whether the member sees an answer that is not "thinking…" (the card, or the old "Queued" reply)."""
    return any(not m.loading and (m.content or m.embeds) for m in handle.messages)


async def watch_answers(handles: list[Any], seen: dict[int, float]) -> None:
    """Note when each member's answer first showed (a card's later edits must not count)."""
    while len(seen) < len(handles):
        now = time.time()
        for i, handle in enumerate(handles):
            if i not in seen and answered(handle):
                seen[i] = now
        await asyncio.sleep(0.01)


async def one_round(n: int, root: str | None) -> dict[str, Any]:
    saved = c.BOT_ROOT
    c.BOT_ROOT = Path(root).resolve() if root else saved
    try:
        with c.workdir(f"busy{n}") as tmp:
            async with FakeDiscord(token=c.BOT_TOKEN) as fake:  # Discord's real limits
                world = await c.World(fake).build(users=n)
                channel = world.channels[0]
                settings = c.settings_for(
                    fake, world.guild, tmp, discord={"status_edit_seconds": 5.0, "shutdown_grace_seconds": 0}
                )
                # instant_local: the local provider reuses its drawn PNG, so Pillow's drawing (~40 ms a
                # picture) does not compete with the delivery being measured
                env = {"BENCH_BOT_ROOT": str(c.BOT_ROOT)}
                async with c.bot_process(fake, settings, tmp, env=env, patches=["instant_local"]) as bot:
                    await asyncio.sleep(0.5)  # start-up settles (command sync, READY)
                    since = len(fake.state.rest_log)
                    started = time.time()
                    handles = await asyncio.gather(
                        *(
                            fake.slash_command("imagine", user=user, channel=channel, options={"prompt": f"koala {i}"})
                            for i, user in enumerate(world.users)
                        )
                    )

                    def results() -> dict[str, float]:
                        seen: dict[str, float] = {}
                        for thread in fake.threads(channel):
                            for message in fake.bot_messages(thread):
                                if message.attachments and message.embeds:
                                    fields = {f["name"]: f["value"] for f in message.embeds[0].get("fields", [])}
                                    who = fields.get("Requested by", "")
                                    seen[who] = min(seen.get(who, message.timestamp), message.timestamp)
                        return seen

                    seen: dict[int, float] = {}
                    watcher = asyncio.create_task(watch_answers(handles, seen))
                    await c.poll(lambda: len(results()) >= n, timeout=600)
                    visible = sorted(t - started for t in results().values())
                    await asyncio.wait_for(watcher, timeout=60)
                    answers = sorted(t - started for t in seen.values())
                    cpu = c.cpu_seconds(bot.pid)
                    calls = fake.state.rest_log[since:]
        by_route: Counter[str] = Counter(f"{call.auth:5} {call.route}" for call in calls)
        rate_limited = sum(1 for call in calls if call.status == 429)
        return {"visible": visible, "answers": answers, "by_route": by_route, "429": rate_limited, "cpu": cpu}
    finally:
        c.BOT_ROOT = saved


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="40,100")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    c.header("busy_channel: N members, one channel, Discord's real limits, instant provider")
    rows, routes, verdicts = [], {}, []
    for n in [int(s) for s in args.sizes.split(",")]:
        for label, root in bots():
            visible: list[float] = []
            answers: list[float] = []
            by_route: Counter[str] = Counter()
            limited, cpu = 0, 0.0
            for _ in range(args.rounds):
                r = await one_round(n, root)
                visible += r["visible"]
                answers += r["answers"]
                by_route += r["by_route"]
                limited += r["429"]
                cpu += r["cpu"]
            v, a = c.summary(visible), c.summary(answers)
            rows.append(
                [
                    n,
                    label,
                    f"{v['max']:.1f}",
                    f"{v['median']:.1f}",
                    f"{c.pct(visible, 95):.1f}",
                    f"{a['median']:.2f}",
                    f"{a['max']:.2f}",
                    f"{floor_seconds(n):.1f}",
                    limited,
                    f"{cpu / args.rounds:.1f}",
                ]
            )
            routes[n, label] = {route: count / (n * args.rounds) for route, count in sorted(by_route.items())}
            if label == "as is":
                target = TARGETS.get(n)
                if target is not None:
                    verdicts.append(
                        f"N={n}: all visible in {v['max']:.1f} s (target {target:.0f} s) "
                        f"{'PASS' if v['max'] <= target else 'MISS'}"
                    )
    headers = [
        "N",
        "bot",
        "all visible s",
        "p50 s",
        "p95 s",
        "answer p50 s",
        "answer max s",
        "floor s",
        "429s",
        "bot CPU s",
    ]
    print(c.table(headers, rows))
    for (n, label), per_job in routes.items():
        print(f"\nrequests per job, N={n}, {label} (auth, route):")
        for route, count in per_job.items():
            print(f"  {count:5.2f}  {route}")
    print(f"\nfloor: {BOT_REQUESTS_PER_JOB} bot-token requests per job at {GLOBAL_PER_SECOND}/s global (fixed windows)")
    print("SUMMARY busy_channel: " + "; ".join(verdicts))


if __name__ == "__main__":
    asyncio.run(main())
