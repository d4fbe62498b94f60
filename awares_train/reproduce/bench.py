"""The reproduction on the needle benchmark: ``awares-bench`` data -> trajectories -> SFT -> GRPO -> ``run_bench``.

Stages and where they write (under ``work``); each is skipped when its output exists, and SFT and GRPO continue
from their last checkpoint when stopped midway:

1. ``data/train``, ``data/test``: ``awares-bench`` splits of the ``tiny`` profile (``bench_seed``; what
   ``awares-bench generate --profile tiny`` writes).
2. ``trajectories``: ``build_dataset`` on the train split: the base answers from the low-res view and the full
   image, the exact-match judge labels each item, the benchmark's evidence boxes ground the crop items (``cover``:
   the smallest crops holding each box, two crops for two-box items).
3. ``eval/base``: ``run_bench`` of the base at full resolution and low resolution (shared by every seed).
4. per seed ``s`` in ``seed-s/``: ``sft`` (``awares-train sft``), ``grpo``, ``grpo-no-tool-cost``,
   ``grpo-no-request-cost``, ``grpo-no-answer`` (``awares-train grpo`` from the SFT model), and ``eval/<run>``:
   ``run_bench`` in awares mode.

The report (``results.md``, ``results.json``, the accuracy-vs-RTR plot and one training-curve plot per GRPO run)
goes to ``docs`` (:mod:`awares_train.reproduce.bench_report`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from awares_train.reproduce.pipeline import GRPO_RUNS, ReproduceConfig, cli_stage, grpo_runs, run_stage, seed_dir

__all__ = ["write_bench_data", "build_bench_trajectories", "evaluate_on_bench",
           "run_bench_reproduction", "BASE_MODES"]

log = logging.getLogger(__name__)

#: The base model's baselines: the capped full view (the accuracy to match) and the low-res view alone.
BASE_MODES = ["fullres", "lowres"]


def write_bench_data(cfg: ReproduceConfig) -> None:
    """The train and test splits of the benchmark (``tiny`` profile, ``cfg.bench_seed``)."""
    from awares_train.bench.generator import BenchConfig, write_split

    bench = BenchConfig(profile="tiny", seed=cfg.bench_seed)
    write_split(cfg.work / "data" / "train", bench, "train", int(cfg.n_train or 0), progress=True)
    write_split(cfg.work / "data" / "test", bench, "test", int(cfg.n_test or 0), progress=True)


def build_bench_trajectories(cfg: ReproduceConfig) -> None:
    """Trajectories of the train split: base answers (low-res, full), exact judge, the items' evidence boxes."""
    from awares_train.data.build import BuildConfig, build_dataset

    build_dataset(BuildConfig(
        data=str(cfg.work / "data" / "train" / "items.jsonl"), out=str(cfg.work / "trajectories"),
        adapter="generic", backend=f"transformers:{cfg.base}", judge="exact", grounding="dataset",
        region_rule="cover", region_threshold=1.0, seed=cfg.bench_seed, progress=True))


def evaluate_on_bench(cfg: ReproduceConfig, label: str, model: Path, modes: list[str], out: Path) -> None:
    """``run_bench`` of ``model`` on the test split (the profile's pixel cap applied), written to ``out``."""
    from awares_train.bench.run import run_bench

    run_bench(cfg.work / "data" / "test", f"transformers:{model}", modes, label=label, out=out)


def run_bench_reproduction(cfg: ReproduceConfig) -> dict[str, Any]:
    """Run (or resume) every stage of every seed, then write the report; returns the results record."""
    from awares_train.reproduce.bench_report import write_bench_report

    timings = cfg.work / "timings.json"
    run_stage("data", cfg.work / "data" / "test" / "stats.json", timings, lambda: write_bench_data(cfg))
    run_stage("trajectories", cfg.work / "trajectories" / "stats.json", timings,
              lambda: build_bench_trajectories(cfg))
    run_stage("eval:base", cfg.work / "eval" / "base" / "report.json", timings,
              lambda: evaluate_on_bench(cfg, "base", cfg.base, BASE_MODES, cfg.work / "eval" / "base"))
    for seed in cfg.seeds or [cfg.seed]:
        run_seed(cfg, seed, timings)
    return write_bench_report(cfg, json.loads(timings.read_text()) if timings.exists() else {})


def run_seed(cfg: ReproduceConfig, seed: int, timings: Path) -> None:
    """SFT, the GRPO runs and their evaluations for one training seed."""
    folder = seed_dir(cfg, seed)
    common = {"seed": seed, "torch_threads": cfg.threads}
    trajectories = str(cfg.work / "trajectories")
    sft = folder / "sft"
    run_stage(f"seed-{seed}/sft", sft / "awares.json", timings, lambda: cli_stage("sft", cfg.sft_config, {
        **common, "model_name_or_path": str(cfg.base), "train_data": trajectories, "output_dir": str(sft),
        **cfg.sft_overrides}))
    for name in grpo_runs(cfg):
        out = folder / name
        overrides = {**common, "model_name_or_path": str(sft), "train_data": trajectories, "output_dir": str(out),
                     **cfg.grpo_overrides, **GRPO_RUNS[name]}
        run_stage(f"seed-{seed}/{name}", out / "awares.json", timings,
                  lambda overrides=overrides: cli_stage("grpo", cfg.grpo_config, overrides))
    for name in ["sft", *grpo_runs(cfg)]:
        target = folder / "eval" / name
        run_stage(f"seed-{seed}/eval:{name}", target / "report.json", timings,
                  lambda name=name, target=target: evaluate_on_bench(cfg, name, folder / name, ["awares"], target))
