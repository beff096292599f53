"""The footers on a job's messages: shown to members, and read back after a restart, so defined once here.

``job <id>`` marks a job's card; ``job <id> · images a–b of n`` marks each result message and says which
of the job's images it holds. Both are a contract with members and with messages already posted.
"""

from __future__ import annotations

import re

_PART = re.compile(r"^job (?P<job>[0-9a-f]+) · images (?P<first>\d+)–(?P<last>\d+) of (?P<total>\d+)")


def card_footer(job_id: str) -> str:
    return f"job {job_id}"


def part_footer(job_id: str, first: int, last: int, total: int) -> str:
    return f"job {job_id} · images {first}–{last} of {total}"


def is_about(footer: str, job_id: str) -> bool:
    """Whether a card or a result message of ours belongs to ``job_id``."""
    return footer == card_footer(job_id) or footer.startswith(f"{card_footer(job_id)} · ")


def part_range(footer: str) -> tuple[str, int, int, int] | None:
    """(job id, first, last, total) of a result message's footer, or None when it is not one."""
    match = _PART.match(footer)
    if match is None:
        return None
    return match["job"], int(match["first"]), int(match["last"]), int(match["total"])


def result_range(footer: str, total: int) -> range:
    """Indexes of the results one of our result messages shows (all of them if the footer is unreadable)."""
    parsed = part_range(footer)
    if parsed is None:
        return range(total)
    _, first, last, _ = parsed
    if not 1 <= first <= last <= total:
        return range(total)
    return range(first - 1, last)
