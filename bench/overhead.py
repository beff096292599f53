"""The same 100 jobs (1 and 4 images, 2K) run (a) by a minimal script and (b) through the whole bot.

Run: python bench/overhead.py [--jobs 100] [--rounds 2] [--concurrency 4]

(a) ``--direct``: a few lines of aiohttp in their own process: POST the fake Novita (synchronous API,
answers with result links), stream each image to disk, POST one multipart message with the files to the
fake Discord. (b) the real ``python -m bot run`` in its own process: /imagine with provider novita,
count 1 or 4, 2K; policy, queue, ledger, status message, thread, status edits, downloads with checks
(size cap, hash, PNG chunk check), upload planning, result post, state writes. Both run 4 jobs at a time
(the bot's default ``workers`` and the provider's ``max_concurrent``), into a boost-tier-2 server (50 MiB uploads), so a
4-image job is one message in both. The fake Novita serves a
photo-like 2048x2048 PNG (about 4 MB, like Seedream's) made once, so it costs nothing per image. Rounds
alternate (a) and (b) on fresh fakes; ratios are (b)/(a) of the medians over all rounds.
Service time = the job's own time (a: from getting a slot to the upload answered; b: started_at to
finished_at); batch = first job submitted to last job finished. Beside the bot as is, by default: the bot
without status message, thread and status edits (``no_status``) and also without the image check
(``no_checks``), the work the minimal script leaves out, so each floor is measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c
import aiohttp
import aiosqlite

from tests.fakediscord import FakeDiscord

TARGET = 1.05


def counts(jobs: int) -> list[int]:
    return [1 if i % 2 == 0 else 4 for i in range(jobs)]


async def direct_client(cfg: dict[str, Any]) -> dict[str, Any]:
    """(a): the least a script must do per job: create, download (streamed to disk), upload."""
    slots = asyncio.Semaphore(cfg["concurrency"])
    auth = {"Authorization": f"Bearer {cfg['novita_key']}"}
    bot_auth = {"Authorization": f"Bot {cfg['token']}"}
    spans: dict[int, list[float]] = {1: [], 4: []}
    with tempfile.TemporaryDirectory(prefix="bench-direct-") as tmp:
        return await _direct_jobs(cfg, Path(tmp), slots, auth, bot_auth, spans)


async def _direct_jobs(
    cfg: dict[str, Any],
    folder: Path,
    slots: asyncio.Semaphore,
    auth: dict[str, str],
    bot_auth: dict[str, str],
    spans: dict[int, list[float]],
) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:

        async def download(url: str, path: Path) -> Path:
            async with session.get(url) as response:
                response.raise_for_status()
                with path.open("wb") as handle:
                    async for chunk in response.content.iter_chunked(64 * 1024):
                        handle.write(chunk)
            return path

        async def job(i: int, count: int) -> None:
            async with slots:
                started = time.perf_counter()
                body: dict[str, Any] = {"prompt": f"a koala number {i}", "size": "2048x2048", "watermark": False}
                if count > 1:
                    body["sequential_image_generation"] = "auto"
                    body["sequential_image_generation_options"] = {"max_images": count}
                else:
                    body["sequential_image_generation"] = "disabled"
                async with session.post(f"{cfg['novita']}/v3/seedream-4.5", json=body, headers=auth) as response:
                    urls = (await response.json())["images"]
                paths = await asyncio.gather(*(download(url, folder / f"{i}-{k}.png") for k, url in enumerate(urls)))
                url = f"{cfg['api']}/channels/{cfg['channel']}/messages"
                await post_within_rate_limit(session, url, form_for, paths, i, bot_auth)
                spans[count].append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(job(i, n) for i, n in enumerate(counts(cfg["jobs"]))))
        batch = time.perf_counter() - started
    return {"spans": spans, "batch": batch}


def form_for(paths: list[Path], i: int) -> tuple[aiohttp.FormData, list[Any]]:
    form = aiohttp.FormData()
    attachments = [{"id": k, "filename": p.name} for k, p in enumerate(paths)]
    form.add_field(
        "payload_json", json.dumps({"content": f"job {i}", "attachments": attachments}), content_type="application/json"
    )
    handles = [p.open("rb") for p in paths]
    for k, (path, handle) in enumerate(zip(paths, handles, strict=True)):
        form.add_field(f"files[{k}]", handle, filename=path.name, content_type="image/png")
    return form, handles


async def post_within_rate_limit(
    session: aiohttp.ClientSession, url: str, make: Any, paths: list[Path], i: int, auth: dict[str, str]
) -> None:
    """The script obeys Discord's rate limit too: on a 429 it waits ``retry_after`` and sends again."""
    while True:
        form, handles = make(paths, i)
        try:
            async with session.post(url, data=form, headers=auth) as response:
                if response.status == 429:
                    await asyncio.sleep(float((await response.json())["retry_after"]))
                    continue
                response.raise_for_status()
                return
        finally:
            for handle in handles:
                handle.close()


