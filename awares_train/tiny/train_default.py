"""The embedded default: one model for the needle benchmark and the first reproduction's one-code task.

``python -m awares_train.tiny.train_default --bench-work runs/reproduce-bench --work runs/default``

The benchmark reproduction's GRPO model answers awares-bench but has forgotten the one-code task the embedded
default was made for (its accuracy there: 31% against the shipped default's 89%), so it cannot replace the
default as it is. This recipe runs the same stages from the same base, with the benchmark's SFT and GRPO
configs (full reward, seed 0), on both tasks' trajectories: the benchmark's (from the finished reproduction in
``--bench-work``) and the one-code task's, labelled by the same base as the first reproduction labels them.
Then it evaluates the model on both test splits. Every stage is skipped when its output exists (resumable).

Where it writes (under ``--work``): ``data/``, ``trajectories/`` (the one-code task), ``sft/``, ``grpo/``,
``eval/grpo/report.json`` (one-code test split: what ``python -m awares_train.tiny.ship WORK`` puts in the card)
and ``eval/grpo-bench/`` (the benchmark's test split, also carried into the card).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from awares_train.reproduce.bench import evaluate_on_bench
from awares_train.reproduce.pipeline import (CONFIGS, ReproduceConfig, build_synthetic_trajectories, cli_stage,
                                             evaluate_synthetic, run_stage, work_identity, write_synthetic_data)
from awares_train.tiny.ship import bench_eval_dir
from awares_train.work_folder import claim_work_folder, file_fingerprint

__all__ = ["default_config", "train_default"]


def default_config(bench_work: Path, work: Path, *, n_synthetic: int = 2400, threads: int = 2) -> ReproduceConfig:
    """The one-code task's settings of the default's recipe; base and seed are the benchmark reproduction's."""
    bench = ReproduceConfig.model_validate_json((bench_work / "reproduce.json").read_text())
    return ReproduceConfig(dataset="synthetic", base=bench.base, work=work, n_train=n_synthetic, threads=threads,
                           seed=bench.seed, sft_config=CONFIGS / "sft_tiny_bench.yaml",
                           grpo_config=CONFIGS / "grpo_tiny_bench.yaml", ablations=False)


def train_default(bench_work: Path, cfg: ReproduceConfig) -> Path:
    """Run (or resume) the recipe; returns the GRPO model's folder."""
    bench = ReproduceConfig.model_validate_json((bench_work / "reproduce.json").read_text())
    if not (bench_work / "trajectories" / "stats.json").exists():
        raise FileNotFoundError(f"no finished benchmark trajectories in {bench_work}: run `awares-train reproduce` "
                                "(or `make reproduce`) first")
    claim_work_folder(cfg.work, {**work_identity(cfg), "bench_trajectories": file_fingerprint(
        bench_work / "trajectories" / "data.jsonl")}, what="default-model recipe")
    (cfg.work / "reproduce.json").write_text(cfg.model_dump_json(indent=2))
    timings = cfg.work / "timings.json"
    run_stage("data", cfg.work / "data" / "test" / "records.jsonl", timings, lambda: write_synthetic_data(cfg))
    run_stage("trajectories", cfg.work / "trajectories" / "stats.json", timings,
              lambda: build_synthetic_trajectories(cfg))
    both = f"{bench_work / 'trajectories'},{cfg.work / 'trajectories'}"
    common = {"seed": cfg.seed, "torch_threads": cfg.threads, "train_data": both}
    sft, grpo = cfg.work / "sft", cfg.work / "grpo"
    run_stage("sft", sft / "awares.json", timings, lambda: cli_stage("sft", cfg.sft_config, {
        **common, "model_name_or_path": str(cfg.base), "output_dir": str(sft)}))
    run_stage("grpo", grpo / "awares.json", timings, lambda: cli_stage("grpo", cfg.grpo_config, {
        **common, "model_name_or_path": str(sft), "output_dir": str(grpo)}))
    run_stage("eval:grpo", cfg.work / "eval" / "grpo" / "report.json", timings,
              lambda: evaluate_synthetic(cfg, "grpo", grpo, ["awares"]))
    target = bench_eval_dir(cfg.work, "grpo")
    run_stage(f"eval:{target.name}", target / "report.json", timings,
              lambda: evaluate_on_bench(bench, "grpo", grpo, ["awares"], target))
    return grpo


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench-work", type=Path, required=True,
                    help="Work folder of a finished benchmark reproduction (its base and trajectories are used).")
    ap.add_argument("--work", type=Path, default=Path("runs/default"))
    ap.add_argument("--n-synthetic", type=int, default=2400, help="One-code training records (before the judge).")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    cfg = default_config(args.bench_work, args.work, n_synthetic=args.n_synthetic, threads=args.threads)
    grpo = train_default(args.bench_work, cfg)
    for folder in (args.work / "eval" / "grpo", bench_eval_dir(args.work, "grpo")):
        report = json.loads((folder / "report.json").read_text())
        for s in report["summaries"]:
            print(f"{folder.name:12s} {s['benchmark']:12s} n={s['n']:4d} accuracy {s['accuracy']:.3f} "
                  f"RTR {s['mean_rtr']:.3f}")
    print(f"model: {grpo}; ship it with python -m awares_train.tiny.ship {args.work}")


if __name__ == "__main__":
    main()
