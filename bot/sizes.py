"""Aspect ratios and resolution tiers shared by every provider.

The 2K table is the recommended Seedream size list (Novita/Ark docs); 1K halves it, 3K takes it 1.5 times
and 4K doubles it. That keeps every 4K size within Seedream 4.x's 16,777,216-pixel cap and every 3K size
(8.3–9.4 MP) inside Seedream 5.0 Lite's window of 3,686,400–10,404,496 pixels. Tiers are listed from the
smallest up: moderation compares them by position ("at most 2K").
"""

from __future__ import annotations

from typing import Final

ASPECT_RATIOS: Final[tuple[str, ...]] = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9", "9:21")
RESOLUTIONS: Final[tuple[str, ...]] = ("1K", "2K", "3K", "4K")

_SIZES_2K: Final[dict[str, tuple[int, int]]] = {
    "1:1": (2048, 2048),
    "4:3": (2304, 1728),
    "3:4": (1728, 2304),
    "16:9": (2560, 1440),
    "9:16": (1440, 2560),
    "3:2": (2496, 1664),
    "2:3": (1664, 2496),
    "21:9": (3024, 1296),
    "9:21": (1296, 3024),
}
_SCALE: Final[dict[str, float]] = {"1K": 0.5, "2K": 1.0, "3K": 1.5, "4K": 2.0}


def dimensions(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """Pixel size (width, height) for an aspect ratio at a resolution tier."""
    width, height = _SIZES_2K[aspect_ratio]
    scale = _SCALE[resolution]
    return int(width * scale), int(height * scale)


def ratio_value(aspect_ratio: str) -> float:
    """Width divided by height, e.g. 1.777… for 16:9."""
    width, height = (int(part) for part in aspect_ratio.split(":"))
    return width / height


def nearest_aspect(width: int, height: int, choices: tuple[str, ...] = ASPECT_RATIOS) -> str:
    """The aspect ratio of ``choices`` closest to a picture's shape (used for ``auto`` with references)."""
    target = width / height
    return min(choices, key=lambda ar: abs(ratio_value(ar) - target))
