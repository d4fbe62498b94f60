"""Benchmark items as the tiny model sees them: low-res, capped full and crop views, and which are readable.

The base adaptation (:mod:`awares_train.tiny.stage_bench`) trains and evaluates the tiny model on
``awares-bench`` items of the ``tiny`` profile as plain VQA (no system prompt). Every view is made exactly as
inference makes it: the first view and the crops by :class:`~awares_tool.episode.CropEpisode` (the one place
the protocol lives), then resized as the model's processor resizes it (``smart_resize`` under the profile's
pixel cap, bicubic), so the fast batches of :mod:`awares_train.tiny.batches` (which need sides that are
multiples of 28) get the same pixels the processor would produce.

Readability comes from the item's recorded digit heights (``awares_train.bench.readability``): the low-res view
is readable unless the item needs a crop, the capped full view when its digits are at least ``threshold *
margin`` px tall there, and the evidence crops always (the generator guarantees it).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from awares_tool.episode.episode import CropEpisode
from awares_tool.images.lowres import ScalePolicy
from awares_tool.protocol import GET_CROPS_TOOL, CropRequest
from awares_train.bench.generator import BenchConfig, BenchItem, generate_item
from awares_train.bench.profiles import BenchProfile, get_profile
from awares_train.tiny.batches import n_image_tokens
from awares_train.tiny.tasks import Example

__all__ = ["REGION_NAMES", "WHERE_PREFIX", "BenchViews", "processor_view", "item_views", "vqa_example",
           "where_answer", "where_example", "quarter_answer", "quarter_example", "REQUEST_PREFIX", "request_example", "tool_call_text", "call_example", "sft_system_text",
           "item_stream", "bench_profile"]

#: Names of the ``awares9`` regions as the tiny model's system prompt words them (grounding answers).
REGION_NAMES = {"0": "top-left", "1": "top-right", "2": "bottom-left", "3": "bottom-right", "4": "center",
                "5": "top", "6": "bottom", "7": "left", "8": "right"}
#: The grounding question: where in the image the evidence for a question lies (asked on the low-res view).
WHERE_PREFIX = "Where is it? "
#: The same question answered as the crop tool call SFT and GRPO train (see :func:`tool_call_text`).
REQUEST_PREFIX = "Which crops? "


def bench_profile() -> BenchProfile:
    """The ``tiny`` profile: the tiny model's pixel cap (448x448), its readability threshold and vocabulary."""
    return get_profile("tiny")


def processor_view(img: Image.Image, profile: BenchProfile) -> Image.Image:
    """``img`` resized as the tiny model's processor resizes it (``smart_resize`` under the profile's cap, bicubic)."""
    size = profile.token_family().resized_size(*img.size)
    img = img.convert("RGB")
    return img if img.size == size else img.resize(size, Image.BICUBIC)


@dataclass
class BenchViews:
    """One item and its three views, each already at the size the model receives."""

    item: BenchItem
    low: Image.Image
    full: Image.Image
    crops: list[Image.Image]
    readable_px: float
    unreadable_px: float

    @property
    def low_readable(self) -> bool:
        return not self.item.needs_crop

    @property
    def full_readable(self) -> bool:
        return self.item.digit_px_capped >= self.readable_px

    @property
    def one_box(self) -> bool:
        """The evidence is one box (the items :func:`quarter_answer` is defined for)."""
        return len(self.item.evidence_boxes) == 1

    @property
    def full_unreadable(self) -> bool:
        """The capped full view shows the evidence under the threshold's margin (above-cap items only)."""
        return self.item.digit_px_capped < self.unreadable_px

    def images(self, view: str) -> list[Image.Image]:
        if view == "low":
            return [self.low]
        if view == "full":
            return [self.full]
        if view == "crop":
            return list(self.crops)
        raise ValueError(f"unknown view {view!r}; use low, full or crop")


def item_views(item: BenchItem, image: Image.Image, profile: BenchProfile) -> BenchViews:
    """The low-res view, the capped full view and the evidence crop(s) of ``item`` as the model gets them."""
    episode = CropEpisode(image, lowres=ScalePolicy(factor=profile.lowres_factor), model_max_pixels=profile.max_pixels)
    low = episode.first_view()
    regions = item.evidence_regions
    turn = episode.fetch(CropRequest(regions=regions, form="text", raw=repr(regions)))
    return BenchViews(item=item, low=processor_view(low, profile), full=processor_view(image, profile),
                      crops=[processor_view(c, profile) for c in turn.images], readable_px=profile.readable_px,
                      unreadable_px=profile.unreadable_px)


def vqa_example(views: BenchViews, view: str) -> Example:
    """No system prompt: the view's image(s) and the question -> the first reference answer."""
    imgs = views.images(view)
    parts: list[tuple[str, Any]] = [("image", n_image_tokens(*im.size)) for im in imgs]
    conv = [("user", parts + [("text", views.item.question)]), ("assistant", [("text", views.item.answers[0])])]
    return Example(conv, imgs)


