"""Old image files are removed after ``storage.retention_days``; the database keeps the job history."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _remove_older_than(root: Path, cutoff: float) -> int:
    removed = 0
    if not root.is_dir():
        return 0
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            path = Path(folder) / name
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        # An empty folder is removed only once it is old too: a fresh one (this month's, just emptied or just
        # made) may be about to receive a new image, and removing it under the writer would fail that job.
        if Path(folder) != root and not os.listdir(folder) and os.stat(folder).st_mtime < cutoff:
            with contextlib.suppress(OSError):  # a file arrived after the listing: keep the folder
                Path(folder).rmdir()
    return removed


async def remove_old_images(data_dir: Path, retention_days: int, now: float | None = None) -> int:
    """Delete image files under ``data_dir/images`` older than the retention period; returns how many."""
    cutoff = (now if now is not None else time.time()) - retention_days * 86400
    removed = await asyncio.to_thread(_remove_older_than, data_dir / "images", cutoff)
    if removed:
        log.info("retention: removed %d image file(s) older than %d days", removed, retention_days)
    return removed
