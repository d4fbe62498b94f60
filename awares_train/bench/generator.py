"""The generator: one item per ``(seed, split, index)``, written as PNGs plus ``items.jsonl``.

Decisions for one item, all drawn from one ``random.Random`` seeded by ``(profile, seed, split, index)``:

1. fixed first, independently of each other: the kind (document / chart / scene); the label (answerable from
   the low-res view with probability ``lowres_share``, else needs a crop); the question template (two-crop
   templates with probability ``pair_share``); whether the image is above the pixel cap
   (``above_cap_share``); the target: one region of ``awares9`` or a diagonal pair of quarters. So templates,
   targets and the above-cap share are the same for both labels: the question says nothing about the label;
2. redrawn until the item fits: the image size (an aspect ratio of the kind, long side log-uniform over the
   profile's range on the asked side of the cap) and the evidence's digit height in the low-res view,
   log-uniform over the band of the label (readable: ``[threshold * margin, max_readable * threshold]``;
   unreadable: under ``threshold / margin`` but at least ``threshold * margin`` in the target crop), turned
   into a font size;
3. the drawing (:mod:`.documents`, :mod:`.charts`, :mod:`.scenes`), which places the evidence so that it maps
   to the target; every evidence box is checked with :func:`awares_tool.crops.regions_for_box`. With
   ``balance_sizes`` the same item is also drawn with the other label on a side stream, and the size is kept
   only if both fit: large text needs large images, and without this the image size would give the label away.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from awares_tool.crops import Box
from awares_tool.episode.costs import oracle_rtr as episode_oracle_rtr
from awares_tool.images.lowres import ScalePolicy
from awares_tool.errors import AwaresError

from .canvas import RenderContext, Rendered
from . import charts, documents, scenes
from .placement import maps_to, sample_targets
from .profiles import ASPECTS, BenchProfile, get_profile
from .readability import Readability, ViewScales, digit_height, font_for_digit_height, readability, view_scales

__all__ = ["KINDS", "SPLITS", "BenchConfig", "BenchItem", "GenerationError", "generate_item", "iter_items",
           "write_split", "split_stats"]

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("document", "chart", "scene")
SPLITS: tuple[str, ...] = ("train", "val", "test")
GENERATOR_VERSION = "awares-bench/1"
_RENDERERS: dict[str, Callable[[RenderContext], Rendered | None]] = {
    "document": documents.render_document, "chart": charts.render_chart, "scene": scenes.render_scene,
}
_TEMPLATES: dict[str, Callable[[str, bool], tuple[str, ...]]] = {
    "document": documents.templates, "chart": charts.templates, "scene": scenes.templates,
}
_MIN_SHORT_SIDE = 112
#: Lines of low-res-readable text the short side must hold, per kind: below that, the version of an item that
#: is answerable from the low-res view cannot be drawn (a chart needs a legend or labelled bars and a baseline).
_MIN_LINES = {"document": 5, "chart": 7, "scene": 4}


class GenerationError(AwaresError):
    """An item could not be drawn with these settings (e.g. a threshold so large that no text fits)."""


class BenchConfig(BaseModel):
    """Settings of one benchmark; with the split and index they determine every byte of an item."""

    model_config = ConfigDict(extra="forbid")

    profile: str = Field("qwen2.5-vl", description="Reader profile: qwen2.5-vl or tiny.")
    seed: int = 0
    lowres_share: float = Field(0.78, ge=0.0, le=1.0, description="Share of items answerable from the low-res view.")
    pair_share: float = Field(0.1, ge=0.0, le=1.0, description="Share of items whose evidence is two boxes in two crops.")
    above_cap_share: float | None = Field(0.2, ge=0.0, le=1.0, description=(
        "Share of images larger than the profile's pixel cap (None: whatever the log-uniform sizes give, about "
        "half, and more after the layouts that need room)."))
    kinds: dict[str, float] = Field(default_factory=lambda: dict.fromkeys(KINDS, 1.0),
                                    description="Relative weight of each item kind.")
    threshold_px: float | None = Field(None, gt=0, description="Override the profile's readability threshold.")
    margin: float | None = Field(None, ge=1.0, description="Override the profile's margin around the threshold.")
    max_attempts: int = Field(400, ge=1, description="Redraws per item before giving up.")
    balance_sizes: bool = Field(True, description=(
        "Keep a size only if the item also fits with the other label (drawn on a side stream), so that image "
        "sizes do not differ between labels; about twice the drawing time."))

    @field_validator("kinds")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(KINDS))
        if unknown or not any(w > 0 for w in v.values()) or any(w < 0 for w in v.values()):
            raise ValueError(f"kinds must weight some of {KINDS} with non-negative numbers, got {v}")
        return v

    def resolved_profile(self) -> BenchProfile:
        overrides = {k: v for k, v in (("threshold_px", self.threshold_px), ("margin", self.margin)) if v is not None}
        return get_profile(self.profile, **overrides)


class BenchItem(BaseModel):
    """One benchmark question; the first fields are what :func:`load_eval_items` reads."""

    id: str
    image: str = Field(description="Image path relative to the items file.")
    question: str
    answers: list[str]
    benchmark: str = Field(description="Item kind: document, chart or scene.")
    metric: str
    needs_crop: bool
    target_regions: list[str] = Field(description="Crops to request ([] when the low-res view suffices).")
    split: str
    template: str = Field(description="Question template; the same templates occur with both labels.")
    answer_type: str
    evidence_regions: list[str] = Field(description="Crop(s) holding the evidence, whatever the label.")
    evidence_boxes: list[Box] = Field(description="Evidence boxes (left, top, right, bottom) in image pixels.")
    width: int
    height: int
    aspect: str
    above_cap: bool = Field(description="width * height above the profile's pixel cap.")
    font_size: int
    digit_px: float = Field(description="Digit height of the evidence text at native resolution.")
    digit_px_lowres: float = Field(description="... in the low-res view (after the processor's resize).")
    digit_px_capped: float = Field(description="... in the full view after the pixel cap.")
    digit_px_crop: float = Field(description="... in the target crop(s) (the smallest of them).")
    readable_in_capped_full: bool
    profile: str

    def oracle_rtr(self, count: Callable[[int, int], int], *, lowres_factor: float = 0.5,
                   model_max_pixels: int | None = None, crop_max_pixels: int | None = None) -> float:
        """RTR when this item gets exactly its target crops (the episode's accounting, from sizes alone).

        ``count`` is the model's token counter; ``model_max_pixels`` its pixel cap (the first view is a scale of
        the capped full view); ``crop_max_pixels`` the loop's cap on every image shown, where the loop applies it.
        """
        value = episode_oracle_rtr((self.width, self.height), self.target_regions, counter=count,
                           lowres=ScalePolicy(factor=lowres_factor), model_max_pixels=model_max_pixels,
                           crop_max_pixels=crop_max_pixels)
        return float(value) if value is not None else float("nan")


def _sample_size(rng: random.Random, profile: BenchProfile, kind: str, above: bool | None) -> tuple[int, int, str]:
    """A size of an aspect ratio of ``kind``: long side log-uniform over the part of the profile's range that is
    above (or below) the pixel cap as asked, or over the whole range when ``above`` is None."""
    for _ in range(50):
        name, aspect = rng.choice(ASPECTS[kind])
        stretch = max(aspect, 1 / aspect)  # long side = sqrt(pixels * stretch)
        lo, hi = float(profile.min_side), float(profile.max_side)
        if profile.max_image_pixels:
            hi = min(hi, math.sqrt(profile.max_image_pixels * stretch))
        readable_native = profile.readable_px / profile.lowres_factor  # digit height readable at low res
        lo = max(lo, max(_MIN_SHORT_SIDE, _MIN_LINES[kind] * readable_native) * stretch)
        at_cap = math.sqrt(profile.max_pixels * stretch)
        if above is True:
            lo = max(lo, at_cap + 1)
        elif above is False:
            hi = min(hi, at_cap)
        if lo > hi:
            continue
        long = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        w, h = (long, long / aspect) if aspect >= 1 else (long * aspect, long)
        w, h = int(w), int(h)
        if min(w, h) >= _MIN_SHORT_SIDE and (above is None or (w * h > profile.max_pixels) == above):
            return w, h, name
    side = {True: "above its pixel cap ", False: "below its pixel cap ", None: ""}[above]
    need = max(_MIN_SHORT_SIDE, _MIN_LINES[kind] * profile.readable_px / profile.lowres_factor)
    raise GenerationError(
        f"profile {profile.name!r} has no {kind} size {side}whose short side holds {_MIN_LINES[kind]} lines of text "
        f"readable at low res ({need:.0f} px at threshold {profile.threshold_px} px); lower the threshold, widen "
        "min_side/max_side or set above_cap_share to None")


def _digit_band(profile: BenchProfile, needs_crop: bool, low_scale: float, crop_scale: float,
                full_scale: float) -> tuple[float, float]:
    """Allowed digit heights in the low-res view for this label.

    Unreadable text is unreadable at low res, readable (with the margin) in the target crop, and no smaller than
    ``min_unreadable`` of the threshold in the full view the model would see: above the pixel cap that view is
    itself downscaled, so some text there is readable only in a crop (the case where AwaRes can beat full res).
    """
    thr, m = profile.threshold_px, profile.margin
    if not needs_crop:
        return thr * m, thr * profile.max_readable
    return max(profile.min_unreadable * thr * low_scale / full_scale, thr * m * low_scale / crop_scale), thr / m


def _draw_digit_size(rng: random.Random, profile: BenchProfile, scales: ViewScales, targets: list[str], label: bool,
                     band: tuple[float, float]) -> tuple[int, Readability] | None:
    """A font size whose digit height in the low-res view falls in ``band`` (log-uniform), or None."""
    low_px = math.exp(rng.uniform(math.log(band[0]), math.log(band[1])))
    size = font_for_digit_height(low_px / scales.lowres)
    read = readability(profile, scales, digit_height(size), targets)
    thr, m = profile.threshold_px, profile.margin
    low = read.digit_px_lowres
    ok = (low < thr / m and read.digit_px_crop >= thr * m) if label else low >= thr * m
    return (size, read) if ok else None


def _render(kind: str, ctx: RenderContext) -> Rendered | None:
    """Draw with the kind's renderer; None when it does not fit or its evidence misses the targets."""
    rendered = _RENDERERS[kind](ctx)
    if rendered is None:
        return None
    mapped = [maps_to(box, ctx.width, ctx.height) for box in rendered.evidence]
    if mapped != [[t] for t in ctx.targets]:
        log.debug("%s: evidence maps to %s, not %s; redrawing", kind, mapped, ctx.targets)
        return None
    return rendered