async def run_direct(novita: c.PhotoNovita, jobs: int, concurrency: int) -> dict[str, Any]:
    async with FakeDiscord(token=c.BOT_TOKEN, discord_limits=False) as fake:  # like run_bot below
        world = await c.World(fake).build(users=1, premium_tier=2)
        cfg = {
            "novita": novita.base_url,
            "novita_key": novita.api_key,
            "api": fake.api_base,
            "token": fake.token,
            "channel": world.channels[0].id,
            "jobs": jobs,
            "concurrency": concurrency,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--direct", json.dumps(cfg), stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        result = json.loads(out)
        result["spans"] = {int(k): v for k, v in result["spans"].items()}
        posted = [m for m in fake.bot_messages(world.channels[0]) if m.attachments]
        result["images"] = sum(len(m.attachments) for m in posted)
    return result


async def run_bot(
    novita: c.PhotoNovita, jobs: int, concurrency: int, patches: list[str], rate_limit: int = 50
) -> dict[str, Any]:
    with c.workdir("overhead") as tmp:
        async with FakeDiscord(token=c.BOT_TOKEN, rate_limit=rate_limit, discord_limits=False) as fake:
            world = await c.World(fake).build(users=10, premium_tier=2)
            settings = c.settings_for(
                fake,
                world.guild,
                tmp,
                discord={"status_edit_seconds": 5.0, "shutdown_grace_seconds": 0},
                generation={"workers": concurrency, "default_provider": "novita"},
                providers={"novita": c.novita_provider(novita, concurrency)},
            )
            async with c.bot_process(fake, settings, tmp, env=c.NOVITA_ENV, patches=patches):
                await asyncio.sleep(0.5)
                submitted = time.time()
                await asyncio.gather(
                    *(
                        fake.slash_command(
                            "imagine",
                            user=world.users[i % 10],
                            channel=world.channels[0],
                            options={"prompt": f"a koala number {i}", "count": n, "resolution": "2K"},
                        )
                        for i, n in enumerate(counts(jobs))
                    )
                )
                async with aiosqlite.connect(settings.storage.database) as conn:
                    sql = "SELECT COUNT(*) FROM jobs WHERE state IN ('done', 'failed', 'cancelled')"
                    deadline = time.monotonic() + 110
                    while time.monotonic() < deadline:
                        async with conn.execute(sql) as cursor:
                            if (await cursor.fetchone())[0] >= jobs:
                                break
                        await asyncio.sleep(0.05)
                    async with conn.execute(
                        "SELECT json_extract(options, '$.count'), finished_at - started_at, finished_at, state"
                        " FROM jobs"
                    ) as cursor:
                        rows = list(await cursor.fetchall())
            places = [world.channels[0], *fake.threads(world.channels[0])]  # no_status posts in the channel
            images = sum(len(m.attachments) for place in places for m in fake.bot_messages(place))
    spans: dict[int, list[float]] = {1: [], 4: []}
    for count, span, _, state in rows:
        if state == "done":
            spans[int(count)].append(span)
    return {"spans": spans, "batch": max(r[2] or 0 for r in rows) - submitted, "images": images}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--direct", help=argparse.SUPPRESS)
    parser.add_argument("--patch", action="append", default=None, help="proposed fixes from _botproc.py")
    args = parser.parse_args()
    if args.direct:
        print(json.dumps(await direct_client(json.loads(args.direct))))
        return
    # Default comparison: the floors, i.e. the bot without what the minimal script does not do at all (the
    # status message, thread and status edits; the image check), to show what each costs here.
    variants = [args.patch] if args.patch is not None else [["no_status"], ["no_status", "no_checks"]]
    labels = {"bot +" + "+".join(patches): patches for patches in variants}
    c.header(f"overhead: {args.jobs} jobs (half 1, half 4 images, 2K, ~4 MB PNGs), {args.concurrency} at a time")
    c.photo_png(2048, 2048)
    runs: dict[str, list[dict[str, Any]]] = {"(a) minimal": [], "(b) bot as is": [], **{k: [] for k in labels}}
    async with c.PhotoNovita() as novita:
        for _ in range(args.rounds):
            runs["(a) minimal"].append(await run_direct(novita, args.jobs, args.concurrency))
            runs["(b) bot as is"].append(await run_bot(novita, args.jobs, args.concurrency, []))
            for label, patches in labels.items():
                runs[label].append(await run_bot(novita, args.jobs, args.concurrency, patches))
    expected = sum(counts(args.jobs)) * args.rounds
    rows, med = [], {}
    for label, results in runs.items():
        for n in (1, 4):
            spans = [s for r in results for s in r["spans"][n]]
            med[label, n] = statistics.median(spans)
            med[label, n, 99] = c.pct(spans, 99)
        med[label, "batch"] = statistics.median(r["batch"] for r in results)
    base = "(a) minimal"
    for label in runs:
        ratio = [med[label, k] / med[base, k] for k in (1, 4, "batch")]
        rows.append(
            [
                label,
                c.ms(med[label, 1]),
                c.ms(med[label, 1, 99]),
                c.ms(med[label, 4]),
                c.ms(med[label, 4, 99]),
                f"{med[label, 'batch']:.2f}",
                *(f"x{r:.2f}" for r in ratio),
                f"{sum(r['images'] for r in runs[label])}/{expected}",
            ]
        )
    print(
        c.table(
            [
                "run",
                "1 img p50 ms",
                "1 img p99 ms",
                "4 img p50 ms",
                "4 img p99 ms",
                "batch s",
                "1 img /(a)",
                "4 img /(a)",
                "batch /(a)",
                "images",
            ],
            rows,
        )
    )
    now = med["(b) bot as is", "batch"] / med[base, "batch"]
    added = [1000 * (med["(b) bot as is", n] - med[base, n]) for n in (1, 4)]
    others = "; ".join(f"x{med[label, 'batch'] / med[base, 'batch']:.2f} {label[4:]}" for label in labels)
    print(
        f"\nSUMMARY overhead: (b)/(a) x{now:.2f} batch (target <= {TARGET}) {'PASS' if now <= TARGET else 'MISS'}, "
        f"+{added[0]:.0f} / +{added[1]:.0f} ms per 1- / 4-image job; {others}"
    )


if __name__ == "__main__":
    asyncio.run(main())
