"""One entry point for both reproductions: settings saved, torch threads set, then the data set's stages."""

from __future__ import annotations

from typing import Any

from awares_train.reproduce.bench import run_bench_reproduction
from awares_train.reproduce.pipeline import ReproduceConfig, run_synthetic_reproduction

__all__ = ["run_reproduction"]


def run_reproduction(cfg: ReproduceConfig) -> dict[str, Any]:
    """Run (or resume) every stage of ``cfg.dataset``'s reproduction, then write its report; returns the results."""
    import torch

    torch.set_num_threads(cfg.threads)
    cfg.work.mkdir(parents=True, exist_ok=True)
    (cfg.work / "reproduce.json").write_text(cfg.model_dump_json(indent=2))
    if cfg.dataset == "bench":
        return run_bench_reproduction(cfg)
    return run_synthetic_reproduction(cfg)
