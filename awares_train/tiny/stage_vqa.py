"""Stage B: attach the language model and train VQA without a system prompt on full/crop/low views.

B1: vision tower frozen (features under no_grad), LM only, so the LM learns to use the pre-trained
features fast. B2: tower unfrozen at a lower rate with the dense auxiliary loss kept on every image
(the answer alone gives only ~3 labelled tokens per image). Throughout, the model is also asked where
the code is (``tasks.where_sample``), the grounding AwaRes training later turns into a region request.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from awares_train.data.synthetic import SyntheticConfig, generate_sample
from awares_train.tiny.batches import ConversationEncoder
from awares_train.tiny.common import Budget, Clock, StageRun, load_ckpt, lr_at, make_optimizer
from awares_train.tiny.dense import DenseHead, dense_loss
from awares_train.tiny.evaluate import eval_examples, heldout_samples
from awares_train.tiny.tasks import Example, base_example, build_batch, where_sample

__all__ = ["train_step", "run_stage_b", "base_eval", "tf_font_curve", "TRAIN_CFG"]

logger = logging.getLogger(__name__)

TRAIN_CFG = SyntheticConfig(font_size_range=(22, 32))


def train_step(model: Any, head: DenseHead, enc: ConversationEncoder, examples: list[Example], opt: Any,
               vision_trainable: bool, aux_w: float, turn_weights: list[float] | None = None,
               weight_fn: Any = None) -> dict[str, float]:
    """One optimizer step on a batch of same-structure examples; returns loss metrics."""
    batch, dense = build_batch(examples, enc)
    thw = batch.pop("image_grid_thw")
    pv = batch.pop("pixel_values")
    labels = batch.pop("labels")
    visual = model.model.visual
    if vision_trainable:
        feats = visual(pv, grid_thw=thw).pooler_output
    else:
        with torch.no_grad():
            feats = visual(pv, grid_thw=thw).pooler_output
    mm = {"image": BaseModelOutputWithPooling(pooler_output=torch.split(feats, (thw.prod(-1) // 4).tolist()))}
    logits = model(**batch, image_grid_thw=thw, mm_encoder_outputs=mm).logits
    lg, tg = logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1)
    tok_loss = torch.nn.functional.cross_entropy(lg, tg, ignore_index=-100, reduction="none")
    w = (tg != -100).float()
    if turn_weights is not None:  # per-token weights from the assistant turn index
        w = w * _turn_weight_map(labels, turn_weights)[:, 1:].reshape(-1)
    if weight_fn is not None:  # extra per-token weights, e.g. on the region name of a request
        w = w * weight_fn(labels)[:, 1:].reshape(-1)
    lm_loss = (tok_loss * w).sum() / w.sum().clamp_min(1e-6)
    loss = lm_loss
    m: dict[str, float] = {"lm": lm_loss.item()}
    if vision_trainable and aux_w > 0:
        dl, dm = dense_loss(head(feats), dense)
        loss = loss + aux_w * dl
        m.update(dense=dl.item(), digit_acc=dm["digit_acc"])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
    opt.step()
    return m


def _turn_weight_map(labels: torch.Tensor, weights: list[float]) -> torch.Tensor:
    out = torch.ones_like(labels, dtype=torch.float)
    for i in range(labels.shape[0]):
        turn, prev = -1, False
        for j in range(labels.shape[1]):
            cur = bool(labels[i, j] != -100)
            if cur and not prev:
                turn += 1
            if cur:
                out[i, j] = weights[min(turn, len(weights) - 1)]
            prev = cur
    return out


def base_eval(model: Any, enc: ConversationEncoder, n: int = 100, font: int = 28,
              split: str = "val") -> dict[str, float]:
    """Teacher-forced exact match on held-out samples, per view and question type."""
    cfg = SyntheticConfig(font_size=font)
    code = heldout_samples(n, cfg, "code", split=split)
    other = heldout_samples(n, cfg, "other", split=split)
    res = {}
    for name, exs in [("code@crop", [base_example(s, "crop") for s in code]),
                      ("code@low", [base_example(s, "low") for s in code]),
                      ("code@full", [base_example(s, "full") for s in code[: n // 2]]),
                      ("other@low", [base_example(s, "low") for s in other]),
                      ("other@full", [base_example(s, "full") for s in other[: n // 2]]),
                      ("where@low", [base_example(where_sample(s), "low") for s in code])]:
        r = eval_examples(model, enc, exs)
        res[name] = sum(all(t) for t in r) / len(r)
    return res


def tf_font_curve(model: Any, enc: ConversationEncoder, fonts: tuple[int, ...] = (16, 20, 24, 28, 32),
                  n: int = 100) -> list[dict[str, float]]:
    """Code exact match from the native quadrant crop vs the half-scale low-res view, per font size.

    Teacher-forced exactness equals greedy-decoding exact match (see ``evaluate``). Test split.
    """
    out = []
    for f in fonts:
        ss = heldout_samples(n, SyntheticConfig(font_size=f), "code", split="test")
        rc = eval_examples(model, enc, [base_example(s, "crop") for s in ss])
        rl = eval_examples(model, enc, [base_example(s, "low") for s in ss])
        out.append({"font_size": f, "crop_exact": sum(all(r) for r in rc) / n,
                    "lowres_exact": sum(all(r) for r in rl) / n})
        logger.info("font curve: %s", out[-1])
    return out


def _base_batch(rng: random.Random, kind: str, n: int, cfg: SyntheticConfig) -> list[Example]:
    exs = []
    for _ in range(n):
        if kind == "crop":
            exs.append(base_example(generate_sample(rng, cfg, kind="code"), "crop"))
        elif kind == "where":  # grounding: where the code box is, seen in the low-res view
            exs.append(base_example(where_sample(generate_sample(rng, cfg, kind="code")), "low"))
        elif kind == "low":  # low-res-answerable questions, and where the code is (1 in 4)
            q = rng.choice(("color", "shape", "count", "where"))
            s = generate_sample(rng, cfg, kind="code" if q == "where" else q)
            exs.append(base_example(where_sample(s) if q == "where" else s, "low"))
        else:
            s = generate_sample(rng, cfg.model_copy(update={"crop_share": 0.5}))
            exs.append(base_example(where_sample(s) if s.kind == "code" and rng.random() < 0.25 else s, "full"))
    return exs


def run_stage_b(model: Any, head: DenseHead, tok: Any, work: Path, budget: Budget, *, out: Path | None,
                seed: int = 0, frozen_share: float = 0.0375, eval_every_min: float = 6.0, eval_n: int = 100) -> None:
    """Train stage B for the ``budget`` (resumable from ``work/stageB.pt``); export to ``out`` at each eval.

    The vision tower stays frozen for the first ``frozen_share`` of the budget (3 of the recipe's 80 minutes), so
    the language model first learns to use stage A's features before gradients reach them.
    """
    from awares_train.tiny.export import export_model

    enc = ConversationEncoder(tok)
    ckpt = work / "stageB.pt"
    st = load_ckpt(ckpt)
    if st is None:
        a = load_ckpt(work / "stageA.pt")
        if a is None:
            raise FileNotFoundError(f"no stage A checkpoint in {work}; run stage A first")
        model.model.visual.load_state_dict(a["visual"])
        head.load_state_dict(a["head"])
        step, clock, history = 0, Clock(), []
    else:
        model.load_state_dict(st["model"])
        head.load_state_dict(st["head"])
        step, clock, history = st["step"], Clock(st["elapsed"]), st["history"]
        logger.info("stage B resumed at step %d (%.1f min)", step, clock.elapsed / 60)
    vis = list(model.model.visual.parameters())
    vis_ids = {id(p) for p in vis}
    lm = [p for p in model.parameters() if id(p) not in vis_ids]
    opt = make_optimizer([{"params": lm, "lr": 1e-3, "base": 1e-3},
                          {"params": vis + list(head.parameters()), "lr": 0.0, "base": 2e-4}])
    if st is not None and "opt" in st:
        opt.load_state_dict(st["opt"])
    model.train()
    # Measured: with "where" questions only mixed into the low-view batches (2 in 5 of them), grounding
    # stayed at chance (0.23) after 370 steps while crop reading rose; a batch of its own makes it count.
    plan = [("crop", 32), ("low", 32), ("crop", 32), ("full", 8), ("where", 32)]
    run = StageRun("B", ckpt, model=model, head=head, opt=opt, tok=tok, out=out, budget=budget,
                   eval_every_min=eval_every_min, clock=clock, history=history, resumed=st is not None)
    unfreeze_step = None
    while run.running(step):
        frozen = budget.fraction(step, clock) < frozen_share
        if not frozen and unfreeze_step is None:
            unfreeze_step = step
        kind, n = plan[step % len(plan)]
        rng = random.Random(f"stageB:{seed}:{step}")
        exs = _base_batch(rng, kind, n, TRAIN_CFG)
        if frozen:
            opt.param_groups[0]["lr"] = lr_at(step, 1e-3, 50)
            opt.param_groups[1]["lr"] = 0.0
        else:
            s2 = step - (unfreeze_step or 0)
            opt.param_groups[0]["lr"] = lr_at(s2, 5e-4, 30)
            opt.param_groups[1]["lr"] = lr_at(s2, 2e-4, 30)
        m = train_step(model, head, enc, exs, opt, vision_trainable=not frozen, aux_w=0.5)
        step += 1
        if step % 10 == 0:
            logger.info("B step %d t=%.1fmin %s lm=%.4f %s", step, clock.elapsed / 60, kind, m["lm"],
                        " ".join(f"{k}={v:.3f}" for k, v in m.items() if k != "lm"))
        run.after_step(step, lambda: base_eval(model, enc, n=eval_n), "stage_b_eval",
                       {"stage": "base", "stage_b_steps": step, "stage_b_minutes": round(clock.elapsed / 60, 2)})
    run.save(step, done=True)
    logger.info("stage B done: %d steps %.1f min", step, clock.elapsed / 60)
    if out is not None:
        test = base_eval(model, enc, n=eval_n, split="test")
        curve = tf_font_curve(model, enc, n=eval_n)
        a = load_ckpt(work / "stageA.pt") or {}
        export_model(model, tok, out,
                     metrics={"heldout_test_font28": test, "font_curve": curve, "history": history},
                     training={"stage": "base", "stage_a_steps": a.get("step"),
                               "stage_a_minutes": round(a.get("elapsed", 0) / 60, 2),
                               "stage_a_font_lo": a.get("font_lo"), "stage_b_steps": step,
                               "stage_b_minutes": round(clock.elapsed / 60, 2), "threads": torch.get_num_threads(),
                               "data": TRAIN_CFG.model_dump(mode="json")})
