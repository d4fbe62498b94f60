"""The GPU smoke run: what the CPU tests cannot show, measured whenever a session is lent a GPU.

1. bf16 inference at realistic size (the real Qwen2.5-VL vision tower + a 0.5B-like LM, random weights: the model
   of ``benchmarks/latency.py``) on a 2048x1536 page: full resolution, AwaRes without a crop and with one crop,
   through the transformers backend on the GPU (times side by side, RTR of each);
2. 2 SFT steps (LoRA, bf16) and 2 GRPO steps with real ``get_crops`` rollouts from that SFT output;
3. the same GRPO with TRL's vLLM generation in colocate mode, where vLLM imports.

Every stage is recorded in a JSON report (``--out``, default ``$OUT`` or ``out/gpu_smoke``); a stage that fails
is recorded with its error and the next one still runs. ``tests/test_gpu_smoke.py`` runs ``--device cpu --quick``
so the script keeps working between GPU sessions.

    python benchmarks/gpu_smoke.py                          # on the GPU machine (cuda, realistic size)
    python benchmarks/gpu_smoke.py --device cpu --quick     # CPU, small model, small image (what the test runs)

On the lent machine (its image has torch but no TRL, and transformers 5.17 < our 5.18): carry the wheels of
trl, transformers, peft, datasets (and vllm for stage 3) as ../.library/device/README.md explains.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def _stage(report: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]]) -> None:
    print(f"== {name}", flush=True)
    t0 = time.perf_counter()
    try:
        report[name] = {"ok": True, **fn()}
    except Exception as e:  # noqa: BLE001 - one broken stage must not hide the others
        report[name] = {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]}
    report[name]["wall_s"] = round(time.perf_counter() - t0, 2)
    print(json.dumps({k: v for k, v in report[name].items() if k != "trace"}, default=str), flush=True)


def inference(size: str, device: str, image_size: tuple[int, int]) -> dict[str, Any]:
    from latency import build_model, document, run

    from awares_tool.backends.transformers import TransformersBackend

    dtype = "bfloat16" if device != "cpu" else "float32"
    backend = TransformersBackend(build_model(size), dtype=dtype, device=device)
    img = document(*image_size)
    run(backend, img, "awares, no crop")  # warm-up (kernels, caches)
    out: dict[str, Any] = {"dtype": dtype, "image": list(image_size)}
    for decision in ("fullres", "awares, no crop", "awares, 1 crop"):
        dt, ledger = run(backend, img, decision)
        out[decision] = {"s": round(dt, 3), "rtr": ledger.rtr, "visual_tokens": ledger.spent}
    full = out["fullres"]["s"]
    out["speedup_no_crop"] = round(full / out["awares, no crop"]["s"], 2)
    out["speedup_one_crop"] = round(full / out["awares, 1 crop"]["s"], 2)
    return out


def _training_args(device: str) -> list[str]:
    if device == "cpu":
        return ["use_cpu=true", "bf16=false"]
    return ["use_cpu=false", "bf16=true", "torch_threads=null"]


def sft(model: Path, data: Path, out: Path, device: str) -> dict[str, Any]:
    from awares_train.sft.config import AwaresSFTConfig
    from awares_train.sft.runio import load_config
    from awares_train.sft.train import run_sft

    cfg = load_config(AwaresSFTConfig, ROOT / "awares_train/configs/sft_tiny.yaml", [
        f"model_name_or_path={model}", f"train_data={data}", f"output_dir={out}", "max_steps=2", "eval_fraction=0",
        "use_peft=true", "logging_steps=1", *_training_args(device)])
    t0 = time.perf_counter()
    run_sft(cfg)
    return {"steps": 2, "train_s": round(time.perf_counter() - t0, 2),
            "card": json.loads((out / "awares.json").read_text())["training"]}


def grpo(sft_out: Path, data: Path, out: Path, device: str, vllm: bool = False) -> dict[str, Any]:
    from awares_train.grpo.config import AwaresGRPOConfig
    from awares_train.grpo.train import run_grpo
    from awares_train.sft.runio import load_config

    extra = ["use_vllm=true", "vllm_mode=colocate", "vllm_gpu_memory_utilization=0.3"] if vllm else []
    cfg = load_config(AwaresGRPOConfig, ROOT / "awares_train/configs/grpo_tiny.yaml", [
        f"model_name_or_path={sft_out}", f"train_data={data}", f"output_dir={out}", "max_steps=2",
        "completion_budget=auto", *_training_args(device), *extra])
    t0 = time.perf_counter()
    run_grpo(cfg)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "reward" in r]
    keys = ("reward", "tools/call_frequency", "awares/rtr", "awares/rolled_back_crops", "step_time")
    return {"steps": 2, "train_s": round(time.perf_counter() - t0, 2),
            "metrics": [{k: r.get(k) for k in keys} for r in logged]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="cuda, cuda:N or cpu (auto: cuda when available)")
    ap.add_argument("--size", choices=["real", "small"], default=None, help="inference model (default: real on GPU)")
    ap.add_argument("--quick", action="store_true", help="small image and the tiny training model (CPU check)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out/gpu_smoke")))
    args = ap.parse_args()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    size = args.size or ("real" if device != "cpu" else "small")
    report: dict[str, Any] = {
        "device": device, "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None, "size": size,
    }
    _stage(report, "inference", lambda: inference(size, device, (1024, 768) if args.quick else (2048, 1536)))

    from awares_train.sft.toydata import write_toy_trajectories
    from awares_train.testing.tiny_vlms import build_tiny_vlm

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.quick:
            model = build_tiny_vlm("qwen2.5-vl", work / "model")
        else:
            from latency import build_model

            model = build_model(size)
        data = write_toy_trajectories(work / "data", 16, crop_share=1.0, size=448)
        _stage(report, "sft", lambda: sft(model, data, work / "sft", device))
        _stage(report, "grpo", lambda: grpo(work / "sft", data, work / "grpo", device))
        if device.startswith("cuda") and importlib.util.find_spec("vllm") is not None:
            _stage(report, "grpo_vllm", lambda: grpo(work / "sft", data, work / "grpo_vllm", device, vllm=True))
        else:
            report["grpo_vllm"] = {"ok": None, "skipped": "needs a GPU and vllm (pip install 'awares[vllm]')"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_smoke.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"report: {args.out / 'gpu_smoke.json'}")
    sys.exit(0 if all(v.get("ok") is not False for v in report.values() if isinstance(v, dict)) else 1)


if __name__ == "__main__":
    main()
