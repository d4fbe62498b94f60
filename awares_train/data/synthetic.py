"""Synthetic high-resolution VQA: big shapes readable at low resolution, a small code that is not.

Why: no real data set can be downloaded here, and the AwaRes behaviour (answer from the low-res view
when it suffices, otherwise fetch the one crop that holds the evidence) needs questions whose
evidence location is known exactly. Every image has a light background, one to three big coloured
shapes (each type and each colour at most once, so questions are unambiguous) and one white box with
a small 3-digit code. The code box lies fully inside one quadrant and sticks out of the center
region, so the smallest ``awares9`` crop that covers it is that quadrant.

Question templates are few and fixed so that a tiny language model can learn them:

* ``code`` (needs a crop): "What is the code?"
* ``color``: "What color is the circle?"
* ``shape``: "Which shape is red?"
* ``count``: "How many shapes are there?"

Everything is a pure function of ``(seed, split, index)``: the same config gives the same bytes.
"""

from __future__ import annotations

import functools
import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "COLORS",
    "SHAPES",
    "QUESTIONS",
    "SyntheticConfig",
    "SyntheticSample",
    "Scene",
    "ShapeObj",
    "CodeBox",
    "draw_scene",
    "generate_sample",
    "write_split",
    "load_font",
    "quadrant_box",
]

logger = logging.getLogger(__name__)

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 90, 220),
    "yellow": (235, 200, 20),
    "purple": (148, 60, 189),
    "orange": (245, 127, 14),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUNDS: tuple[tuple[int, int, int], ...] = (
    (205, 205, 205), (200, 215, 230), (225, 215, 190), (205, 225, 205), (225, 205, 215), (190, 200, 210),
)
QUESTIONS: dict[str, str] = {
    "code": "What is the code?",
    "color": "What color is the {shape}?",
    "shape": "Which shape is {color}?",
    "count": "How many shapes are there?",
}
Kind = Literal["code", "color", "shape", "count"]
_SPLIT_SALT = {"train": 0, "val": 1, "test": 2}


