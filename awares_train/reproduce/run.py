"""One entry point for both reproductions: settings saved, torch threads set, then the data set's stages."""

from __future__ import annotations

from typing import Any

from awares_train.reproduce.bench import run_bench_reproduction
from awares_train.reproduce.pipeline import ReproduceConfig, run_synthetic_reproduction, work_identity
from awares_train.work_folder import claim_work_folder

__all__ = ["run_reproduction"]


def run_reproduction(cfg: ReproduceConfig) -> dict[str, Any]:
    """Run (or resume) every stage of ``cfg.dataset``'s reproduction, then write its report; returns the results.

    Raises:
        WorkFolderMismatchError: ``cfg.work`` holds a reproduction of another base or other settings.
    """
    import torch

    torch.set_num_threads(cfg.threads)
    claim_work_folder(cfg.work, work_identity(cfg), what="reproduction")
    (cfg.work / "reproduce.json").write_text(cfg.model_dump_json(indent=2))
    if cfg.dataset == "bench":
        return run_bench_reproduction(cfg)
    return run_synthetic_reproduction(cfg)
