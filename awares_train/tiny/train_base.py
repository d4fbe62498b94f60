"""Train the tiny base VLM: ``python -m awares_train.tiny.train_base --out DIR [--minutes M | --a-steps N --b-steps N]``.

Stage A (dense vision pre-training) then stage B (VQA without system prompt on full / crop / low
views). Every stage checkpoints to ``--work`` and resumes from there when re-run.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

__all__ = ["main"]

logger = logging.getLogger("awares_train.tiny.train_base")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True, help="model folder to write (save_pretrained)")
    ap.add_argument("--work", type=Path, default=Path("runs/base"), help="checkpoints and logs")
    ap.add_argument("--minutes", type=float, default=60.0, help="total training wall time (A + B)")
    ap.add_argument("--a-share", type=float, default=0.3, help="share of --minutes for stage A")
    ap.add_argument("--a-minutes", type=float, default=None, help="stage A wall time (overrides --a-share)")
    ap.add_argument("--b-minutes", type=float, default=None, help="stage B wall time (default: the rest)")
    ap.add_argument("--a-steps", type=int, default=None,
                    help="stage A steps instead of wall time (the same training however busy the machine)")
    ap.add_argument("--b-steps", type=int, default=None, help="stage B steps instead of wall time")
    ap.add_argument("--eval-n", type=int, default=100, help="held-out samples per eval set")
    ap.add_argument("--stages", default="AB", help="which stages to run (A, B or AB)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from awares_train.tiny.common import Budget, setup_logging
    from awares_train.tiny.dense import DenseHead
    from awares_train.tiny.model import build_model, build_tokenizer
    from awares_train.tiny.stage_dense import run_stage_a

    setup_logging(args.work / "train_base.log")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tok = build_tokenizer()
    model = build_model(tok)
    head = DenseHead(model.config.text_config.hidden_size)
    a_min = args.a_minutes if args.a_minutes is not None else args.minutes * args.a_share
    b_min = args.b_minutes if args.b_minutes is not None else args.minutes - a_min
    if "A" in args.stages:
        run_stage_a(model, head, args.work / "stageA.pt", Budget(a_min, args.a_steps), seed=args.seed)
    if "B" in args.stages:
        from awares_train.tiny.stage_vqa import run_stage_b

        run_stage_b(model, head, tok, args.work, Budget(b_min, args.b_steps), out=args.out, seed=args.seed,
                    eval_n=args.eval_n)


if __name__ == "__main__":
    main()
