"""Base adaptation to the benchmark: fine-tune the tiny base on ``awares-bench`` items (``tiny`` profile) as VQA.

The stage A+B base (``train_base``) reads 3-digit codes from >= ~16-20 px digits and knows the synthetic
task's colours and shapes, but it has never seen a document, a chart or a scene; on the benchmark it scores ~2% even at full
resolution. This stage teaches it the benchmark's questions, without a system prompt (as stage B), on the views
where the evidence is readable:

* ``crop``: the evidence crop(s) (one or two images), always readable by construction;
* ``low``: the low-res view of items answerable there (digits >= threshold x margin);
* ``full``: the capped full view when its digits are readable (above the cap they may not be);
* ``where``: grounding on the low-res view of every item (which region holds the evidence), the knowledge a
  pretrained VLM brings to AwaRes training and a model from random weights must be taught;
* ``quarter``: the same question answered with the quarter holding the evidence's centre, the coarse step
  the tiny base does learn (not in the default plan; ``--plan quarter:32,crop:8,old:8`` trains it);
* ``request``: the grounding question answered as the ``get_crops`` tool call, the tokens SFT's crop turns
  end in (``where`` answers in words, which SFT's tool calls do not);
* ``call``: the same call in SFT's own context (its system prompt, no prefix), on items that need a crop;
* ``old``: batches of the synthetic task of stage B, so the model keeps what it could do.

Views where the evidence is *not* readable (the low-res view of items that need a crop, the capped full view of
large images with small text) are never trained on: an answer there could only be learned as a guess or by
reading text the profile says is too small, and either would blur the gap AwaRes needs. The held-out evaluation
measures that gap (``low@small`` and ``full@small`` should stay low).

Data: the generator's endless streams with the base's own seed (``data_seed``, default 1), so the AwaRes stages'
items (seed 0, the published benchmark) are never seen here. Resumable from ``work/stage_bench.pt``.

Runs where the model is (CPU or a GPU); drawing the items (Pillow) can run ahead in worker processes
(``workers``), which a GPU needs to be fed and which on 2 CPU cores overlaps drawing with the model's step.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import random
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from awares_train.bench.generator import BenchConfig, GenerationError, generate_item
from awares_train.tiny.batches import ConversationEncoder
from awares_train.tiny.bench_views import (BenchViews, bench_profile, call_example, item_views, quarter_example,
                                           request_example, vqa_example, where_example)
from awares_train.tiny.common import Budget, Clock, load_ckpt, lr_at, make_optimizer, save_ckpt
from awares_train.tiny.evaluate import turn_exact
from awares_train.tiny.tasks import Example, vqa_batch
from awares_train.work_folder import WorkFolderMismatchError

__all__ = ["BenchStageConfig", "lm_step", "tf_exact", "eval_set", "bench_eval", "digit_curve",
           "run_stage_bench", "time_decay", "PLAN"]

logger = logging.getLogger(__name__)

#: One cycle of batch kinds and sizes (crop views are the reading the method needs; full views cost 4x).
PLAN: tuple[tuple[str, int], ...] = (("crop", 24), ("low", 24), ("crop", 24), ("where", 24), ("full", 8),
                                     ("old", 24))
#: Batch kinds of a plan.
KINDS: tuple[str, ...] = ("crop", "low", "where", "quarter", "request", "call", "full", "old")
#: Digit-height bins (px in the view the model saw) of the held-out curve.
CURVE_EDGES: tuple[float, ...] = (0.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.4, 22.0, 28.0, 40.0)


class BenchStageConfig(BaseModel):
    """Settings of the base adaptation (saved in the model card)."""

    model_config = ConfigDict(extra="forbid")

    minutes: float = Field(60.0, gt=0, description="Training wall time (resumes count the time already spent).")
    steps: int | None = Field(None, ge=1, description=(
        "Training steps instead of a wall-clock box: the same training on a busy or a fast machine (the "
        "learning-rate decay then runs on steps; ``minutes`` is ignored)."))
    data_seed: int = Field(1, description="Generator seed of the training and held-out items (0 = the benchmark).")
    lm_lr: float = 5e-4
    vision_lr: float = Field(1e-4, ge=0, description="0 freezes the vision tower.")
    warmup: int = 30
    decay_share: float = Field(0.3, ge=0, le=1, description=(
        "Last share of the time box (or of the steps) over which the learning rates decay (cosine) to 0.1x; "
        "0: constant."))
    plan: list[tuple[str, int]] = Field(default_factory=lambda: [tuple(p) for p in PLAN])  # type: ignore[misc]
    eval_every_min: float = 10.0
    eval_n: int = Field(200, ge=4, description="Held-out items per evaluation (half need a crop).")
    old_eval_n: int = Field(50, ge=0, description="Synthetic samples per old-task evaluation set (0: none).")
    final_n: int = Field(400, ge=0, description="Test items of the final evaluation (0: none).")
    save_every_min: float = 2.0

    def identity(self) -> dict[str, Any]:
        """The settings that decide what the phase trains (its work folder's record; budgets only extend it)."""
        return self.model_dump(mode="json", include={"data_seed", "lm_lr", "vision_lr", "warmup", "decay_share",
                                                     "plan"})

    @field_validator("plan")
    @classmethod
    def _known_kinds(cls, v: list[tuple[str, int]]) -> list[tuple[str, int]]:
        bad = [k for k, n in v if k not in KINDS or n < 1]
        if not v or bad:
            raise ValueError(f"plan needs kind:size pairs with kinds among {', '.join(KINDS)} and sizes >= 1; "
                             f"got {v!r}")
        return v


def _image_tokens(e: Example) -> int:
    return sum(v for _, parts in e.conv for k, v in parts if k == "image")


def lm_step(model: Any, enc: ConversationEncoder, examples: list[Example], opt: Any, chunk: int = 8) -> float:
    """One optimizer step of next-token loss on the assistant turns; returns the mean loss per label token.

    Benchmark views range from 16 to 256 visual tokens, so one padded batch wastes most of its sequence on
    padding: examples are sorted by length and run in chunks of similar length (gradients accumulated, weighted
    by label tokens, so the step equals one batch's mean loss). On a GPU, where padding is cheap and each launch
    is not, pass a ``chunk`` as large as the batch.
    """
    order = sorted(examples, key=_image_tokens)
    n_labels = sum(sum(t != -100 for t in enc.encode(e.conv)[1]) for e in examples)
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for k in range(0, len(order), chunk):
        batch = {key: t.to(model.device) for key, t in vqa_batch(order[k:k + chunk], enc).items()}
        labels = batch.pop("labels")
        logits = model(**batch).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                 labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
        (loss / n_labels).backward()
        total += float(loss.item())
    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
    opt.step()
    return total / max(n_labels, 1)


def tf_exact(model: Any, enc: ConversationEncoder, examples: list[Example], bs: int = 16) -> list[bool]:
    """Teacher-forced exact match of each example's (single) answer turn, batched by sequence length.

    Equals greedy-decoding exact match (see :mod:`awares_train.tiny.evaluate`).
    """
    was = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: _image_tokens(examples[i]))
    out = [False] * len(examples)
    for k in range(0, len(order), bs):
        part = order[k:k + bs]
        for i, turns in zip(part, turn_exact(model, vqa_batch([examples[i] for i in part], enc))):
            out[i] = all(turns)
    model.train(was)
    return out


