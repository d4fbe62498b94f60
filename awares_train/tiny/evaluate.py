"""Evaluation of the tiny model: fast teacher-forced exact match and the real two-turn generate loop.

Teacher-forced exact match of an assistant turn (argmax right at every label position, ``<|im_end|>``
included) equals greedy-decoding exact match, because greedy decoding conditions on the same prefix as
long as every earlier token was right. It costs one forward pass, so training can evaluate often.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import torch

from awares_train.data.synthetic import SyntheticConfig, SyntheticSample, generate_sample
from awares_train.tiny.batches import ConversationEncoder
from awares_train.tiny.tasks import Example, build_batch

__all__ = ["turn_exact", "eval_examples", "heldout_samples"]

logger = logging.getLogger(__name__)


def heldout_samples(n: int, cfg: SyntheticConfig, kind: str | None, split: str = "val") -> list[SyntheticSample]:
    """``n`` fixed held-out samples (optionally of one question kind; ``other`` = any non-code kind)."""
    out = []
    for i in range(n):
        rng = random.Random(f"heldout:{split}:{cfg.seed}:{kind}:{cfg.font_size}:{i}")
        k = kind
        if kind == "other":
            k = rng.choice(("color", "shape", "count"))
        out.append(generate_sample(rng, cfg, split, kind=k))  # type: ignore[arg-type]
    return out


@torch.no_grad()
def turn_exact(model: Any, batch: dict[str, torch.Tensor]) -> list[list[bool]]:
    """Per sample, per assistant turn: is the greedy argmax right at every label position?"""
    batch = {k: v.to(model.device) for k, v in batch.items()}
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits
    pred = logits[:, :-1].argmax(-1)
    tgt = labels[:, 1:]
    out = []
    for i in range(tgt.shape[0]):
        m = tgt[i] != -100
        idx = m.nonzero().flatten().tolist()
        spans: list[list[int]] = []
        for j in idx:
            if spans and spans[-1][-1] == j - 1:
                spans[-1].append(j)
            else:
                spans.append([j])
        out.append([bool((pred[i, sp] == tgt[i, sp]).all()) for sp in spans])
    return out


def eval_examples(model: Any, enc: ConversationEncoder, examples: list[Example], bs: int = 16) -> list[list[bool]]:
    """Teacher-forced per-turn exactness for a list of examples (batched by structure)."""
    was = model.training
    model.eval()
    res: list[list[bool]] = [[] for _ in examples]
    groups: dict[tuple, list[int]] = {}
    for i, e in enumerate(examples):
        groups.setdefault(tuple(img.size for img in e.images), []).append(i)
    for idxs in groups.values():
        for k in range(0, len(idxs), bs):
            part = idxs[k:k + bs]
            batch, _ = build_batch([examples[i] for i in part], enc)
            for i, r in zip(part, turn_exact(model, batch)):
                res[i] = r
    model.train(was)
    return res
