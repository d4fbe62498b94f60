"""How big text is in each view the model gets, and whether it can read it there.

An item's label (crop needed or not) is decided from the rendered **digit height** of its evidence text in the
low-res view: Pillow's embedded font draws ``0``-``9`` at a known pixel height for every font size
(:func:`digit_height`), and the processor's resize of each view is known from the token family. The same
numbers are recorded for the capped full view, which matters for images above the model's pixel cap: there
the "full resolution" baseline is itself downscaled and may not read what a crop can.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from PIL import ImageFont
from pydantic import BaseModel

from awares_tool.crops import get_crop_set
from awares_tool.episode.episode import first_view_size
from awares_tool.images.lowres import ScalePolicy

from .profiles import BenchProfile

__all__ = ["ViewScales", "Readability", "digit_height", "font", "font_for_digit_height", "view_scales",
           "readability"]

_DIGITS = "0123456789"
_MIN_FONT, _MAX_FONT = 6, 400


@functools.lru_cache(maxsize=512)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's embedded scalable font at ``size`` (no system fonts: identical bytes everywhere)."""
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


@functools.lru_cache(maxsize=512)
def digit_height(size: int) -> int:
    """Pixel height of the digits ``0``-``9`` drawn at font ``size`` (about 0.72 x size)."""
    _, top, _, bottom = font(size).getbbox(_DIGITS)
    return int(bottom - top)


def font_for_digit_height(px: float) -> int:
    """The font size whose digit height is closest to ``px`` (ties to the smaller size)."""
    target = max(px, 1.0)
    lo = min(max(_MIN_FONT, int(target / 0.75) - 3), _MAX_FONT - 12)  # beyond the largest size: the largest
    best = min(range(lo, min(_MAX_FONT, lo + 12) + 1), key=lambda s: (abs(digit_height(s) - target), s))
    return best


class ViewScales(BaseModel):
    """Linear scale from the original image to what the model receives, per view."""

    lowres: float
    full: float
    crops: dict[str, float]


def view_scales(profile: BenchProfile, width: int, height: int, crop_set: str = "awares9") -> ViewScales:
    """Scales of the low-res view, the capped full view and every crop (crops are cut at native resolution).

    Each scale is the geometric mean of the horizontal and vertical scale after the processor's
    ``smart_resize`` (pixel cap and rounding to the patch grid).
    """
    # the first view exactly as a CropEpisode makes it: above the cap, a scale of the capped full view
    lw, lh = first_view_size((width, height), ScalePolicy(factor=profile.lowres_factor), model_max_pixels=profile.max_pixels)
    family = profile.token_family()

    def scale(w: int, h: int, native_w: int, native_h: int) -> float:
        rw, rh = family.resized_size(w, h)
        return math.sqrt((rw / native_w) * (rh / native_h))

    crops = {}
    for name, (x0, y0, x1, y1) in get_crop_set(crop_set).boxes(width, height).items():
        if name == "all":
            continue
        crops[name] = scale(x1 - x0, y1 - y0, x1 - x0, y1 - y0)
    return ViewScales(lowres=scale(lw, lh, width, height), full=scale(width, height, width, height), crops=crops)


class Readability(BaseModel):
    """Digit height of the evidence in each view, and what follows from it."""

    digit_px_full: float
    digit_px_lowres: float
    digit_px_capped: float
    digit_px_crop: float
    needs_crop: bool
    readable_in_capped_full: bool
    readable_in_crop: bool


def readability(profile: BenchProfile, scales: ViewScales, digit_px: float, targets: Sequence[str]) -> Readability:
    """Classify text of native digit height ``digit_px`` whose evidence lies in the crops ``targets``.

    ``needs_crop`` is ``digit_px_lowres < threshold``; the crop view is the smallest scale among the target
    crops (a two-crop item needs both). The generator only keeps items outside the margin band, so the label
    never rests on a pixel either side of the threshold.
    """
    crop_scale = min((scales.crops[t] for t in targets), default=scales.full)
    low = digit_px * scales.lowres
    capped = digit_px * scales.full
    crop = digit_px * crop_scale
    return Readability(
        digit_px_full=float(digit_px), digit_px_lowres=round(low, 3), digit_px_capped=round(capped, 3),
        digit_px_crop=round(crop, 3), needs_crop=low < profile.threshold_px,
        readable_in_capped_full=capped >= profile.threshold_px, readable_in_crop=crop >= profile.threshold_px,
    )
