"""Training throughput on a tiny VLM: samples/s and peak memory (RSS) for SFT and for GRPO.

    python benchmarks/train_throughput.py [--family qwen2.5-vl] [--sft-steps 10] [--grpo-steps 2] [--threads 1]

Tiny-model numbers measure the pipeline's overhead (collation, image processing, the tool loop), not
model compute; on a shared CPU repeat the run and compare ratios. Each stage runs in its own process so
its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _stage(stage: str, family: str, steps: int, threads: int, work: Path) -> dict:
    from awares_train.sft.runio import load_config
    from awares_train.sft.toydata import write_toy_trajectories
    from awares_train.testing.tiny_vlms import build_tiny_vlm

    model = build_tiny_vlm(family, work / "model")
    data = write_toy_trajectories(work / "data", 16, crop_share=1.0 if stage == "grpo" else 0.5)
    configs = Path(__file__).resolve().parents[1] / "awares_train" / "configs"
    if stage == "sft":
        from awares_train.sft.config import AwaresSFTConfig
        from awares_train.sft.train import run_sft

        cfg = load_config(AwaresSFTConfig, configs / "sft_tiny.yaml", [
            f"model_name_or_path={model}", f"train_data={data}", f"output_dir={work / 'sft'}", f"max_steps={steps}",
            "eval_fraction=0", f"torch_threads={threads}"])
        t0 = time.perf_counter()
        run_sft(cfg)
        samples = steps * cfg.per_device_train_batch_size
    else:
        os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
        from awares_train.grpo.config import AwaresGRPOConfig
        from awares_train.grpo.train import run_grpo

        cfg = load_config(AwaresGRPOConfig, configs / "grpo_tiny.yaml", [
            f"model_name_or_path={model}", f"train_data={data}", f"output_dir={work / 'grpo'}", f"max_steps={steps}",
            f"torch_threads={threads}"])
        t0 = time.perf_counter()
        run_grpo(cfg)
        samples = steps * cfg.per_device_train_batch_size  # completions (rollouts) per step
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"stage": stage, "family": family, "steps": steps, "samples": samples, "wall_s": round(wall, 2),
            "samples_per_s": round(samples / wall, 3), "peak_rss_mb": round(peak_mb, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="qwen2.5-vl")
    ap.add_argument("--sft-steps", type=int, default=10)
    ap.add_argument("--grpo-steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stage", choices=["sft", "grpo"], help=argparse.SUPPRESS)  # child process
    args = ap.parse_args()
    if args.stage:
        steps = args.sft_steps if args.stage == "sft" else args.grpo_steps
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(_stage(args.stage, args.family, steps, args.threads, Path(tmp))))
        return
    print(f"{'stage':6} {'family':11} {'steps':>5} {'samples/s':>10} {'peak RSS MB':>12} {'wall s':>8}")
    for stage in ("sft", "grpo"):
        cmd = [sys.executable, __file__, "--stage", stage, "--family", args.family, "--sft-steps",
               str(args.sft_steps), "--grpo-steps", str(args.grpo_steps), "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{stage}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{r['stage']:6} {r['family']:11} {r['steps']:>5} {r['samples_per_s']:>10} {r['peak_rss_mb']:>12} "
              f"{r['wall_s']:>8}")


if __name__ == "__main__":
    main()