def time_decay(elapsed: float, total: float, share: float, floor: float = 0.1) -> float:
    """Learning-rate factor of a time-boxed stage: 1, then a cosine down to ``floor`` over the last ``share``.

    The step count of a wall-clock box is unknown in advance, so the schedule runs on time (a resume with a
    longer box moves the decay later); a stage with a step budget passes steps for both.

    >>> [round(time_decay(t, 100.0, 0.3), 2) for t in (0, 70, 85, 100)]
    [1.0, 1.0, 0.55, 0.1]
    """
    start = total * (1 - share)
    if share <= 0 or elapsed <= start:
        return 1.0
    p = min(1.0, (elapsed - start) / (total - start))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))


def _draw(cfg: BenchConfig, split: str, start: int, n: int) -> list[BenchViews]:
    profile, out = bench_profile(), []
    for i in range(start, start + n):
        try:
            item, image = generate_item(cfg, split, i)
        except GenerationError as e:  # rare; the item is skipped, the stream goes on
            logger.warning("skipping %s[%d]: %s", split, i, e)
            continue
        out.append(item_views(item, image, profile))
    return out


def eval_set(data_seed: int, split: str, n: int) -> list[BenchViews]:
    """``n`` held-out items of ``split`` (half need a crop, so the gap is measured on as many items)."""
    return _draw(BenchConfig(profile="tiny", seed=data_seed, lowres_share=0.5), split, 0, n)