def _rng(cfg: BenchConfig, split: str, index: int) -> random.Random:
    # a str seed is hashed with sha512 by `random`: stable across runs, platforms and Python versions
    return random.Random(f"awares-bench:{cfg.profile}:{cfg.seed}:{split}:{index}")


def generate_item(cfg: BenchConfig, split: str, index: int) -> tuple[BenchItem, Image.Image]:
    """Draw item ``index`` of ``split``; the same arguments give the same item and the same pixels.

    Raises:
        GenerationError: no layout fitted in ``cfg.max_attempts`` redraws.
    """
    profile = cfg.resolved_profile()
    rng = _rng(cfg, split, index)
    kinds = [k for k in KINDS if cfg.kinds.get(k, 0) > 0]
    kind = rng.choices(kinds, weights=[cfg.kinds[k] for k in kinds])[0]
    needs_crop = rng.random() >= cfg.lowres_share
    # the question template (and with it one or two evidence boxes) is fixed before anything is redrawn, so
    # that templates occur in the same proportions with both labels
    pair = bool(_TEMPLATES[kind](profile.vocabulary, True)) and rng.random() < cfg.pair_share
    template = rng.choice(_TEMPLATES[kind](profile.vocabulary, pair))
    above = None if cfg.above_cap_share is None else rng.random() < cfg.above_cap_share
    # the target too: redrawing it with the size would favour the regions where layouts fit most easily
    targets = sample_targets(rng, 1.0 if pair else 0.0, pair)
    for _ in range(cfg.max_attempts):
        width, height, aspect = _sample_size(rng, profile, kind, above)
        scales = view_scales(profile, width, height)
        crop_scale = min(scales.crops[t] for t in targets)
        # a size and target are kept only if both labels are possible there, so that accepted sizes do not
        # depend on the label through this step
        bands = {label: _digit_band(profile, label, scales.lowres, crop_scale, scales.full) for label in (True, False)}
        if any(lo > hi for lo, hi in bands.values()):
            continue
        # a digit height for each label (own label first, so the draw order is fixed)
        fonts: dict[bool, tuple[int, Readability]] = {}
        for label in (needs_crop, not needs_crop):
            got = _draw_digit_size(rng, profile, scales, targets, label, bands[label])
            if got is not None:
                fonts[label] = got
        if needs_crop not in fonts or (cfg.balance_sizes and len(fonts) < 2):
            continue
        size, read = fonts[needs_crop]
        if cfg.balance_sizes:
            # draw the same item with the other label on a side stream and keep this size only if that fits
            # too: then which sizes survive does not depend on the label, and image size says nothing about it
            side = random.Random(rng.getrandbits(64))
            other = fonts[not needs_crop][0]
            if _render(kind, RenderContext(side, width, height, profile, targets, other, digit_height(other),
                                           template)) is None:
                continue
        rendered = _render(kind, RenderContext(rng, width, height, profile, targets, size, digit_height(size), template))
        if rendered is None:
            continue
        item_id = f"{split}-{index:06d}"
        item = BenchItem(
            id=item_id, image=f"images/{item_id}.png", question=rendered.question, answers=rendered.answers,
            benchmark=kind, metric=rendered.metric, needs_crop=needs_crop,
            target_regions=sorted(targets) if needs_crop else [], split=split, template=rendered.template,
            answer_type=rendered.answer_type, evidence_regions=sorted(targets),
            evidence_boxes=[tuple(int(v) for v in b) for b in rendered.evidence], width=width, height=height,
            aspect=aspect, above_cap=width * height > profile.max_pixels, font_size=size,
            digit_px=read.digit_px_full, digit_px_lowres=read.digit_px_lowres, digit_px_capped=read.digit_px_capped,
            digit_px_crop=read.digit_px_crop, readable_in_capped_full=read.readable_in_capped_full,
            profile=profile.name,
        )
        return item, rendered.image
    raise GenerationError(
        f"no {kind} item fitted for {split}[{index}] after {cfg.max_attempts} draws with profile {profile.name!r} "
        f"(threshold {profile.threshold_px} px, margin {profile.margin}); lower the threshold or the margin"
    )


