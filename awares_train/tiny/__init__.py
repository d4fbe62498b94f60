"""A tiny Qwen2.5-VL trained from random weights on synthetic data: the package's offline default model.

Stages (each resumable, each a CLI):

* ``python -m awares_train.tiny.train_base --out DIR``: dense vision pre-training (stage A), then
  VQA without a system prompt on full, crop and low-res views (stage B).
* ``python -m awares_train.tiny.train_bench_base --out DIR``: the base adapted to awares-bench (documents,
  charts, scenes at the profile's pixel cap), the starting point of ``awares-train reproduce``.
* ``python -m awares_train.tiny.ship WORK``: make a model of an ``awares-train reproduce`` run (the full
  pipeline: trajectories, SFT, GRPO) the embedded ``tiny-awares``, as the shipped one was.

The prompts below are the text protocol of the first embedded default (trained by the hand-written stage C,
now replaced by the package's SFT and GRPO); the tiny tokenizer's vocabulary is built from them.
"""

from __future__ import annotations

SYSTEM_PROMPT = (
    "Answer in one word. If you need to read small text, reply GET_CROPS: ['k'] with region k: "
    "0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, 4 center, 5 top, 6 bottom, 7 left, 8 right."
)
CROPS_TURN_TEXT = "Crop {regions} at full resolution. Answer the question."
IMAGE_SIZE = 448
LOWRES_FACTOR = 0.5
