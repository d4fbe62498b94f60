"""Adapt the tiny base to the benchmark: ``python -m awares_train.tiny.train_bench_base --out DIR [--steps N | --minutes M]``.

Starts from a base model folder (a stage A+B base; default: the shipped ``tiny-base``, already adapted) and
fine-tunes it on ``awares-bench`` items of the ``tiny`` profile as plain VQA (:mod:`awares_train.tiny.stage_bench`)
for ``--steps`` steps (or ``--minutes`` of wall time). Resumable: re-run with the same ``--work`` to continue (a
larger budget extends a finished run; another base, plan or learning rate in the same ``--work`` is refused,
:mod:`awares_train.work_folder`). The model folder written to ``--out`` is
re-exported at every evaluation; its processor is capped at the profile's 448x448 pixels, and its card
(``awares.json``) carries the base's training record plus this stage's, and the held-out figures. A curriculum is
several runs, each from the last one's model (``--base``) with its own ``--plan`` (``make bench-base``); the card
lists every phase under ``training.bench_phases``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

__all__ = ["main", "flat_rates", "bench_phases"]

logger = logging.getLogger("awares_train.tiny.train_bench_base")


def flat_rates(ev: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric rates of an evaluation record, nested keys joined with ``/`` (counts and empty cells dropped)."""
    out: dict[str, float] = {}
    for k, v in ev.items():
        if k == "n":
            continue
        if isinstance(v, dict):
            out.update(flat_rates(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out


def _phase_record(training: dict[str, Any], device: str | None = None) -> dict[str, Any]:
    """One adaptation run's time, steps, plan and device, from the training record it exported."""
    stage = training["stage_bench"]
    record = {"minutes": training.get("stage_bench_minutes"), "steps": training.get("stage_bench_steps"),
              "plan": stage.get("plan"), "decay_share": stage.get("decay_share"), "data_seed": stage.get("data_seed")}
    return record if device is None else {**record, "device": device}


def bench_phases(training: dict[str, Any]) -> list[dict[str, Any]]:
    """The adaptation phases a card's training record went through, oldest first.

    A grounding curriculum runs this entry point several times, each from the last one's model (``--base``);
    every run replaces the ``stage_bench`` settings, so the card also lists each phase's time, steps and plan.
    """
    if "bench_phases" in training:
        return list(training["bench_phases"])
    return [_phase_record(training)] if "stage_bench" in training else []


def main(argv: list[str] | None = None) -> None:
    from awares_train.reproduce.pipeline import default_base

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", type=Path, default=None, help="base model folder (default: the shipped tiny-base)")
    ap.add_argument("--out", type=Path, required=True, help="model folder to write")
    ap.add_argument("--work", type=Path, default=Path("runs/bench-base"), help="checkpoint and log")
    ap.add_argument("--minutes", type=float, default=60.0, help="training wall time (in all, over resumes)")
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps instead of wall time: the same training however busy the machine")
    ap.add_argument("--eval-n", type=int, default=200, help="held-out items per evaluation")
    ap.add_argument("--eval-every-min", type=float, default=10.0)
    ap.add_argument("--final-n", type=int, default=400, help="test items of the final evaluation")
    ap.add_argument("--old-eval-n", type=int, default=50, help="synthetic samples per old-task eval set")
    ap.add_argument("--data-seed", type=int, default=1, help="generator seed of the base's items (0: the benchmark)")
    ap.add_argument("--vision-lr", type=float, default=1e-4, help="0 freezes the vision tower")
    ap.add_argument("--lm-lr", type=float, default=5e-4)
    ap.add_argument("--decay-share", type=float, default=0.3,
                    help="last share of --minutes over which the learning rates decay to 0.1x (0: constant)")
    ap.add_argument("--plan", default=None,
                    help="batch kinds and sizes of one cycle, e.g. crop:24,low:24,where:24,full:8,old:24 "
                         "(default: stage_bench.PLAN)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="where to train: cpu, cuda, cuda:N")
    ap.add_argument("--workers", type=int, default=0,
                    help="processes drawing the next steps' items ahead (0: inline; a GPU needs several)")
    ap.add_argument("--chunk", type=int, default=None,
                    help="examples per forward pass (default: 8 on the CPU, the whole batch on a GPU)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.device != "cpu" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: torch sees no GPU here")

    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from awares_train.tiny.bench_views import bench_profile
    from awares_train.tiny.common import setup_logging
    from awares_train.tiny.export import export_model
    from awares_train.tiny.stage_bench import BenchStageConfig, run_stage_bench
    from awares_train.work_folder import WorkFolderMismatchError, claim_work_folder, model_fingerprint

    setup_logging(args.work / "train_bench_base.log")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    base = args.base or default_base()
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    model.config._attn_implementation = "sdpa"
    model.to(args.device)
    base_card = json.loads((base / "awares.json").read_text()) if (base / "awares.json").is_file() else {}
    plan = {}
    if args.plan:
        try:
            plan = {"plan": [(k.strip(), int(n)) for k, n in (p.split(":") for p in args.plan.split(",") if p.strip())]}
        except ValueError as e:
            ap.error(f"--plan must look like crop:24,low:24 (kind:size pairs), got {args.plan!r}: {e}")
    cfg = BenchStageConfig(minutes=args.minutes, steps=args.steps, data_seed=args.data_seed, lm_lr=args.lm_lr,
                           vision_lr=args.vision_lr, eval_every_min=args.eval_every_min, eval_n=args.eval_n,
                           final_n=args.final_n, old_eval_n=args.old_eval_n, decay_share=args.decay_share, **plan)
    cap = bench_profile().max_pixels
    earlier = bench_phases(base_card.get("training", {}))

    def export(record: dict[str, Any], training: dict[str, Any]) -> None:
        metrics: dict[str, Any] = {"base": base_card.get("metrics", {}), **record}
        if "bench_test" in record:
            metrics = {"heldout_bench_test": flat_rates(record["bench_test"]), **metrics}
        phases = [*earlier, _phase_record(training, args.device)]
        export_model(model, tok, args.out, metrics=metrics, max_pixels=cap,
                     training={**base_card.get("training", {}), **training, "stage": "bench-base",
                               "bench_phases": phases})

    chunk = args.chunk or (8 if args.device == "cpu" else 1024)
    try:
        claim_work_folder(args.work, {"base": model_fingerprint(base), **cfg.identity()}, what="bench-base phase")
        run_stage_bench(model, tok, args.work, cfg, out=args.out, export=export, workers=args.workers, chunk=chunk)
    except WorkFolderMismatchError as e:
        ap.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()
