"""Summarise a ``py-spy record -f raw`` file: samples per process, then the hottest frames per process.

Run: python bench/pyspy_summary.py FILE [--top 15] [--match TEXT]

Samples of waiting threads (event loop in select, idle executor and aiosqlite threads) are dropped
unless ``--idle``. "self" counts samples whose innermost frame is that function; "total" counts samples with it anywhere
on the stack (each once). ``--match`` keeps only stacks containing TEXT (e.g. a function name).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict

PROCESS = re.compile(r'^process \d+:"(?P<cmd>[^"]*)"$')
#: Innermost frames of threads that are waiting, not working (py-spy cannot always tell on a VM).
IDLE = (
    "EpollSelector.select (",
    "_worker (thread.py:81)",
    "_connection_worker_thread (core.py:59)",
    "Condition.wait (",
    "_do_waitpid (",
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--match", default=None)
    parser.add_argument("--idle", action="store_true", help="keep samples of waiting threads")
    args = parser.parse_args()
    self_counts: dict[str, Counter[str]] = defaultdict(Counter)
    total_counts: dict[str, Counter[str]] = defaultdict(Counter)
    per_process: Counter[str] = Counter()
    with open(args.file) as handle:
        for line in handle:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack or (args.match and args.match not in stack):
                continue
            count = int(count_text)
            frames = stack.split(";")
            innermost = re.sub(r" \(.*/(site-packages/)?", " (", frames[-1])
            if not args.idle and any(idle in innermost for idle in IDLE):
                continue
            processes = [f for f in frames if PROCESS.match(f)]
            proc = PROCESS.match(processes[-1]).group("cmd")[-70:] if processes else "?"  # type: ignore[union-attr]
            code = [re.sub(r" \(.*/(site-packages/)?", " (", f) for f in frames if not PROCESS.match(f)]
            per_process[proc] += count
            if code:
                self_counts[proc][code[-1]] += count
                for frame in set(code):
                    total_counts[proc][frame] += count
    for proc, samples in per_process.most_common():
        print(f"\n== {proc}: {samples} samples")
        print("  self:")
        for frame, n in self_counts[proc].most_common(args.top):
            print(f"    {100 * n / samples:5.1f}%  {frame}")
        print("  total:")
        for frame, n in total_counts[proc].most_common(args.top + 10):
            print(f"    {100 * n / samples:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
