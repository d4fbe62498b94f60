"""Mapping evidence boxes (e.g. from a grounding model) to the regions of a crop set.

Training data needs to know which crops a model *should* request for a question whose evidence sits
in a known box; :func:`regions_for_box` answers that (the paper's IoU rule, or a minimal cover), and
:func:`snap_box` picks the single best region. Everything here is re-exported by
:mod:`awares_tool.crops`.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from typing import Literal

from awares_tool.crops.base import _EPS, FULL_IMAGE, Box, CropSet
from awares_tool.errors import CropSetError

__all__ = ["iou", "coverage", "snap_box", "regions_for_box"]

logger = logging.getLogger(__name__)

_MAX_COVER_COMBINATIONS = 50_000  # bound on the brute force for "cover" with large grids


def _area(b: Sequence[float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _intersection(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float]:
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(left, top, right, bottom)`` boxes; 0.0 when both are empty."""
    inter = _area(_intersection(a, b))
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def coverage(box: Sequence[float], region: Sequence[float]) -> float:
    """Fraction of ``box``'s area that lies inside ``region`` (0.0 for an empty ``box``)."""
    area = _area(box)
    return _area(_intersection(box, region)) / area if area > 0 else 0.0


def _union_area_within(box: Sequence[float], rects: Sequence[Sequence[float]]) -> float:
    """Area of ``box`` covered by the union of ``rects`` (coordinate compression; rects are few)."""
    clipped = [_intersection(r, box) for r in rects]
    clipped = [c for c in clipped if _area(c) > 0]
    if not clipped:
        return 0.0
    xs = sorted({v for c in clipped for v in (c[0], c[2])})
    total = 0.0
    for xa, xb in itertools.pairwise(xs):
        spans = sorted((c[1], c[3]) for c in clipped if c[0] <= xa and c[2] >= xb)
        covered, end = 0.0, -math.inf
        for y0, y1 in spans:
            if y1 > end:
                covered += y1 - max(y0, end)
                end = y1
        total += covered * (xb - xa)
    return total


def _candidates(
    crop_set: CropSet, width: int, height: int, include_full: bool
) -> list[tuple[int, str, Box]]:
    return [
        (i, n, b)
        for i, (n, b) in enumerate(crop_set.boxes(width, height).items())
        if include_full or n != FULL_IMAGE
    ]


def _clip(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    if len(box) != 4:
        raise ValueError(f"a box is (left, top, right, bottom), got {box!r}")
    return _intersection(box, (0, 0, width, height))


def snap_box(
    box: Sequence[float], crop_set: CropSet, width: int, height: int, *, include_full: bool = False
) -> str:
    """The single region whose box has the highest IoU with ``box``.

    Ties go to the smaller region, then to menu order. When no region overlaps the box at all
    (or the set has nothing but ``all``), the answer is ``all`` if the set has it.

    Raises:
        CropSetError: nothing overlaps the box and the set has no ``all`` to fall back to.
    """
    target = _clip(box, width, height)
    cands = _candidates(crop_set, width, height, include_full)
    scored = [(iou(target, b), -_area(b), -i, n) for i, n, b in cands]
    best = max(scored, default=None)
    if best is not None and best[0] > 0:
        return best[3]
    if crop_set.has(FULL_IMAGE):
        return FULL_IMAGE
    raise CropSetError(f"box {tuple(box)} overlaps no region of crop set {crop_set.name!r}")


def regions_for_box(
    box: Sequence[float],
    crop_set: CropSet,
    width: int,
    height: int,
    *,
    rule: Literal["iou", "cover"] = "iou",
    threshold: float | None = None,
    max_regions: int = 4,
) -> list[str]:
    """Map an evidence box (e.g. from a grounding model) to the crops a model should request.

    ``all`` is never a candidate: an empty answer tells the caller to fall back to it.

    Args:
        box: ``(left, top, right, bottom)`` in pixels of the original image; clipped to the image.
        crop_set: The crop set to choose from.
        width: Image width in pixels.
        height: Image height in pixels.
        rule: ``"iou"``: every region with IoU >= ``threshold`` (the paper's labelling rule), in menu
            order. ``"cover"``: the smallest set of regions (fewest, then least total area, then menu
            order) whose union covers at least ``threshold`` of the box.
        threshold: Defaults to 0.5 for ``"iou"`` and 1.0 (the whole box) for ``"cover"``.
        max_regions: Largest set the ``"cover"`` rule tries.

    Returns:
        Region names, or ``[]`` when none qualifies.
    """
    if rule not in ("iou", "cover"):
        raise ValueError(f"rule must be 'iou' or 'cover', got {rule!r}")
    if threshold is None:
        threshold = 0.5 if rule == "iou" else 1.0
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    target = _clip(box, width, height)
    cands = _candidates(crop_set, width, height, include_full=False)
    if rule == "iou":
        return [n for _, n, b in cands if iou(target, b) >= threshold - _EPS]
    box_area = _area(target)
    if box_area <= 0:
        return []
    # A member that misses the box could be dropped without losing coverage, so a minimal set
    # only ever holds regions that intersect it; this keeps the brute force small.
    cands = [c for c in cands if _area(_intersection(c[2], target)) > 0]
    tried = 0
    for k in range(1, min(max_regions, len(cands)) + 1):
        best: tuple[float, tuple[int, ...], list[str]] | None = None
        for combo in itertools.combinations(cands, k):
            tried += 1
            if tried > _MAX_COVER_COMBINATIONS:
                logger.warning("regions_for_box: gave up after %d combinations", _MAX_COVER_COMBINATIONS)
                return []
            covered = _union_area_within(target, [c[2] for c in combo]) / box_area
            if covered >= threshold - _EPS:
                key = (sum(_area(c[2]) for c in combo), tuple(c[0] for c in combo))
                if best is None or key < best[:2]:
                    best = (*key, [c[1] for c in combo])
        if best is not None:
            return best[2]
    return []
