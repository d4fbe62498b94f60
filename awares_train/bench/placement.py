"""Where evidence goes: choosing the right crop(s) first, then a box that maps to exactly them.

The generator samples the answer of the "where" question before it draws anything: one region of the
crop set (quarters ``0``-``3``, centre ``4``, halves ``5``-``8``) or a diagonal pair of quarters for two-crop
items. :func:`place_box` then draws a box of the evidence's size whose smallest covering crop set
(:func:`awares_tool.crops.regions_for_box`, rule ``cover``) is exactly that region: inside a quarter but
sticking out of the centre, inside the centre but across a midline, across the two quarters of a half and
out of the centre. Every candidate is checked with ``regions_for_box`` itself, so the recorded target is
what the package's own grounding would compute.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from awares_tool.crops import Box, get_crop_set, regions_for_box

__all__ = ["SINGLE_TARGETS", "PAIR_TARGETS", "overlaps", "place_box", "maps_to", "sample_targets"]

SINGLE_TARGETS: tuple[str, ...] = ("0", "1", "2", "3", "4", "5", "6", "7", "8")
#: Two-crop targets: diagonal quarters, the only pairs of quarters that no single half covers (a model that
#: asks for the top half instead of quarters 0 and 1 would be right too, so those pairs are not used).
PAIR_TARGETS: tuple[tuple[str, str], ...] = (("0", "3"), ("1", "2"))

_CROPS = get_crop_set("awares9")


def sample_targets(rng: random.Random, pair_share: float, allow_pairs: bool = True) -> list[str]:
    """One region (uniform over the nine) or, with probability ``pair_share``, a diagonal pair of quarters."""
    if allow_pairs and rng.random() < pair_share:
        return list(rng.choice(PAIR_TARGETS))
    return [rng.choice(SINGLE_TARGETS)]


def maps_to(box: Sequence[float], width: int, height: int) -> list[str]:
    """The smallest set of ``awares9`` crops covering ``box`` (what the recorded target is checked against)."""
    return list(regions_for_box(box, _CROPS, width, height, rule="cover", threshold=1.0))


def overlaps(a: Sequence[float], b: Sequence[float], pad: float = 0.0) -> bool:
    """Whether two boxes come closer than ``pad`` pixels."""
    return not (a[2] + pad <= b[0] or b[2] + pad <= a[0] or a[3] + pad <= b[1] or b[3] + pad <= a[1])


def _uniform(rng: random.Random, lo: float, hi: float) -> int | None:
    lo_i, hi_i = int(-(-lo // 1)), int(hi // 1)
    return rng.randint(lo_i, hi_i) if hi_i >= lo_i else None


def _axis_range(kind: str, length: int, size: int, lo: int, hi: int, crop: tuple[int, int, int, int]) -> tuple[float, float]:
    """Range of the box start along one axis for ``kind``; ``crop`` holds that axis' (c, mid0, mid1, length)."""
    c, c0, c1, _ = crop
    if kind == "low":  # inside [0, c)
        return lo, min(c, hi) - size
    if kind == "high":  # inside [length - c, length)
        return max(length - c, lo), hi - size
    if kind == "straddle":  # across the midline: starts before c, ends after length - c
        return max(lo, length - c - size + 1), min(c - 1, hi - size)
    if kind == "low-out":  # inside the low half, sticking out of the centre on the low side
        return lo, min(c0 - 1, min(c, hi) - size)
    if kind == "high-out":
        return max(length - c, c1 - size + 1, lo), hi - size
    if kind == "mid":  # inside the centre interval
        return max(c0, lo), min(c1, hi) - size
    if kind == "mid-straddle":
        return max(c0, lo, length - c - size + 1), min(c1 - size, hi - size, c - 1)
    raise ValueError(kind)


# Per target: alternatives of (x kind, y kind); one is drawn per try.
_PLANS: dict[str, tuple[tuple[str, str], ...]] = {
    "0": (("low", "low"),), "1": (("high", "low"),), "2": (("low", "high"),), "3": (("high", "high"),),
    "4": (("mid-straddle", "mid"), ("mid", "mid-straddle")),
    "5": (("straddle", "low-out"),), "6": (("straddle", "high-out"),),
    "7": (("low-out", "straddle"),), "8": (("high-out", "straddle"),),
}


def place_box(
    rng: random.Random,
    width: int,
    height: int,
    size: tuple[int, int],
    target: str,
    *,
    area: Sequence[int] | None = None,
    avoid: Sequence[Sequence[float]] = (),
    pad: int = 4,
    tries: int = 60,
) -> Box | None:
    """A ``size`` box inside ``area`` whose smallest covering crop set is exactly ``[target]``.

    Args:
        rng: Randomness (the only source used).
        width: Image width.
        height: Image height.
        size: ``(w, h)`` of the evidence box.
        target: Region name ``"0"``-``"8"``.
        area: Where the box may go (default: the image less a 2 % margin).
        avoid: Boxes it must stay ``pad`` pixels away from.
        pad: Clearance from ``avoid``.
        tries: Candidates to draw before giving up.

    Returns:
        The box, or ``None`` when none fits (the caller then changes size, target or layout).
    """
    if target not in _PLANS:
        raise ValueError(f"target must be one of {SINGLE_TARGETS}, got {target!r}")
    w, h = size
    m = max(2, round(0.02 * min(width, height)))
    ax0, ay0, ax1, ay1 = area if area is not None else (m, m, width - m, height - m)
    cw, ch = max(100, width // 2), max(100, height // 2)
    cx0, cy0, cx1, cy1 = _CROPS.box("4", width, height)
    xcrop, ycrop = (cw, cx0, cx1, width), (ch, cy0, cy1, height)
    for _ in range(tries):
        xk, yk = rng.choice(_PLANS[target])
        x0 = _uniform(rng, *_axis_range(xk, width, w, int(ax0), int(ax1), xcrop))
        y0 = _uniform(rng, *_axis_range(yk, height, h, int(ay0), int(ay1), ycrop))
        if x0 is None or y0 is None:
            continue
        box = (x0, y0, x0 + w, y0 + h)
        if box[0] < ax0 or box[1] < ay0 or box[2] > ax1 or box[3] > ay1:
            continue
        if any(overlaps(box, a, pad) for a in avoid):
            continue
        if maps_to(box, width, height) == [target]:
            return box
    return None