class SyntheticConfig(BaseModel):
    """Settings of the generator; defaults fit the tiny 448 px model."""

    model_config = ConfigDict(extra="forbid")

    width: int = Field(448, ge=200, le=4096, description="image width in pixels")
    height: int = Field(448, ge=200, le=4096, description="image height in pixels")
    font_size: int = Field(28, ge=6, le=200, description="font size of the code (Pillow's embedded font)")
    font_size_range: tuple[int, int] | None = Field(
        None, description="if set, draw the font size per sample uniformly from this inclusive range")
    min_shapes: int = Field(1, ge=1, le=3)
    max_shapes: int = Field(3, ge=1, le=3)
    shape_frac: tuple[float, float] = Field(
        (0.13, 0.24), description="shape side as a fraction of the shorter image side")
    crop_share: float = Field(0.5, ge=0.0, le=1.0, description="share of questions that need a crop")
    seed: int = 0

    @field_validator("font_size_range")
    @classmethod
    def _ordered(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not (6 <= v[0] <= v[1]):
            raise ValueError(f"font_size_range must be (lo, hi) with 6 <= lo <= hi, got {v}")
        return v


class ShapeObj(BaseModel):
    """One big shape: its type, colour name and bounding box in pixels."""

    kind: str
    color: str
    box: tuple[int, int, int, int]


class CodeBox(BaseModel):
    """The white box holding a code, and where each character's centre is (for dense labels)."""

    text: str
    box: tuple[int, int, int, int]
    font_size: int
    char_centers: list[tuple[float, float]]


class Scene(BaseModel):
    """Everything drawn on one image, in pixels of that image."""

    width: int
    height: int
    background: tuple[int, int, int]
    shapes: list[ShapeObj]
    codes: list[CodeBox]


class SyntheticSample(BaseModel):
    """One VQA sample. ``image`` is a PIL image and is left out of JSON dumps."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: str
    image: Any = Field(exclude=True, repr=False)
    question: str
    answers: list[str]
    needs_crop: bool
    kind: Kind
    evidence_box: tuple[int, int, int, int] | None
    target_regions: list[str]
    font_size: int
    scene: Scene = Field(exclude=True, repr=False)


@functools.lru_cache(maxsize=64)
def load_font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's embedded scalable font (no system font needed), cached per size."""
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


def quadrant_box(q: int, width: int, height: int) -> tuple[int, int, int, int]:
    """Box of ``awares9`` quadrant ``q`` (0 TL, 1 TR, 2 BL, 3 BR), official geometry."""
    cw, ch = max(100, width // 2), max(100, height // 2)
    x0 = 0 if q in (0, 2) else width - cw
    y0 = 0 if q in (0, 1) else height - ch
    return (x0, y0, x0 + cw, y0 + ch)


def _center_box(width: int, height: int) -> tuple[int, int, int, int]:
    cw, ch = max(100, width // 2), max(100, height // 2)
    return ((width - cw) // 2, (height - ch) // 2, (width + cw) // 2, (height + ch) // 2)


def _inside(a: Sequence[int], b: Sequence[int]) -> bool:
    return a[0] >= b[0] and a[1] >= b[1] and a[2] <= b[2] and a[3] <= b[3]


def _overlap(a: Sequence[int], b: Sequence[int], margin: int = 0) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def draw_shape(draw: ImageDraw.ImageDraw, kind: str, box: Sequence[int], fill: Any) -> None:
    """Draw one shape filling ``box``; also used to paint label masks with the same geometry."""
    x0, y0, x1, y1 = box
    if kind == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif kind == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif kind == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=fill)
    else:
        raise ValueError(f"unknown shape kind {kind!r}; expected one of {SHAPES}")


def _code_geometry(text: str, font_size: int) -> tuple[int, int, int, int, int]:
    """Box size (w, h), padding and text offset of a code drawn in its white box."""
    f = load_font(font_size)
    l, t, r, b = f.getbbox(text)
    pad = max(3, font_size // 3)
    return r - l + 2 * pad, b - t + 2 * pad, pad, l, t


def _place_code(rng: random.Random, text: str, font_size: int, region: Sequence[int],
                avoid: Sequence[Sequence[int]], forbid_inside: Sequence[int] | None) -> tuple[int, int, int, int] | None:
    w, h, *_ = _code_geometry(text, font_size)
    x0, y0, x1, y1 = region
    m = 4
    if x1 - x0 < w + 2 * m or y1 - y0 < h + 2 * m:
        return None
    for _ in range(200):
        bx = rng.randint(x0 + m, x1 - m - w)
        by = rng.randint(y0 + m, y1 - m - h)
        box = (bx, by, bx + w, by + h)
        if forbid_inside is not None and _inside(box, forbid_inside):
            continue
        if any(_overlap(box, a, 6) for a in avoid):
            continue
        return box
    return None


def _draw_code(draw: ImageDraw.ImageDraw, text: str, font_size: int, box: Sequence[int]) -> CodeBox:
    f = load_font(font_size)
    _, _, pad, l, t = _code_geometry(text, font_size)
    draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(255, 255, 255), outline=(60, 60, 60))
    x, y = box[0] + pad - l, box[1] + pad - t
    draw.text((x, y), text, font=f, fill=(0, 0, 0))
    bb = f.getbbox(text)
    cy = y + (bb[1] + bb[3]) / 2
    centers = [(x + f.getlength(text[:i]) + f.getlength(text[i]) / 2, cy) for i in range(len(text))]
    return CodeBox(text=text, box=tuple(box), font_size=font_size, char_centers=centers)  # type: ignore[arg-type]


def draw_scene(rng: random.Random, width: int, height: int, *, font_sizes: Sequence[int],
               n_shapes: int, quadrant: int | None = None,
               shape_frac: tuple[float, float] = (0.13, 0.24)) -> tuple[Image.Image, Scene]:
    """Draw shapes and code boxes; the building block of samples and of dense pre-training.

    Args:
        rng: Source of randomness (the only one used).
        width: Image width.
        height: Image height.
        font_sizes: One font size per code box to draw (boxes that do not fit are skipped, except
            the first one when ``quadrant`` is set, which always fits at sane sizes).
        n_shapes: Number of big shapes (distinct types and colours; at most ``len(SHAPES)``).
        quadrant: If set, the first code box goes fully inside this quadrant and not fully inside
            the center region.
        shape_frac: Shape side range as a fraction of the shorter side.
    """
    bg = rng.choice(BACKGROUNDS)
    img = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(img)
    codes: list[CodeBox] = []
    taken: list[tuple[int, int, int, int]] = []
    for i, fs in enumerate(font_sizes):
        text = f"{rng.randint(0, 999):03d}"
        if i == 0 and quadrant is not None:
            box = _place_code(rng, text, fs, quadrant_box(quadrant, width, height), taken, _center_box(width, height))
            if box is None:
                raise ValueError(f"code of font size {fs} does not fit in a quadrant of a {width}x{height} image")
        else:
            box = _place_code(rng, text, fs, (0, 0, width, height), taken, None)
            if box is None:
                continue
        codes.append(_draw_code(draw, text, fs, box))
        taken.append(box)
    kinds = rng.sample(SHAPES, k=min(n_shapes, len(SHAPES)))
    colors = rng.sample(list(COLORS), k=len(kinds))
    shapes: list[ShapeObj] = []
    short = min(width, height)
    for kind, color in zip(kinds, colors):
        for _ in range(200):
            s = int(short * rng.uniform(*shape_frac))
            x0, y0 = rng.randint(2, width - s - 2), rng.randint(2, height - s - 2)
            box = (x0, y0, x0 + s, y0 + s)
            if not any(_overlap(box, a, 8) for a in taken):
                break
        else:
            continue
        draw_shape(draw, kind, box, COLORS[color])
        shapes.append(ShapeObj(kind=kind, color=color, box=box))
        taken.append(box)
    return img, Scene(width=width, height=height, background=bg, shapes=shapes, codes=codes)


def _rng_for(cfg: SyntheticConfig, split: str, idx: int) -> random.Random:
    # str seeds are hashed with sha512 by `random`, so this is stable across runs and platforms.
    return random.Random(f"awares-synth:{cfg.seed}:{_SPLIT_SALT.get(split, split)}:{idx}")


def _target_regions(box: tuple[int, int, int, int], q: int, width: int, height: int) -> list[str]:
    try:
        from awares_tool.crops import get_crop_set, regions_for_box
    except ImportError:  # crops module not available: quadrant membership holds by construction
        return [str(q)]
    return list(regions_for_box(box, get_crop_set("awares9"), width, height, rule="cover", threshold=1.0))


def generate_sample(idx: int | random.Random, cfg: SyntheticConfig | None = None, split: str = "train",
                    kind: Kind | None = None) -> SyntheticSample:
    """Generate one sample.

    Args:
        idx: Sample index (deterministic with ``cfg.seed`` and ``split``) or a ready ``random.Random``.
        cfg: Generator settings (defaults if ``None``).
        split: ``train``, ``val`` or ``test``; each split draws from its own seed stream.
        kind: Force a question kind instead of drawing it from the configured mix.
    """
    cfg = cfg or SyntheticConfig()
    if isinstance(idx, random.Random):
        rng, sid = idx, f"{split}-r{idx.randint(0, 10**9)}"
    else:
        rng, sid = _rng_for(cfg, split, idx), f"{split}-{idx:06d}"
    fs = rng.randint(*cfg.font_size_range) if cfg.font_size_range else cfg.font_size
    q = rng.randrange(4)
    n_shapes = rng.randint(cfg.min_shapes, max(cfg.min_shapes, cfg.max_shapes))
    img, scene = draw_scene(rng, cfg.width, cfg.height, font_sizes=[fs], n_shapes=n_shapes, quadrant=q,
                            shape_frac=cfg.shape_frac)
    if kind is None:
        kind = "code" if rng.random() < cfg.crop_share else rng.choice(("color", "shape", "count"))
    code = scene.codes[0]
    evidence: tuple[int, int, int, int] | None = None
    targets: list[str] = []
    if kind == "code":
        question, answers = QUESTIONS["code"], [code.text]
        evidence = code.box
        targets = _target_regions(code.box, q, cfg.width, cfg.height)
    elif kind == "count":
        n = len(scene.shapes)
        question, answers = QUESTIONS["count"], [str(n), ["zero", "one", "two", "three"][n]]
    else:
        s = rng.choice(scene.shapes)
        if kind == "color":
            question, answers = QUESTIONS["color"].format(shape=s.kind), [s.color]
        else:
            question, answers = QUESTIONS["shape"].format(color=s.color), [s.kind]
    return SyntheticSample(id=sid, image=img, question=question, answers=answers, needs_crop=kind == "code",
                           kind=kind, evidence_box=evidence, target_regions=targets, font_size=fs, scene=scene)


def write_split(out_dir: str | Path, n: int, cfg: SyntheticConfig | None = None, split: str = "train") -> Path:
    """Write ``n`` samples as PNG files plus a datasets-compatible ``records.jsonl``.

    Returns:
        The path of ``records.jsonl`` (image paths in it are relative to its folder).
    """
    cfg = cfg or SyntheticConfig()
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    path = out / "records.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            s = generate_sample(i, cfg, split)
            rel = f"images/{s.id}.png"
            s.image.save(out / rel, format="PNG")
            rec = {"id": s.id, "split": split, "image": rel, "question": s.question, "answers": s.answers,
                   "needs_crop": s.needs_crop, "kind": s.kind,
                   "evidence_box": list(s.evidence_box) if s.evidence_box else None,
                   "target_regions": s.target_regions, "font_size": s.font_size,
                   "width": cfg.width, "height": cfg.height}
            fh.write(json.dumps(rec) + "\n")
    logger.info("wrote %d %s samples to %s", n, split, path)
    return path