def iter_items(cfg: BenchConfig, split: str, n: int, start: int = 0) -> Iterator[tuple[BenchItem, Image.Image]]:
    """Items ``start .. start + n - 1`` of ``split``, in order."""
    for i in range(start, start + n):
        yield generate_item(cfg, split, i)


def _write_one(args: tuple[dict, str, int, str]) -> str:
    cfg_dict, split, index, out = args
    item, image = generate_item(BenchConfig.model_validate(cfg_dict), split, index)
    image.save(Path(out) / item.image, format="PNG")
    return item.model_dump_json()


def write_split(out_dir: str | Path, cfg: BenchConfig, split: str, n: int, *, workers: int = 1,
                progress: bool = False) -> Path:
    """Write ``n`` items of ``split``: ``images/*.png``, ``items.jsonl``, ``settings.json`` and ``stats.json``.

    Args:
        out_dir: Folder for this split (created).
        cfg: Generator settings.
        split: ``train``, ``val`` or ``test`` (any name works; each name is its own random stream).
        n: Number of items.
        workers: Processes drawing in parallel (output is identical for any number).
        progress: Show a progress bar (tqdm).

    Returns:
        The path of ``items.jsonl``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(cfg.model_dump(), split, i, str(out)) for i in range(n)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"awares-bench {split}", unit="item")
    lines: list[str] = []
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for line in pool.map(_write_one, jobs, chunksize=4):
                lines.append(line)
                if bar:
                    bar.update()
    else:
        for job in jobs:
            lines.append(_write_one(job))
            if bar:
                bar.update()
    if bar:
        bar.close()
    path = out / "items.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    profile = cfg.resolved_profile()
    settings = {"generator": GENERATOR_VERSION, "split": split, "n": n, "config": cfg.model_dump(),
                "profile": profile.model_dump()}
    (out / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    items = [BenchItem.model_validate_json(line) for line in lines]
    stats = split_stats(items)
    count = profile.token_family().count
    oracle = {it.id: it.oracle_rtr(count, lowres_factor=profile.lowres_factor, model_max_pixels=profile.max_pixels)
              for it in items}
    stats["oracle_rtr"] = {
        name: round(sum(oracle[it.id] for it in group) / len(group), 4)
        for name, group in (("overall", items), ("below-cap", [it for it in items if not it.above_cap]),
                            ("above-cap", [it for it in items if it.above_cap])) if group
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    log.info("wrote %d %s items to %s", n, split, path)
    return path


def split_stats(items: list[BenchItem]) -> dict:
    """Label mix, targets, kinds, templates per label and sizes of a list of items."""
    n = len(items)
    crop = [it for it in items if it.needs_crop]
    by_template: dict[str, Counter] = {}
    for it in items:
        by_template.setdefault(it.template, Counter())["crop" if it.needs_crop else "lowres"] += 1
    return {
        "n": n,
        "lowres_share": round(1 - len(crop) / n, 4) if n else None,
        "needs_crop": len(crop),
        "targets": dict(sorted(Counter("+".join(it.target_regions) for it in crop).items())),
        "evidence_regions": dict(sorted(Counter("+".join(it.evidence_regions) for it in items).items())),
        "kinds": dict(Counter(it.benchmark for it in items)),
        "metrics": dict(Counter(it.metric for it in items)),
        "templates": {k: dict(v) for k, v in sorted(by_template.items())},
        "above_cap": sum(it.above_cap for it in items),
        "above_cap_unreadable_in_capped_full": sum(it.above_cap and not it.readable_in_capped_full for it in items),
        "sizes": {"min_long_side": min((max(it.width, it.height) for it in items), default=None),
                  "max_long_side": max((max(it.width, it.height) for it in items), default=None),
                  "aspects": dict(Counter(it.aspect for it in items))},
    }

