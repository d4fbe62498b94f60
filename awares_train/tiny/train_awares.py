"""Train the AwaRes tiny model from the base:
``python -m awares_train.tiny.train_awares --base DIR --out DIR [--minutes M]``.

Resumable: re-running with the same ``--work`` continues from ``stageC.pt``. The final model is
evaluated with the real two-turn loop (``processor.apply_chat_template`` + ``model.generate``) and the
metrics go into ``awares.json``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

__all__ = ["main"]

logger = logging.getLogger("awares_train.tiny.train_awares")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", type=Path, required=True, help="base model folder (from train_base)")
    ap.add_argument("--out", type=Path, required=True, help="model folder to write")
    ap.add_argument("--work", type=Path, default=Path("runs/awares"))
    ap.add_argument("--base-state", type=Path, default=Path("runs/base/stageB.pt"),
                    help="stage B training state (adds the dense aux head); optional")
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--eval-n", type=int, default=100, help="held-out samples per eval set during training")
    ap.add_argument("--final-n", type=int, default=100, help="test samples per kind for the final loop eval")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from awares_train.tiny.common import setup_logging
    from awares_train.tiny.dense import DenseHead
    from awares_train.tiny.stage_awares import run_stage_c

    setup_logging(args.work / "train_awares.log")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(args.base)
    model = AutoModelForImageTextToText.from_pretrained(args.base, dtype=torch.float32)
    model.config._attn_implementation = "sdpa"
    head = DenseHead(model.config.text_config.hidden_size)
    base_state = args.base_state if args.base_state.exists() else None
    if base_state is not None:
        head.load_state_dict(torch.load(base_state, map_location="cpu", weights_only=False)["head"])
    # The base folder is the starting point; stageB.pt only contributes the aux head.
    run_stage_c(model, head, tok, None, args.work, args.minutes, out=args.out, seed=args.seed,
                eval_n=args.eval_n)
    if args.final_n > 0:
        from awares_train.tiny.loop_eval import final_report

        final_report(args.out, args.final_n)


if __name__ == "__main__":
    main()
