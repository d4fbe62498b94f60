"""Small training utilities shared by the tiny-model stages: logging, schedules, checkpoints."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["setup_logging", "lr_at", "save_ckpt", "load_ckpt", "Clock", "Budget", "make_optimizer", "StageRun"]


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
    """Checkpoint of a stage that trains the whole model plus the dense head (stage B)."""
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


@dataclass(frozen=True)
class Budget:
    """How long a stage trains: ``steps`` when set, else ``minutes`` of wall time (resumes count time spent).

    A wall-clock box trains a busy machine less than an idle one (a 170-minute box made 2,969 steps on a shared
    machine and ~7,000 on 2 idle cores), so recipes meant to be reproduced count steps; minutes remain for
    time-boxed experiments.
    """

    minutes: float
    steps: int | None = None

    def fraction(self, step: int, clock: Clock) -> float:
        """Share of the budget spent (1.0 or more: done); learning-rate schedules run on it."""
        return step / self.steps if self.steps else clock.elapsed / (self.minutes * 60)

    def done(self, step: int, clock: Clock) -> bool:
        return self.fraction(step, clock) >= 1.0


class StageRun:
    """The bookkeeping of a stage that trains the whole model on a :class:`Budget` (stage B).

    After each step: evaluate every ``eval_every_min`` minutes and at the end (re-exporting the model
    folder, so an interrupted run still leaves a usable model), checkpoint every 2 minutes; at the end
    a final checkpoint marked done. The training loop itself stays in the stage.
    """

    def __init__(self, name: str, ckpt: Path, *, model: Any, head: Any, opt: Any, tok: Any, out: Path | None,
                 budget: Budget, eval_every_min: float, clock: Clock, history: list, resumed: bool) -> None:
        self.name, self.ckpt, self.model, self.head, self.opt, self.tok, self.out = name, ckpt, model, head, opt, tok, out
        self.budget, self.eval_every, self.clock, self.history = budget, eval_every_min * 60, clock, history
        self.last_eval = clock.elapsed if resumed else 0.0
        self.last_save = clock.elapsed

    def running(self, step: int) -> bool:
        return not self.budget.done(step, self.clock)

    def after_step(self, step: int, evaluate: Any, metrics_key: str, training: dict[str, Any]) -> None:
        """Evaluate (``evaluate() -> dict``) and export when due, then checkpoint when due."""
        elapsed = self.clock.elapsed
        if elapsed - self.last_eval > self.eval_every or self.budget.done(step, self.clock):
            ev = evaluate()
            self.history.append({"step": step, "minutes": round(elapsed / 60, 2), **ev})
            logging.getLogger(__name__).info("%s eval step %d: %s", self.name, step, json.dumps(ev))
            self.last_eval = self.clock.elapsed
            if self.out is not None:
                from awares_train.tiny.export import export_model

                export_model(self.model, self.tok, self.out, metrics={metrics_key: ev}, training=training)
        if self.clock.elapsed - self.last_save > 120:
            self.save(step)
            self.last_save = self.clock.elapsed

    def save(self, step: int, done: bool = False) -> None:
        save_stage(self.ckpt, model=self.model, head=self.head, opt=self.opt, step=step, elapsed=self.clock.elapsed,
                   history=self.history, done=done)
