"""Small training utilities shared by the tiny-model stages: logging, schedules, checkpoints."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["setup_logging", "lr_at", "save_ckpt", "load_ckpt", "Clock", "make_optimizer"]


def setup_logging(log_file: Path | None) -> None:
    """Log lines to stderr and (if given) a file; entry points only."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", handlers=handlers,
                        force=True)


def lr_at(step: int, base: float, warmup: int, total: int | None = None, floor: float = 0.1) -> float:
    """Linear warmup, then constant (or cosine down to ``floor * base`` when ``total`` is known)."""
    if step < warmup:
        return base * (step + 1) / warmup
    if total is None or total <= warmup:
        return base
    p = min(1.0, (step - warmup) / (total - warmup))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def make_optimizer(groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, betas=(0.9, 0.98), weight_decay=0.01)


def save_ckpt(path: Path, **state: Any) -> None:
    """Atomic save (write then rename), so a kill mid-save never leaves a broken checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def save_stage(path: Path, *, model: Any, head: Any, opt: Any, step: int, elapsed: float, history: list,
               done: bool = False) -> None:
    """Checkpoint of a stage that trains the whole model plus the dense head (stages B and C)."""
    extra = {"done": True} if done else {}
    save_ckpt(path, model=model.state_dict(), head=head.state_dict(), opt=opt.state_dict(), step=step,
              elapsed=elapsed, history=history, **extra)


def load_ckpt(path: Path) -> dict[str, Any] | None:
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None


class Clock:
    """Training wall time that survives resumes (stored in checkpoints)."""

    def __init__(self, elapsed: float = 0.0) -> None:
        self.start = time.time() - elapsed

    @property
    def elapsed(self) -> float:
        return time.time() - self.start
