"""Shared drawing for the three item kinds: the render context, text boxes and wrap-around filler text.

Every renderer receives a :class:`RenderContext` (image size, profile, target crops, the evidence font size)
and returns a :class:`Rendered` item or ``None`` when its layout does not fit (the generator then draws
another size or target). Text positions are always ink boxes: :func:`text_box` measures the pixels a string
really covers, so an evidence box is exactly where its text is.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

from awares_tool.crops import Box

from .content import colors_for, filler_word
from .placement import overlaps, place_box
from .profiles import BenchProfile
from .readability import font

__all__ = ["RenderContext", "Rendered", "Block", "text_box", "draw_text", "word_length", "flow_filler",
           "place_blocks"]


@dataclass
class RenderContext:
    """What a renderer needs to draw one item."""

    rng: random.Random
    width: int
    height: int
    profile: BenchProfile
    targets: list[str]
    font_size: int
    digit_px: int
    template: str = ""

    @property
    def tiny(self) -> bool:
        return self.profile.vocabulary == "tiny"

    @property
    def colors(self) -> dict[str, tuple[int, int, int]]:
        return colors_for(self.profile.vocabulary)

    @property
    def pair(self) -> bool:
        return len(self.targets) == 2


@dataclass
class Rendered:
    """One drawn item: the image, its question and answers, and the evidence boxes in image pixels."""

    image: Image.Image
    question: str
    answers: list[str]
    metric: str
    template: str
    answer_type: str
    evidence: list[Box]
    extra: dict = field(default_factory=dict)


@functools.lru_cache(maxsize=65536)
def text_box(text: str, size: int) -> tuple[int, int, int, int]:
    """``(width, height, dx, dy)`` of the ink of ``text`` at font ``size``; draw at ``(x - dx, y - dy)``."""
    left, top, right, bottom = font(size).getbbox(text)
    return int(right - left), int(bottom - top), int(left), int(top)


@functools.lru_cache(maxsize=65536)
def word_length(word: str, size: int) -> float:
    """Advance width of ``word`` at ``size`` (for filling lines without re-measuring whole strings)."""
    return float(font(size).getlength(word))


def draw_text(draw: ImageDraw.ImageDraw, x: float, y: float, text: str, size: int, fill=(25, 25, 25)) -> Box:
    """Draw ``text`` with its ink's top-left corner at ``(x, y)``; returns the ink box."""
    w, h, dx, dy = text_box(text, size)
    x, y = int(round(x)), int(round(y))
    draw.text((x - dx, y - dy), text, font=font(size), fill=fill)
    return (x, y, x + w, y + h)


def _free_spans(x0: int, x1: int, y0: int, y1: int, reserved: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    spans = [(x0, x1)]
    for r in reserved:
        if r[3] <= y0 or r[1] >= y1:
            continue
        nxt = []
        for a, b in spans:
            if r[2] <= a or r[0] >= b:
                nxt.append((a, b))
                continue
            if r[0] > a:
                nxt.append((a, int(r[0])))
            if r[2] < b:
                nxt.append((int(r[2]), b))
        spans = nxt
    return spans


def flow_filler(
    draw: ImageDraw.ImageDraw,
    rng: random.Random,
    area: Sequence[int],
    reserved: Sequence[Sequence[float]],
    size: int,
    vocabulary: str,
    *,
    fill=(60, 60, 60),
    pad: int = 0,
    paragraph: float = 0.12,
    min_span: int = 0,
    columns: int = 1,
) -> int:
    """Fill ``area`` with lines of filler words that flow around the ``reserved`` boxes; returns lines drawn.

    With ``columns > 1`` the area is split into that many columns with a gutter of two line heights.
    """
    if columns > 1:
        x0, y0, x1, y1 = (int(v) for v in area)
        gutter = 2 * text_box("Hg", size)[1]
        col_w = (x1 - x0 - (columns - 1) * gutter) / columns
        return sum(
            flow_filler(draw, rng, (int(x0 + k * (col_w + gutter)), y0, int(x0 + k * (col_w + gutter) + col_w), y1),
                        reserved, size, vocabulary, fill=fill, pad=pad, paragraph=paragraph, min_span=min_span)
            for k in range(columns)
        )
    lw, lh, _, _ = text_box("Hg", size)
    line_h = int(lh * 1.45) + 1
    space = word_length(" ", size)
    min_span = min_span or int(6 * lh)
    padded = [(r[0] - pad, r[1] - pad, r[2] + pad, r[3] + pad) for r in reserved]
    x0, y0, x1, y1 = (int(v) for v in area)
    y, lines = y0, 0
    while y + lh <= y1:
        if lines and rng.random() < paragraph:
            y += line_h
            continue
        for a, b in _free_spans(x0, x1, y, y + lh, padded):
            if b - a < min_span:
                continue
            words, width = [], 0.0
            limit = (b - a) * (rng.uniform(0.55, 1.0) if rng.random() < paragraph else 1.0)
            while True:
                w = filler_word(rng, vocabulary)
                add = word_length(w, size) + (space if words else 0.0)
                if width + add > limit - 2:
                    break
                words.append(w)
                width += add
            if words:
                text = " ".join(words)
                # anchor "la" draws from the left ascender line, so every line shares one baseline grid
                draw.text((a, y), text, font=font(size), fill=fill, anchor="la")
        y += line_h
        lines += 1
    return lines


@dataclass
class Block:
    """A self-contained piece of layout with one evidence box inside it (coordinates relative to the block)."""

    width: int
    height: int
    evidence: Box
    draw_fn: Callable[[ImageDraw.ImageDraw, int, int], None]

    def at(self, ox: int, oy: int) -> tuple[Box, Box]:
        """The block's box and its evidence box when the block's top-left corner is at ``(ox, oy)``."""
        e = self.evidence
        return (ox, oy, ox + self.width, oy + self.height), (ox + e[0], oy + e[1], ox + e[2], oy + e[3])


def place_blocks(ctx: RenderContext, blocks: Sequence[Block], area: Sequence[int], *, pad: int = 6,
                 tries: int = 25) -> list[tuple[int, int]] | None:
    """Place each block so that its evidence box maps to its target and the blocks stay inside ``area``."""
    placed: list[tuple[int, int]] = []
    boxes: list[Box] = []
    for block, target in zip(blocks, ctx.targets):
        ew, eh = block.evidence[2] - block.evidence[0], block.evidence[3] - block.evidence[1]
        for _ in range(tries):
            ev = place_box(ctx.rng, ctx.width, ctx.height, (ew, eh), target, area=area, avoid=boxes, pad=pad,
                           tries=8)
            if ev is None:
                continue
            ox, oy = ev[0] - block.evidence[0], ev[1] - block.evidence[1]
            box, _ = block.at(ox, oy)
            if box[0] < area[0] or box[1] < area[1] or box[2] > area[2] or box[3] > area[3]:
                continue
            if any(overlaps(box, b, pad) for b in boxes):
                continue
            placed.append((ox, oy))
            boxes.append(box)
            break
        else:
            return None
    return placed
