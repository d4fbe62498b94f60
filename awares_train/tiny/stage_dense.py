"""Stage A: dense per-token pre-training of the vision tower (tower + linear head only)."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch

from awares_train.data.synthetic import SyntheticConfig
from awares_train.tiny.batches import patchify
from awares_train.tiny.common import Budget, Clock, load_ckpt, lr_at, make_optimizer, save_ckpt
from awares_train.tiny.dense import DenseHead, dense_crop_example, dense_loss, dense_low_example

__all__ = ["dense_batch", "run_stage_a"]

logger = logging.getLogger(__name__)


def dense_batch(rng: random.Random, n_crop: int, n_low: int, font_lo: int,
                task_cfg: SyntheticConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel rows, grids and token labels for crop-like canvases plus low-res task views."""
    ex = [dense_crop_example(rng, font_lo) for _ in range(n_crop)] + [dense_low_example(rng, task_cfg)
                                                                        for _ in range(n_low)]
    rows, grids = zip(*(patchify(img) for img, _ in ex))
    return torch.cat(rows), torch.tensor(grids), torch.cat([lab for _, lab in ex])


def run_stage_a(model: Any, head: DenseHead, ckpt: Path, budget: Budget, *, lr: float = 2e-3, bs: int = 32,
                low_share: float = 0.25, font_lo: int = 20, font_min: int = 14, gate: float = 0.85,
                seed: int = 0, task_cfg: SyntheticConfig | None = None) -> None:
    """Train ``model.model.visual`` + ``head`` on dense labels for the ``budget`` (steps or minutes; resumable)."""
    task_cfg = task_cfg or SyntheticConfig(font_size_range=(22, 32))
    visual = model.model.visual
    params = list(visual.parameters()) + list(head.parameters())
    opt = make_optimizer([{"params": params, "lr": lr}])
    step, clock, accs = 0, Clock(), []
    st = load_ckpt(ckpt)
    if st is not None:
        visual.load_state_dict(st["visual"])
        head.load_state_dict(st["head"])
        opt.load_state_dict(st["opt"])
        step, font_lo, clock = st["step"], st["font_lo"], Clock(st["elapsed"])
        if st.get("done") and budget.done(step, clock):
            logger.info("stage A already done (%d steps)", step)
            return
        logger.info("stage A resumed at step %d (%.1f min)", step, clock.elapsed / 60)
    visual.train()
    n_low = int(round(bs * low_share))
    last_save = clock.elapsed
    while not budget.done(step, clock):
        rng = random.Random(f"stageA:{seed}:{step}")
        pv, thw, lab = dense_batch(rng, bs - n_low, n_low, font_lo, task_cfg)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, lr, 50)
        feats = visual(pv, grid_thw=thw).pooler_output
        loss, m = dense_loss(head(feats), lab)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        accs.append(m["digit_acc"])
        accs = accs[-25:]
        run = sum(accs) / len(accs)
        if len(accs) == 25 and run > gate and font_lo > font_min:
            font_lo -= 2
            accs = []
            logger.info("stage A gate passed: font_lo -> %d", font_lo)
        if step % 10 == 0:
            logger.info("A step %d t=%.1fmin loss=%.4f digit_acc(run25)=%.3f box_recall=%.3f font_lo=%d %.1f img/s",
                        step, clock.elapsed / 60, loss.item(), run, m["box_recall"], font_lo,
                        bs * step / max(clock.elapsed, 1e-6) if st is None else float("nan"))
        if clock.elapsed - last_save > 120:
            save_ckpt(ckpt, visual=visual.state_dict(), head=head.state_dict(), opt=opt.state_dict(), step=step,
                      font_lo=font_lo, elapsed=clock.elapsed)
            last_save = clock.elapsed
    save_ckpt(ckpt, visual=visual.state_dict(), head=head.state_dict(), opt=opt.state_dict(), step=step,
              font_lo=font_lo, elapsed=clock.elapsed, done=True)
    logger.info("stage A done: %d steps, %.1f min, font_lo %d", step, clock.elapsed / 60, font_lo)