def _rate(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def bench_eval(model: Any, enc: ConversationEncoder, views: list[BenchViews]) -> dict[str, Any]:
    """Held-out teacher-forced exact match per view, readability and kind, with the number of items in each.

    ``low@ok`` / ``low@small``: low-res view of items answerable there / that need a crop (the gap);
    ``full@ok`` / ``full@small``: capped full view with readable / unreadable digits; ``crop``: evidence crops;
    ``where``: grounding (region names) from the low-res view; ``quarter``: its coarse step (one-box items);
    ``request``: grounding as the ``get_crops`` tool call SFT trains; ``call``: that call in SFT's context, on
    items that need a crop.
    """
    def score(name: str, vs: list[BenchViews], make: Callable[[BenchViews], Example]) -> list[bool]:
        flags = tf_exact(model, enc, [make(v) for v in vs]) if vs else []
        res[name] = _rate(flags)
        counts[name] = len(vs)
        return flags

    res: dict[str, Any] = {}
    counts: dict[str, int] = {}
    crop = score("crop", views, lambda v: vqa_example(v, "crop"))
    for kind in ("document", "chart", "scene"):
        res[f"crop@{kind}"] = _rate([f for v, f in zip(views, crop) if v.item.benchmark == kind])
    score("low@ok", [v for v in views if v.low_readable], lambda v: vqa_example(v, "low"))
    score("low@small", [v for v in views if not v.low_readable], lambda v: vqa_example(v, "low"))
    score("full@ok", [v for v in views if v.full_readable], lambda v: vqa_example(v, "full"))
    score("full@small", [v for v in views if v.full_unreadable], lambda v: vqa_example(v, "full"))
    score("where", views, where_example)
    score("quarter", [v for v in views if v.one_box], quarter_example)
    score("request", views, request_example)
    score("call", [v for v in views if not v.low_readable], call_example)
    res["n"] = counts
    return res


def digit_curve(model: Any, enc: ConversationEncoder, views: list[BenchViews]) -> list[dict[str, Any]]:
    """Exact match by the digit height each view showed (crop, low, full), in :data:`CURVE_EDGES` bins."""
    fields = {"crop": "digit_px_crop", "low": "digit_px_lowres", "full": "digit_px_capped"}
    out = []
    for view, field in fields.items():
        flags = tf_exact(model, enc, [vqa_example(v, view) for v in views])
        px = [getattr(v.item, field) for v in views]
        edges = list(CURVE_EDGES) + [None]
        for lo, hi in zip(edges[:-1], edges[1:]):
            group = [f for f, p in zip(flags, px) if p >= lo and (hi is None or p < hi)]
            if group:
                out.append({"view": view, "lo": lo, "hi": hi, "n": len(group), "exact": _rate(group)})
    return out


def _batches(cfg: BenchStageConfig, step: int, kind: str, n: int) -> list[Example]:
    """The examples of training step ``step`` (deterministic in the step, so a resumed run continues the data)."""
    seed = cfg.data_seed
    if kind == "old":
        from awares_train.tiny.stage_vqa import TRAIN_CFG, _base_batch

        rng = random.Random(f"bench-base-old:{seed}:{step}")
        return _base_batch(rng, rng.choice(("crop", "low", "where", "crop")), n, TRAIN_CFG)
    start = step * n * 2  # room for the items a kind skips
    if kind == "crop":
        views = _draw(BenchConfig(profile="tiny", seed=seed, lowres_share=0.5), "base-crop", start, n)
        return [vqa_example(v, "crop") for v in views]
    if kind == "low":
        views = _draw(BenchConfig(profile="tiny", seed=seed, lowres_share=1.0), "base-low", start, n)
        return [vqa_example(v, "low") for v in views]
    if kind in ("where", "request"):  # grounding on every item, in region names or as the tool's reply
        make = where_example if kind == "where" else request_example
        return [make(v) for v in _draw(BenchConfig(profile="tiny", seed=seed), f"base-{kind}", start, n)]
    if kind == "call":  # items that need a crop: the call is their first turn in SFT's context
        views = _draw(BenchConfig(profile="tiny", seed=seed, lowres_share=0.0), "base-call", start, n)
        return [call_example(v) for v in views if not v.low_readable][:n]
    if kind == "quarter":  # one-box items: the quarter of the evidence's centre (grounding's coarse step)
        views = _draw(BenchConfig(profile="tiny", seed=seed), "base-quarter", start, 2 * n)
        return [quarter_example(v) for v in views if v.one_box][:n]
    if kind == "full":  # only capped full views whose digits are readable (items above the cap may not be)
        views = [v for v in _draw(BenchConfig(profile="tiny", seed=seed), "base-full", start, 2 * n) if v.full_readable]
        return [vqa_example(v, "full") for v in views[:n]]
    raise ValueError(f"unknown batch kind {kind!r}; use one of {', '.join(KINDS)}")


def _step_batch(cfg: BenchStageConfig, step: int) -> tuple[str, list[Example]]:
    kind, n = cfg.plan[step % len(cfg.plan)]
    return kind, _batches(cfg, step, kind, n)


def _steps(cfg: BenchStageConfig, step: int, workers: int = 0) -> Iterator[tuple[int, str, list[Example]]]:
    """The training steps from ``step`` on: drawn inline, or ``workers`` processes drawing ahead (same data)."""
    if workers <= 0:
        while True:
            yield step, *_step_batch(cfg, step)
            step += 1
    # spawned, not forked: the parent's torch threads (and CUDA) must not be copied into a child mid-use
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    ahead: deque[tuple[int, Future]] = deque()
    try:
        while True:
            while len(ahead) < 2 * workers:  # bounded: each step's images are held until the model takes them
                s = step + len(ahead)
                ahead.append((s, pool.submit(_step_batch, cfg, s)))
            s, done = ahead.popleft()
            yield s, *done.result()
            step = s + 1
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def run_stage_bench(model: Any, tok: Any, work: Path, cfg: BenchStageConfig, *, out: Path | None,
                    export: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
                    workers: int = 0, chunk: int = 8) -> dict[str, Any]:
    """Train for ``cfg.steps`` or else ``cfg.minutes`` (resuming from ``work/stage_bench.pt``), evaluating and
    exporting as it goes.

    Args:
        model: The base model, on the device it trains on (its weights are replaced by the checkpoint's when
            resuming).
        tok: Its tokenizer.
        work: Checkpoint and log folder.
        cfg: Stage settings.
        out: Model folder re-exported at every evaluation (None: no export).
        export: ``(metrics, training) -> None`` writing the model folder (the entry point's, with the base's card).
        workers: Processes drawing the next steps' items ahead (0: drawn inline, between steps).
        chunk: Examples per forward pass of a step (see :func:`lm_step`).

    Returns:
        The final record: held-out history, test evaluation and digit-height curve.
    """
    from awares_train.tiny.stage_vqa import base_eval

    enc = ConversationEncoder(tok, cache_size=5000)
    ckpt = work / "stage_bench.pt"
    st = load_ckpt(ckpt)
    vis = list(model.model.visual.parameters())
    vis_ids = {id(p) for p in vis}
    lm = [p for p in model.parameters() if id(p) not in vis_ids]
    if cfg.vision_lr == 0:
        for p in vis:
            p.requires_grad_(False)
    groups = [{"params": lm, "lr": cfg.lm_lr}] + ([{"params": vis, "lr": cfg.vision_lr}] if cfg.vision_lr else [])
    opt = make_optimizer(groups)
    budget = Budget(cfg.minutes, cfg.steps)
    if st is not None:
        if cfg.steps is not None and st["step"] > cfg.steps:
            raise WorkFolderMismatchError(
                f"{ckpt} is at step {st['step']}, past the {cfg.steps} steps asked: it is another run's checkpoint "
                f"(a run of {cfg.steps} steps stops there). Pass another --work, or delete {work} to start over.")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, clock, history = st["step"], Clock(st["elapsed"]), st["history"]
        logger.info("bench stage resumed at step %d (%.1f min)", step, clock.elapsed / 60)
        if st.get("record") is not None and budget.done(step, clock):
            logger.info("bench stage already done (%d steps, %.1f min)", step, clock.elapsed / 60)
            return st["record"]
    else:
        step, clock, history = 0, Clock(), []
    held = eval_set(cfg.data_seed, "val", cfg.eval_n)

    def evaluate() -> dict[str, Any]:
        ev = bench_eval(model, enc, held)
        if cfg.old_eval_n:
            old = base_eval(model, enc, n=cfg.old_eval_n)
            ev["old"] = {k: old[k] for k in ("code@crop", "code@low", "other@low", "where@low")}
        return ev

    def training() -> dict[str, Any]:
        return {"stage_bench_steps": step, "stage_bench_minutes": round(clock.elapsed / 60, 2),
                "stage_bench": cfg.model_dump(mode="json"), "threads": torch.get_num_threads()}

    model.train()
    last_eval = clock.elapsed if st is not None else -1e9
    last_save = clock.elapsed
    losses: dict[str, list[float]] = {}
    if step == 0 and not history:  # the starting point, so the log shows what training changed
        ev = evaluate()
        history.append({"step": 0, "minutes": 0.0, **ev})
        logger.info("bench eval step 0: %s", json.dumps(ev))
        last_eval = clock.elapsed
    data = _steps(cfg, step, workers)
    while not budget.done(step, clock):
        s, kind, exs = next(data)
        scale = time_decay(budget.fraction(step, clock), 1.0, cfg.decay_share)
        for g, base in zip(opt.param_groups, (cfg.lm_lr, cfg.vision_lr)):
            g["lr"] = lr_at(step, base, cfg.warmup) * scale
        if exs:
            losses.setdefault(kind, []).append(lm_step(model, enc, exs, opt, chunk))
        step += 1
        if step % 20 == 0:
            logger.info("bench step %d t=%.1fmin %s", step, clock.elapsed / 60,
                        " ".join(f"{k}={sum(v) / len(v):.3f}" for k, v in sorted(losses.items())))
            losses = {}
        done = budget.done(step, clock)
        if clock.elapsed - last_eval > cfg.eval_every_min * 60 or done:
            ev = evaluate()
            history.append({"step": step, "minutes": round(clock.elapsed / 60, 2), **ev})
            logger.info("bench eval step %d: %s", step, json.dumps(ev))
            last_eval = clock.elapsed
            if export is not None and out is not None:
                export({"bench_val": ev, "history": history}, training())
        if clock.elapsed - last_save > cfg.save_every_min * 60 or done:
            save_ckpt(ckpt, model=model.state_dict(), opt=opt.state_dict(), step=step, elapsed=clock.elapsed,
                      history=history, done=done)
            last_save = clock.elapsed
    data.close()  # stops the workers drawing ahead
    record: dict[str, Any] = {"history": history}
    if cfg.final_n:
        test = eval_set(cfg.data_seed, "test", cfg.final_n)
        record["bench_test"] = bench_eval(model, enc, test)
        record["digit_curve"] = digit_curve(model, enc, test)
        if cfg.old_eval_n:
            record["old_test"] = base_eval(model, enc, n=cfg.old_eval_n, split="test")
        logger.info("bench test: %s", json.dumps(record["bench_test"]))
    save_ckpt(ckpt, model=model.state_dict(), opt=opt.state_dict(), step=step, elapsed=clock.elapsed,
              history=history, done=True, record=record)
    if export is not None and out is not None:
        export(record, training())
    return record
