"""Training/eval examples for the tiny model: views of a synthetic sample and the conversations on them.

Views (448 px task image): ``full`` (native, 256 tokens), ``low`` (half each side, bicubic, 64 tokens,
the AwaRes low-res view) and ``crop`` (the awares9 quadrant holding the code, native, 64 tokens).
Conversations are exactly what the inference loop sends (see ``awares_train.tiny`` prompts).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from awares_train.data.synthetic import SyntheticConfig, SyntheticSample, generate_sample, quadrant_box
from awares_train.tiny import CROPS_TURN_TEXT, SYSTEM_PROMPT
from awares_train.tiny.batches import ConversationEncoder, collate, n_image_tokens, patchify
from awares_train.tiny.dense import token_labels

__all__ = ["Example", "view", "base_example", "awares_example", "request_text", "vqa_batch", "build_batch", "crop_box",
           "where_sample", "WHERE_QUESTION", "QUADRANT_NAMES"]

WHERE_QUESTION = "Where is the code?"
QUADRANT_NAMES = ("top-left", "top-right", "bottom-left", "bottom-right")


@dataclass
class Example:
    """One conversation plus its images (in order) and dense token labels per image."""

    conv: list[tuple[str, list[tuple[str, Any]]]]
    images: list[Any]
    dense: list[torch.Tensor] = field(default_factory=list)
    sample: SyntheticSample | None = None


def request_text(region: str) -> str:
    """The assistant's crop request, python-list style with single quotes."""
    return f"GET_CROPS: ['{region}']"


def crop_box(s: SyntheticSample, region: str) -> tuple[int, int, int, int]:
    try:
        from awares_tool.crops import get_crop_set

        return tuple(get_crop_set("awares9").box(region, s.image.width, s.image.height))  # type: ignore[return-value]
    except ImportError:
        return quadrant_box(int(region), s.image.width, s.image.height)


def view(s: SyntheticSample, kind: str, region: str | None = None) -> tuple[Any, torch.Tensor]:
    """Image and dense labels of one view of ``s``."""
    w, h = s.image.width, s.image.height
    if kind == "full":
        return s.image, token_labels(s.scene, 1.0, w, h)
    if kind == "low":
        lw, lh = w // 2, h // 2
        return s.image.resize((lw, lh), Image.BICUBIC), token_labels(s.scene, 0.5, lw, lh, digits=False)
    if kind == "crop":
        region = region if region is not None else s.target_regions[0]
        b = crop_box(s, region)
        return s.image.crop(b), token_labels(s.scene, 1.0, b[2] - b[0], b[3] - b[1], offset=(b[0], b[1]))
    raise ValueError(f"unknown view {kind!r}")


def base_example(s: SyntheticSample, kind: str) -> Example:
    """No system prompt: one image (``full``/``low``/``crop``) + question -> answer."""
    img, lab = view(s, kind)
    conv = [("user", [("image", n_image_tokens(*img.size)), ("text", s.question)]),
            ("assistant", [("text", s.answers[0])])]
    return Example(conv, [img], [lab], s)


def awares_example(s: SyntheticSample) -> Example:
    """System + low view; either the direct answer or request -> crop turn -> answer."""
    low, llab = view(s, "low")
    conv: list[tuple[str, list[tuple[str, Any]]]] = [
        ("system", [("text", SYSTEM_PROMPT)]),
        ("user", [("image", n_image_tokens(*low.size)), ("text", s.question)])]
    if not s.needs_crop:
        conv.append(("assistant", [("text", s.answers[0])]))
        return Example(conv, [low], [llab], s)
    region = s.target_regions[0]
    crop, clab = view(s, "crop", region)
    conv += [("assistant", [("text", request_text(region))]),
             ("user", [("image", n_image_tokens(*crop.size)), ("text", CROPS_TURN_TEXT.format(regions=region))]),
             ("assistant", [("text", s.answers[0])])]
    return Example(conv, [low, crop], [llab, clab], s)


def where_sample(s: SyntheticSample) -> SyntheticSample:
    """The same code image asked *where* the code is (answer: its quadrant's name).

    The base model's grounding task: a pretrained VLM such as Qwen2.5-VL knows where things are in an
    image before AwaRes training teaches it to request that region; a model trained from random weights
    has to be taught, and the box is visible in the low-res view even where its digits are not.
    """
    if s.kind != "code":
        raise ValueError("where_sample needs a code sample")
    return s.model_copy(update={"question": WHERE_QUESTION,
                                "answers": [QUADRANT_NAMES[int(s.target_regions[0])]], "needs_crop": False})


def vqa_batch(examples: list[Example], enc: ConversationEncoder) -> dict[str, torch.Tensor]:
    """Model inputs with assistant-only labels; images of any size (sides multiples of 28), in order."""
    seqs = [enc.encode(e.conv) for e in examples]
    rows, grids = [], []
    for e in examples:
        for img in e.images:
            r, g = patchify(img)
            rows.append(r)
            grids.append(g)
    return collate(seqs, rows, grids, enc.tok.pad_token_id, enc.image_pad)


def build_batch(examples: list[Example], enc: ConversationEncoder) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Model inputs (with labels) and the concatenated dense labels of all images."""
    return vqa_batch(examples, enc), torch.cat([d for e in examples for d in e.dense])


def sample_stream(cfg: SyntheticConfig, split: str, tag: str) -> Any:
    """Infinite deterministic stream of samples (each index its own rng)."""
    i = 0
    while True:
        yield generate_sample(random.Random(f"{tag}:{split}:{cfg.seed}:{i}"), cfg, split)
        i += 1
