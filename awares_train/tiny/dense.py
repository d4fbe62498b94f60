"""Dense per-token supervision of the vision tower (stage A and an auxiliary loss later).

Why: a randomly initialised tower gives near-constant features and the language model learns to
ignore them (tiny-vlm note, experiment 1). Labelling every merged 28x28 token with what it shows
(digits in up to 4 left-to-right slots, code box or not, shape type, colour) gives ~64 labelled
tokens per image instead of a 3-token answer, and gets the tower reading within minutes.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from awares_train.data.synthetic import COLORS, SHAPES, Scene, draw_scene, draw_shape, generate_sample, SyntheticConfig

__all__ = ["N_SLOTS", "HEAD_DIM", "token_labels", "dense_crop_example", "dense_low_example", "DenseHead", "dense_loss"]

N_SLOTS = 4
N_DIGIT = 11  # 0-9 + none
N_SHAPE = len(SHAPES) + 1
N_COLOR = len(COLORS) + 1
HEAD_DIM = N_SLOTS * N_DIGIT + 2 + N_SHAPE + N_COLOR
_COLOR_IDX = {c: i + 1 for i, c in enumerate(COLORS)}
_SHAPE_IDX = {s: i + 1 for i, s in enumerate(SHAPES)}


def _cell_majority(mask: np.ndarray, g_h: int, g_w: int, n_cls: int, min_frac: float) -> np.ndarray:
    cell = mask.shape[0] // g_h
    m = mask.reshape(g_h, cell, g_w, cell).transpose(0, 2, 1, 3).reshape(g_h * g_w, cell * cell)
    counts = np.stack([(m == k).sum(1) for k in range(n_cls)], 1)
    counts[:, 0] = 0
    lab = counts.argmax(1)
    lab[counts.max(1) < min_frac * cell * cell] = 0
    return lab


def token_labels(scene: Scene, scale: float, out_w: int, out_h: int, digits: bool = True,
                 offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Labels (tokens, N_SLOTS + 3) for a view of ``scene``: crop at ``offset``, resize by ``scale``.

    Columns: digit slots (10 = none, -100 = not supervised), box (0/1), shape index, colour index.
    """
    g_h, g_w = out_h // 28, out_w // 28
    lab = torch.full((g_h * g_w, N_SLOTS + 3), 0, dtype=torch.long)
    if digits:
        cells: list[list[tuple[float, int]]] = [[] for _ in range(g_h * g_w)]
        for code in scene.codes:
            for (cx, cy), ch in zip(code.char_centers, code.text):
                x, y = (cx - offset[0]) * scale, (cy - offset[1]) * scale
                if 0 <= x < out_w and 0 <= y < out_h:
                    cells[int(y // 28) * g_w + int(x // 28)].append((x, int(ch)))
        lab[:, :N_SLOTS] = N_DIGIT - 1
        for i, c in enumerate(cells):
            for j, (_, d) in enumerate(sorted(c)[:N_SLOTS]):
                lab[i, j] = d
    else:
        lab[:, :N_SLOTS] = -100
    shape_m = Image.new("L", (out_w, out_h), 0)
    color_m = Image.new("L", (out_w, out_h), 0)
    box_m = Image.new("L", (out_w, out_h), 0)
    ds, dc, db = ImageDraw.Draw(shape_m), ImageDraw.Draw(color_m), ImageDraw.Draw(box_m)
    ox, oy = offset

    def tr(box: Any) -> list[int]:
        return [round((box[0] - ox) * scale), round((box[1] - oy) * scale), round((box[2] - ox) * scale),
                round((box[3] - oy) * scale)]

    for s in scene.shapes:
        b = tr(s.box)
        draw_shape(ds, s.kind, b, _SHAPE_IDX[s.kind])
        draw_shape(dc, s.kind, b, _COLOR_IDX[s.color])
    for c in scene.codes:
        db.rectangle(tr(c.box), fill=1)
    lab[:, N_SLOTS] = torch.from_numpy(_cell_majority(np.asarray(box_m), g_h, g_w, 2, 0.12))
    lab[:, N_SLOTS + 1] = torch.from_numpy(_cell_majority(np.asarray(shape_m), g_h, g_w, N_SHAPE, 0.3))
    lab[:, N_SLOTS + 2] = torch.from_numpy(_cell_majority(np.asarray(color_m), g_h, g_w, N_COLOR, 0.3))
    return lab


def dense_crop_example(rng: random.Random, font_lo: int, font_hi: int = 40, size: int = 224) -> tuple[Any, torch.Tensor]:
    """A crop-like 224 canvas with 1-4 codes of mixed font size and 0-2 big shapes."""
    fonts = [rng.randint(font_lo, font_hi) for _ in range(rng.randint(1, 4))]
    img, scene = draw_scene(rng, size, size, font_sizes=fonts, n_shapes=rng.randint(0, 2), shape_frac=(0.2, 0.45))
    return img, token_labels(scene, 1.0, size, size)


def dense_low_example(rng: random.Random, cfg: SyntheticConfig) -> tuple[Any, torch.Tensor]:
    """The half-scale low-res view of a task image; digits unsupervised (the low view should not be read)."""
    s = generate_sample(rng, cfg)
    w, h = s.image.width // 2, s.image.height // 2
    return s.image.resize((w, h), Image.BICUBIC), token_labels(s.scene, 0.5, w, h, digits=False)


class DenseHead(torch.nn.Module):
    """Linear probe on merged vision tokens (LM width)."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(dim, HEAD_DIM)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.proj(feats)


def dense_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Digit-slot CE (none down-weighted) + 0.5 x (box + shape + colour) CE; also slot accuracy."""
    d = logits[:, :N_SLOTS * N_DIGIT].reshape(-1, N_DIGIT)
    dl = labels[:, :N_SLOTS].reshape(-1)
    w = torch.ones(N_DIGIT)
    w[N_DIGIT - 1] = 0.2
    o = N_SLOTS * N_DIGIT
    loss_d = torch.nn.functional.cross_entropy(d, dl, weight=w, ignore_index=-100) if (dl != -100).any() \
        else logits.sum() * 0
    loss_b = torch.nn.functional.cross_entropy(logits[:, o:o + 2], labels[:, N_SLOTS])
    loss_s = torch.nn.functional.cross_entropy(logits[:, o + 2:o + 2 + N_SHAPE], labels[:, N_SLOTS + 1])
    loss_c = torch.nn.functional.cross_entropy(logits[:, o + 2 + N_SHAPE:], labels[:, N_SLOTS + 2])
    with torch.no_grad():
        sel = (dl != -100) & (dl != N_DIGIT - 1)
        acc = (d.argmax(-1)[sel] == dl[sel]).float().mean().item() if sel.any() else float("nan")
        bsel = labels[:, N_SLOTS] == 1
        bacc = (logits[:, o:o + 2].argmax(-1)[bsel] == 1).float().mean().item() if bsel.any() else float("nan")
    return loss_d + 0.5 * (loss_b + loss_s + loss_c), {"digit_acc": acc, "box_recall": bacc,
                                                     "loss_digit": loss_d.item()}