def where_answer(item: BenchItem) -> str:
    """Where the evidence lies, in the system prompt's region names (``top-left and bottom-right`` for pairs)."""
    return " and ".join(REGION_NAMES[r] for r in item.evidence_regions)


def quarter_answer(item: BenchItem) -> str:
    """The quarter holding the centre of the (first) evidence box, named as a region: grounding's coarse step.

    The regions of :func:`where_answer` hinge on whether a box crosses a midline or leaves the centre; the tiny
    base did not learn them (held-out 0.16-0.21 after 170 minutes), while this it learnt from 0.27 to 0.50 in a
    28-minute phase (held-out, greedy; measured 2026-12-04).
    """
    x0, y0, x1, y1 = item.evidence_boxes[0]
    row = 0 if (y0 + y1) / 2 < item.height / 2 else 2
    return REGION_NAMES[str(row + (0 if (x0 + x1) / 2 < item.width / 2 else 1))]


def _grounding_example(views: BenchViews, answer: str, prefix: str = WHERE_PREFIX) -> Example:
    parts: list[tuple[str, Any]] = [("image", n_image_tokens(*views.low.size)),
                                    ("text", prefix + views.item.question)]
    return Example([("user", parts), ("assistant", [("text", answer)])], [views.low])


def where_example(views: BenchViews) -> Example:
    """Grounding on the low-res view: the question prefixed by :data:`WHERE_PREFIX` -> the evidence's region(s).

    The object a question names (a colour, a shape, a legend entry) is visible at low resolution even where its
    digits are not; a pretrained VLM brings this grounding to AwaRes training, a model from random weights has to
    be taught it (as ``tasks.where_sample`` does for the synthetic task).
    """
    return _grounding_example(views, where_answer(views.item))


def quarter_example(views: BenchViews) -> Example:
    """The same grounding question -> :func:`quarter_answer` (for one-box items)."""
    return _grounding_example(views, quarter_answer(views.item))


def tool_call_text(regions: Sequence[str]) -> str:
    """A ``get_crops`` call for ``regions`` as the tiny chat template renders an assistant's tool call.

    The reproduction's SFT (``request_format: tool``) and GRPO's rollouts train this form, not the text form
    ``GET_CROPS: ['4']``; ``tests/test_tiny_bench_views.py`` checks it token for token against the template.
    """
    return "<tool_call>\n" + json.dumps({"name": GET_CROPS_TOOL, "arguments": {"regions": list(regions)}}) + "\n</tool_call>"


def request_example(views: BenchViews) -> Example:
    """Grounding in the crop tool's own tokens: ``Which crops? <question>`` -> the ``get_crops`` call.

    The tool call names regions by number, :func:`where_example` by words: a base that learnt the words named
    the right region 43% of the time, yet its SFT model requested the right crop 13% of the time. A first version
    of this example answered in the text form (``GET_CROPS: ['4']``), which SFT never trains: the base learnt it
    (0.435 teacher-forced) and its SFT model still requested the right crop 11% of the time (measured
    2026-12-04). The answer is now the call SFT's crop turns end in (:func:`tool_call_text`).
    """
    return _grounding_example(views, tool_call_text(views.item.evidence_regions), REQUEST_PREFIX)


#: The reproduction's SFT settings: its system prompt is the context of :func:`call_example`.
SFT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sft_tiny_bench.yaml"


@functools.cache
def sft_system_text() -> str:
    """The system turn's text as the reproduction's SFT renders it: its system prompt, then the tiny chat
    template's one-line tool list (``tests/test_tiny_bench_views.py`` checks the rendering is the same)."""
    import yaml

    prompt = yaml.safe_load(SFT_CONFIG.read_text())["system_prompt"]
    return f"{prompt}\n\nTools: {GET_CROPS_TOOL}"


def call_example(views: BenchViews) -> Example:
    """The first turn of an SFT crop example: SFT's system prompt, the low-res view, the question -> the call.

    :func:`request_example` teaches the call under its own prefix: a base that learnt it there (0.23 of
    held-out crop-needing items, teacher-forced) made 0.00 in SFT's context (system prompt, no prefix), and its
    SFT model requested the right crop 15% of the time (measured 2026-12-04). Only for items that need a crop
    (the call is their right first turn); SFT teaches when to answer instead.
    """
    parts: list[tuple[str, Any]] = [("image", n_image_tokens(*views.low.size)), ("text", views.item.question)]
    return Example([("system", [("text", sft_system_text())]), ("user", parts),
                    ("assistant", [("text", tool_call_text(views.item.evidence_regions))])], [views.low])


def item_stream(cfg: BenchConfig, split: str, start: int = 0) -> Iterator[tuple[BenchItem, Image.Image]]:
    """Items ``start, start + 1, ...`` of ``split`` (an endless, deterministic stream of the generator)."""
    i = start
    while True:
        yield generate_item(cfg, split, i)
        i += 1
