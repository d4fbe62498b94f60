"""Write a trained tiny model as a self-contained folder: weights, processor and ``awares.json``."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from awares_train.tiny import CROPS_TURN_TEXT, IMAGE_SIZE, LOWRES_FACTOR, SYSTEM_PROMPT

__all__ = ["model_card", "export_model", "replace_folder"]

logger = logging.getLogger(__name__)

DEFAULT_FONT = 28


def model_card(metrics: dict[str, Any], training: dict[str, Any], font_size: int = DEFAULT_FONT,
               max_pixels: int | None = None) -> dict[str, Any]:
    """The ``awares-model-card/1`` record the inference loop reads (``max_pixels``: the processor's cap, if set)."""
    card = {"format": "awares-model-card/1", "family": "qwen2.5-vl", "crop_set": "awares9",
            "lowres": {"kind": "scale", "factor": LOWRES_FACTOR}, "system_prompt": SYSTEM_PROMPT,
            "crops_turn_text": CROPS_TURN_TEXT, "request_format": "text", "image_size": [IMAGE_SIZE, IMAGE_SIZE],
            "font_size": font_size, "metrics": metrics, "training": training}
    if max_pixels is not None:
        card["max_pixels"] = max_pixels
    return card


def export_model(model: Any, tokenizer: Any, out: Path, metrics: dict[str, Any], training: dict[str, Any],
                 max_pixels: int | None = None) -> None:
    """Save into a temp folder, then swap it in, so ``out`` is always a complete model.

    ``max_pixels`` caps the processor (and is written into the card); None keeps the tiny default (1024 tokens).
    """
    from awares_train.tiny.model import MAX_PIXELS, build_processor

    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    build_processor(tokenizer, max_pixels=max_pixels or MAX_PIXELS).save_pretrained(tmp)
    card = model_card(metrics, training, max_pixels=max_pixels)
    (tmp / "awares.json").write_text(json.dumps(card, indent=2) + "\n")
    replace_folder(tmp, out)
    logger.info("exported model to %s", out)


def replace_folder(tmp: Path, out: Path) -> None:
    """Make the finished ``tmp`` folder ``out`` (world-readable), never leaving ``out`` half-written or gone."""
    for f in tmp.iterdir():  # safetensors writes 0600; the package data must be world-readable
        f.chmod(0o644)
    old = out.with_name(out.name + ".old")
    if out.exists():
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old)
