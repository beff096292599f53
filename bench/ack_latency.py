"""N concurrent /imagine through the fake gateway: INTERACTION_CREATE on the wire -> callback received.

Run: python bench/ack_latency.py [--sizes 50,200,500] [--rounds 3] [--patch NAME]

The bot is the real ``python -m bot run`` in its own process (in production Discord is elsewhere; run in
this process it would be charged for the fake's work). N commands from 50 members in one channel are
dispatched at once; the latency is the fake's own clock from the frame leaving its websocket to the
callback POST arriving (``InteractionHandle.ack_latency``). The jobs really run (local provider, 1K), so
later acknowledgements compete with earlier commands' policy checks, queueing and status messages.
Each size runs ``--rounds`` times on a fresh fake, bot and database, alternating the code as it is,
the code before the acknowledge-first gate (``no_ack_first`` in _botproc.py) and the floor (``ack_only``:
/imagine returns right after its defer); percentiles are over all rounds' samples, ratios are x / as is.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
from pathlib import Path
from typing import Any

import _common as c

from tests.fakediscord import FakeDiscord

TARGET_P99 = 0.100


async def one_round(n: int, patches: list[str], root: str | None = None) -> dict[str, Any]:
    saved = c.BOT_ROOT
    c.BOT_ROOT = Path(root).resolve() if root else saved
    try:
        return await _one_round(n, patches)
    finally:
        c.BOT_ROOT = saved


async def _one_round(n: int, patches: list[str]) -> dict[str, Any]:
    with c.workdir(f"ack{n}") as tmp:
        async with FakeDiscord(token=c.BOT_TOKEN, discord_limits=False) as fake:  # figures measured with generic limits
            world = await c.World(fake).build(users=50)
            settings = c.settings_for(
                fake, world.guild, tmp, discord={"status_edit_seconds": 5.0, "shutdown_grace_seconds": 0}
            )
            async with c.bot_process(fake, settings, tmp, patches=patches):
                await asyncio.sleep(0.5)  # let start-up settle (command sync, READY)
                # A full collection in the fake's process (40-90 ms with this much state) would stall every
                # callback in flight and be counted as the bot's latency; real Discord has no such pause.
                gc.collect()
                gc.freeze()
                handles = await asyncio.gather(
                    *(
                        fake.slash_command(
                            "imagine",
                            user=world.users[i % len(world.users)],
                            channel=world.channels[0],
                            options={"prompt": f"a koala number {i}"},
                        )
                        for i in range(n)
                    )
                )
                await c.poll(lambda: all(h.callback_at is not None for h in handles), timeout=30)
                gc.unfreeze()
                spread = max(h.dispatched_at for h in handles) - min(h.dispatched_at for h in handles)
    refused = sum(1 for h in handles for a in h.attempts if a.status >= 400)
    return {"acks": [h.ack_latency for h in handles], "refused": refused, "spread": spread}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="50,200,500")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--patch", action="append", default=None, help="proposed fixes from _botproc.py")
    args = parser.parse_args()
    variants: dict[str, list[str]] = {"as is": []}
    roots: dict[str, str | None] = {}
    before = os.environ.get("BENCH_BEFORE")  # an older checkout, measured in the same run
    if before:
        variants["+before"] = []
        roots["+before"] = before
    if args.patch is not None:
        variants["+" + "+".join(args.patch)] = args.patch
    elif not before:  # the code before cogs/ackfirst.py, and the floor: a command that only defers
        variants |= {"+no_ack_first": ["no_ack_first"], "+ack_only": ["ack_only"]}
    c.header("ack_latency: N concurrent /imagine, bot in its own process")
    rows, result = [], {}
    for n in [int(s) for s in args.sizes.split(",")]:
        acks: dict[str, list[float]] = {label: [] for label in variants}
        refused, spread = 0, []
        for _ in range(args.rounds):
            for label, patches in variants.items():
                r = await one_round(n, patches, roots.get(label))
                acks[label] += r["acks"]
                refused += r["refused"]
                spread.append(r["spread"])
        base = c.summary(acks["as is"])
        for label, samples in acks.items():
            s = c.summary(samples)
            result[n, label] = s
            rows.append(
                [
                    n,
                    label,
                    c.ms(s["median"]),
                    c.ms(s["p99"]),
                    c.ms(s["max"]),
                    f"x{s['p99'] / base['p99']:.2f}",
                    c.ms(max(spread)),
                    refused,
                ]
            )
    print(c.table(["N", "bot", "ack p50 ms", "ack p99 ms", "ack max ms", "p99 vs as is", "burst ms", "refused"], rows))
    n = max(k[0] for k in result)
    now = result[n, "as is"]
    verdict = "PASS" if now["p99"] < TARGET_P99 else "MISS"
    others = "; ".join(f"{c.ms(result[n, label]['p99'])} ms with {label[1:]}" for label in list(variants)[1:])
    print(
        f"\nSUMMARY ack_latency: p99 {c.ms(now['p99'])} ms at N={n} (target < {c.ms(TARGET_P99)} ms) {verdict}; "
        f"{others}; Discord allows 3000 ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
