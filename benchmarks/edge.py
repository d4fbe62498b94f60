"""AwaRes on the edge: time and peak memory of crop decisions against full resolution, on llama.cpp (CPU).

The same replayed-decision method as ``benchmarks/latency.py`` (transformers): a Qwen2.5-VL with random
weights runs through the real :class:`~awares_tool.backends.llamacpp.LlamaCppBackend`, the crop decisions
are scripted (no crop, one crop, two crops), so the cost is real and independent of what a random model
says. The model is that benchmark's checkpoint (``--size real``: the real Qwen2.5-VL vision tower, depth 32,
width 1280, window attention, with a Qwen2-0.5B-like LM), exported once with ``awares export-gguf`` into
``~/.cache/awares`` (minutes and a few GB the first time; reused after).

Each (decision, image) runs in its own worker process so that its **peak RSS** is its own (llama.cpp
allocates the KV cache at load, so differences come from the vision encoder's compute buffers and
activations); the worker first warms up on a small image (projector load), then times one question.
Decisions are interleaved per repeat so machine load hits them alike. Every answer decodes exactly
``--answer-tokens`` tokens (EOS is banned), so the decode cost does not depend on the random model either.

    python benchmarks/edge.py                   # realistic size
    python benchmarks/edge.py --size small      # quick run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from latency import CACHE, build_model, document  # noqa: E402

DECISIONS = {
    # name: (mode, scripted replies)
    "fullres": ("fullres", ["the answer"]),
    "awares, no crop": ("awares", ["the answer"]),
    "awares, 1 crop": ("awares", ["GET_CROPS: ['3']", "the answer"]),
    "awares, 2 crops": ("awares", ["GET_CROPS: ['0', '3']", "the answer"]),
}
MIX = {"awares, no crop": 0.72, "awares, 1 crop": 0.28}  # the paper's decision mix after GRPO
TARGETS = {"paper mix": 2.5, "awares, 1 crop": 1.6}


def build_gguf(size: str, quant: str) -> tuple[Path, Path]:
    """Export the benchmark checkpoint to GGUF once (llama.cpp's own converter)."""
    from awares_tool.gguf import export_gguf

    out = CACHE / f"edge-qwen25vl-{size}-{quant}"
    model, mmproj = out / "model.gguf", out / "mmproj.gguf"
    if not (model.is_file() and mmproj.is_file()):
        ckpt = build_model(size)
        print(f"exporting {ckpt.name} to GGUF ({quant}) into {out} (once) ...", flush=True)
        t0 = time.perf_counter()
        export_gguf(ckpt, out, quant=quant)  # type: ignore[arg-type]
        print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    return model, mmproj


def worker(args: argparse.Namespace) -> None:
    """Run one decision on one image in this process; print {seconds, rss_mb, rtr} as JSON."""
    from awares_tool import crop_on_demand
    from awares_tool.backends.llamacpp import LlamaCppBackend
    from awares_tool.backends.scripted import ReplayBackend

    w, h = (int(v) for v in args.image.split("x"))
    img = document(w, h)
    mode, replies = DECISIONS[args.decision]
    with LlamaCppBackend(args.model, mmproj=args.mmproj, n_ctx=args.n_ctx, n_threads=args.threads) as be:
        banned = {be._llm.token_eos(), *be._llm.tokenize(b"<|im_end|>", add_bos=False, special=True)}
        be.completion_kwargs = {"logit_bias": {t: -1e9 for t in banned}, "stop": []}
        crop_on_demand(document(224, 224), "warm-up", backend=ReplayBackend(be, ["x"]), mode="lowres",
                       max_new_tokens=2)
        t0 = time.perf_counter()
        res = crop_on_demand(img, "What is the number in the bottom-right corner?", backend=ReplayBackend(be, replies),
                             mode=mode, max_new_tokens=args.answer_tokens)
        dt = time.perf_counter() - t0
        cached = sum(t.cached_tokens for t in res.timings)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": dt, "rss_mb": rss_mb, "rtr": res.tokens.rtr, "cached": cached,
                      "tokens": res.tokens.spent}))


def run_worker(args: argparse.Namespace, model: Path, mmproj: Path, decision: str, image: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--decision", decision, "--image", image, "--model", str(model),
           "--mmproj", str(mmproj), "--threads", str(args.threads), "--n-ctx", str(args.n_ctx),
           "--answer-tokens", str(args.answer_tokens)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"worker {decision} {image} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["real", "small"], default="real")
    ap.add_argument("--quant", choices=["q8_0", "f16", "q4_k_m"], default="q8_0")
    ap.add_argument("--images", default="1024x768,1536x1152", help="comma-separated WxH sizes")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved repeats; the median is reported")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--answer-tokens", type=int, default=8)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--decision", help=argparse.SUPPRESS)
    ap.add_argument("--image", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--mmproj", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    model, mmproj = build_gguf(args.size, args.quant)
    print(f"model: {model.parent.name}  threads: {args.threads}  load average: {os.getloadavg()[0]:.1f} "
          "(a shared CPU distorts absolute times; the ratios are measured side by side)", flush=True)
    for image in args.images.split(","):
        runs: dict[str, list[dict]] = {k: [] for k in DECISIONS}
        for _ in range(args.repeats):
            for name in DECISIONS:
                runs[name].append(run_worker(args, model, mmproj, name, image))
        sec = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
        rss = {k: max(r["rss_mb"] for r in v) for k, v in runs.items()}
        rtr = {k: v[-1]["rtr"] or 0.0 for k, v in runs.items()}
        sec["paper mix"] = sum(w * sec[k] for k, w in MIX.items())
        rss["paper mix"] = max(rss[k] for k in MIX)
        rtr["paper mix"] = sum(w * rtr[k] for k, w in MIX.items())
        full_s, full_mb = sec["fullres"], rss["fullres"]
        print(f"\n== {image}: {runs['fullres'][-1]['tokens']} visual tokens at full resolution")
        print(f"{'decision':<18}{'time s':>9}{'speed-up':>10}{'peak MB':>9}{'mem ratio':>11}{'RTR':>7}{'target':>12}")
        for name in [*DECISIONS, "paper mix"]:
            speed = full_s / sec[name]
            target = TARGETS.get(name)
            verdict = "" if target is None else f">={target}x {'ok' if speed >= target else 'MISSED'}"
            print(f"{name:<18}{sec[name]:>9.2f}{speed:>9.2f}x{rss[name]:>9.0f}{rss[name] / full_mb:>10.2f}x"
                  f"{rtr[name]:>7.2f}{verdict:>12}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
