"""Draw a crop set's regions over an image, to see what a model can ask for and what it fetched.

Meant for command-line previews, demos and docs. Only Pillow is needed: boxes are
blended straight onto an RGB copy, labels use Pillow's embedded scalable font, and every size
(line width, font) follows the image so the picture reads the same on a 50 px icon and a 20k px scan.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from awares_tool.crops.base import FULL_IMAGE, CropSet
from awares_tool.crops.registry import get_crop_set

__all__ = ["draw_overlay", "save_overlay", "HIGHLIGHT_COLOR", "PALETTE"]

logger = logging.getLogger(__name__)

HIGHLIGHT_COLOR = (255, 40, 40)
"""Colour of highlighted (fetched) regions; no colour of :data:`PALETTE` is close to it."""

PALETTE = (
    (31, 119, 180),
    (44, 160, 44),
    (148, 103, 189),
    (23, 190, 207),
    (188, 189, 34),
    (127, 127, 127),
    (140, 86, 75),
    (227, 119, 194),
)
"""Outline colours of ordinary regions, cycled in menu order."""

_FILL_ALPHA = 40
_HIGHLIGHT_FILL_ALPHA = 90


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError) as e:  # Pillow < 10.1 or built without FreeType
        logger.debug("scalable default font unavailable (%s); using the bitmap font", e)
        return ImageFont.load_default()


def _as_pil(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    full = getattr(image, "image", None)  # awares_tool.images.SourceImage: the cached full-res RGB
    if isinstance(full, Image.Image):
        return full
    raise TypeError(f"expected a PIL image or a SourceImage, got {type(image).__name__}")


def draw_overlay(
    image: Any,
    crop_set: CropSet | str | None = None,
    regions: Sequence[str] | None = None,
    *,
    highlight: Sequence[str] = (),
    title: str | None = None,
) -> Image.Image:
    """A copy of ``image`` with the crop set's regions drawn on it.

    Args:
        image: A PIL image (or ``SourceImage``); it is not modified.
        crop_set: The crop set or a spec for :func:`~awares_tool.crops.get_crop_set`; default awares9.
        regions: Regions to draw, in order; default every region except ``all`` (a box around the
            whole image says nothing). Highlighted regions are always drawn.
        highlight: Regions to mark as fetched: a distinct colour, stronger fill and thicker line.
        title: Optional text on a dark bar across the top (drawn over the image, so the size stays).

    Returns:
        A new RGB image of the same size as ``image``.

    Raises:
        UnknownRegionError: a name in ``regions`` or ``highlight`` is not in the crop set.
    """
    crop_set = get_crop_set(crop_set)
    base = _as_pil(image)
    out = base.convert("RGB") if base.mode != "RGB" else base.copy()
    width, height = out.size
    wanted = list(regions) if regions is not None else [n for n in crop_set.region_names() if n != FULL_IMAGE]
    wanted += [n for n in highlight if n not in wanted]
    boxes = {n: crop_set.box(n, width, height) for n in wanted}  # validates every name
    hl = set(highlight)
    order = crop_set.region_names()
    colors = {n: PALETTE[order.index(n) % len(PALETTE)] for n in wanted}

    short = min(width, height)
    line = max(1, round(short / 250))
    font_size = max(8, min(short // 12, max(width, height) // 40))
    font = _font(font_size)
    draw = ImageDraw.Draw(out, "RGBA")  # RGBA drawing blends the translucent fills into the RGB copy

    plain = [n for n in wanted if n not in hl]
    marked = [n for n in wanted if n in hl]
    for n in plain:
        draw.rectangle(_inner(boxes[n]), fill=(*colors[n], _FILL_ALPHA))
    for n in marked:
        draw.rectangle(_inner(boxes[n]), fill=(*HIGHLIGHT_COLOR, _HIGHLIGHT_FILL_ALPHA))
    for n in plain:
        draw.rectangle(_inner(boxes[n]), outline=(*colors[n], 255), width=line)
    for n in marked:
        draw.rectangle(_inner(boxes[n]), outline=(*HIGHLIGHT_COLOR, 255), width=line * 2)

    placed: list[tuple[int, int, int, int]] = []
    for n in plain + marked:
        color = HIGHLIGHT_COLOR if n in hl else colors[n]
        _label(draw, n, boxes[n], color, font, font_size, placed)
    if title:
        bar = round(font_size * 1.5)
        draw.rectangle((0, 0, width, bar), fill=(0, 0, 0, 170))
        y0, y1 = draw.textbbox((0, 0), title, font=font)[1::2]
        draw.text((font_size // 2, (bar - (y1 - y0)) // 2 - y0), title, fill=(255, 255, 255, 255), font=font)
    return out


def _inner(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """PIL rectangles include their far edge; the crop box excludes it."""
    left, top, right, bottom = box
    return (left, top, max(left, right - 1), max(top, bottom - 1))


def _label(
    draw: ImageDraw.ImageDraw,
    text: str,
    box: tuple[int, int, int, int],
    color: tuple[int, int, int],
    font: Any,
    font_size: int,
    placed: list[tuple[int, int, int, int]],
) -> None:
    """Write ``text`` at the box centre on a tinted tag, moving down past tags already placed.

    Centres rather than corners: quarters and halves share corners, but in every built-in set the
    region centres are distinct.
    """
    cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    cx, cy = cx - (x1 - x0) // 2 - x0, cy - (y1 - y0) // 2 - y0  # top-left anchor that centres the text
    left, top, right, bottom = draw.textbbox((cx, cy), text, font=font)
    pad = max(1, font_size // 6)
    tag = (left - pad, top - pad, right + pad, bottom + pad)
    step = tag[3] - tag[1] + 1
    for _ in range(len(placed) + 1):
        if not any(_overlaps(tag, p) for p in placed):
            break
        tag = (tag[0], tag[1] + step, tag[2], tag[3] + step)
        cy += step
    placed.append(tag)
    draw.rectangle(tag, fill=(*color, 200))
    draw.text((cx, cy), text, fill=(255, 255, 255, 255), font=font)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def save_overlay(
    image: Any,
    path: str | os.PathLike[str],
    crop_set: CropSet | str | None = None,
    regions: Sequence[str] | None = None,
    *,
    highlight: Sequence[str] = (),
    title: str | None = None,
) -> Path:
    """Draw the overlay (see :func:`draw_overlay`) and save it; the format follows the suffix.

    Returns:
        The path written.
    """
    out = Path(path)
    draw_overlay(image, crop_set, regions, highlight=highlight, title=title).save(out)
    return out
