"""The cost of looking where it matters: end-to-end time of AwaRes decisions against full resolution.

A realistic-size Qwen2.5-VL with random weights (the real vision tower: depth 32, width 1280, window
attention; a Qwen2-0.5B-like language model) runs through the real transformers backend. Weights do not
change compute, so the cost is real; the *decisions* are replayed (no crop, one crop, two crops) so that it
does not depend on what a random model says. Everything is timed side by side in one run, interleaved, and
printed as ratios to ``fullres`` next to the token-count bound 1/RTR (absolute times on a shared machine lie).

Sizes above the model's pixel cap (the AwaRes setting, 1,605,632 pixels) matter: there ``fullres`` is itself
downscaled to the cap, so the baseline is the capped full view; the low-res view is half of *that* (not of the
native image, which would cost as much as the capped full view), and crops bring detail the capped view lacks.
The table reports RTR against the capped full view and against native resolution.

    python benchmarks/latency.py                 # realistic size (builds ~2.6 GB once into ~/.cache/awares)
    python benchmarks/latency.py --size small    # a quick smoke run with a small model
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from awares_tool import crop_on_demand
from awares_tool.backends.scripted import ReplayBackend

CACHE = Path(os.environ.get("AWARES_CACHE", Path.home() / ".cache" / "awares"))
OFFICIAL_MAX_PIXELS = 1_605_632  # the official AwaRes evaluation's cap (2048 tokens of 28x28)

SIZES = {
    # the real Qwen2.5-VL vision tower and a Qwen2-0.5B-like LM
    "real": dict(
        vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=896,
                    fullatt_block_indexes=[7, 15, 23, 31]),
        text=dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, mrope_section=[8, 12, 12]),  # sums to head_dim/2 = 32
    ),
    "small": dict(
        vision=dict(depth=8, hidden_size=320, intermediate_size=856, num_heads=4, out_hidden_size=256,
                    fullatt_block_indexes=[3, 7]),
        text=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, mrope_section=[8, 12, 12]),
    ),
}

DECISIONS = {
    # name: (mode, replies, reuse_cache)
    "fullres": ("fullres", ["the answer"], False),
    "awares, no crop": ("awares", ["the answer"], True),
    "awares, 1 crop": ("awares", ["GET_CROPS: ['3']", "the answer"], True),
    "awares, 1 crop, no KV reuse": ("awares", ["GET_CROPS: ['3']", "the answer"], False),
    "awares, 2 crops": ("awares", ["GET_CROPS: ['0', '3']", "the answer"], True),
    "awares, 2 crops, no KV reuse": ("awares", ["GET_CROPS: ['0', '3']", "the answer"], False),
    "full_on_request": ("full_on_request", ["GET_CROPS: ['3']", "the answer"], True),
}


def build_model(size: str) -> Path:
    """Build (once) a random Qwen2.5-VL of the given size with a small tokenizer and save it."""
    out = CACHE / f"latency-qwen25vl-{size}"
    if (out / "config.json").is_file():
        return out
    import torch
    import transformers as tf

    from awares_train.testing.tiny_vlms import build_tiny_vlm

    print(f"building the {size} random model into {out} (once) ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_tiny_vlm("qwen2.5-vl", Path(tmp) / "tiny")
        from awares_tool.backends.hf_processors import load_processor

        proc = load_processor(str(tiny))
        cfg = tf.AutoConfig.from_pretrained(tiny)
    spec = SIZES[size]
    t = dict(spec["text"])
    section = t.pop("mrope_section")
    tiny_text = cfg.text_config
    text = dict(
        vocab_size=tiny_text.vocab_size, max_position_embeddings=32768, eos_token_id=tiny_text.eos_token_id,
        pad_token_id=tiny_text.pad_token_id, bos_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": section}, **t,
    )
    vision = dict(patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112, **spec["vision"])
    cfg = tf.Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=cfg.image_token_id,
        video_token_id=cfg.video_token_id, vision_start_token_id=cfg.vision_start_token_id,
        vision_end_token_id=cfg.vision_end_token_id,
    )
    torch.manual_seed(0)
    model = tf.Qwen2_5_VLForConditionalGeneration(cfg).to(torch.bfloat16)
    proc.image_processor.size = {"shortest_edge": 32 * 28 * 28, "longest_edge": OFFICIAL_MAX_PIXELS}
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"  {n / 1e6:.0f}M parameters", flush=True)
    return out


def document(width: int, height: int, seed: int = 0) -> Image.Image:
    """A page of small text lines: what high-resolution document questions look like."""
    import random

    rng = random.Random(seed)
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(12, width // 80))
    y = 20
    while y < height - 30:
        words = " ".join(f"{rng.randint(0, 99999):05d}" for _ in range(width // 90))
        d.text((20, y), words, fill="black", font=font)
        y += max(16, width // 60)
    return img


def run(backend, image: Image.Image, decision: str) -> tuple[float, Any]:
    mode, replies, reuse = DECISIONS[decision]
    be = ReplayBackend(backend, replies)
    t0 = time.perf_counter()
    res = crop_on_demand(image, "What is the number in the bottom-right corner?", backend=be, mode=mode,
                         reuse_cache=reuse, max_new_tokens=8)
    return time.perf_counter() - t0, res.tokens


def _native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="real")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved repeats; the median is reported")
    ap.add_argument("--images", default="1024x1024,2048x1536,4032x3024", help="comma-separated WxH sizes")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--dtype", choices=["auto", "bfloat16", "float32"], default="auto",
                    help="auto: bfloat16 where the CPU has native bf16 (avx512_bf16/amx), else float32 "
                         "(emulated bf16 is many times slower than fp32)")
    args = ap.parse_args()

    from awares_tool.backends.transformers import TransformersBackend

    path = build_model(args.size)
    dtype = args.dtype if args.dtype != "auto" else ("bfloat16" if _native_bf16() else "float32")
    backend = TransformersBackend(path, dtype=dtype, threads=args.threads)
    print(f"model: {path.name}  dtype: {dtype}  threads: {args.threads}  load average: {os.getloadavg()[0]:.1f} "
          f"(other jobs on the machine distort absolute times; ratios are measured side by side)", flush=True)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.images.split(",")]
    for w, h in sizes:
        img = document(w, h)
        print(f"\n== {w}x{h}", flush=True)
        run(backend, img, "awares, no crop")  # warm-up
        times: dict[str, list[float]] = {k: [] for k in DECISIONS}
        ledgers: dict[str, Any] = {}
        for _ in range(args.repeats):
            for name in DECISIONS:
                dt, ledgers[name] = run(backend, img, name)
                times[name].append(dt)
        first = ledgers["fullres"]
        native = ledgers["awares, no crop"].full_native or first.full
        capped = " (above max_pixels: the full view is downscaled to it)" if native != first.full else ""
        print(f"visual tokens: full view {first.full}, native {native}{capped}; low-res view "
              f"{ledgers['awares, no crop'].first_view}", flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        full = med["fullres"]
        print(f"{'decision':<30}{'time s':>9}{'speed-up':>10}{'RTR':>7}{'native':>8}{'1/RTR':>8}{'of bound':>10}")
        for name in DECISIONS:
            r = ledgers[name].rtr or 0.0
            rn = ledgers[name].rtr_native or r
            speed = full / med[name]
            bound = 1 / r if r else float("nan")
            print(f"{name:<30}{med[name]:>9.2f}{speed:>9.2f}x{r:>7.2f}{rn:>8.3f}{bound:>8.2f}{speed / bound:>9.0%}")
        mix = 0.72 * med["awares, no crop"] + 0.28 * med["awares, 1 crop"]
        mix_rtr = 0.72 * (ledgers["awares, no crop"].rtr or 0) + 0.28 * (ledgers["awares, 1 crop"].rtr or 0)
        print(f"{'paper mix 72% none / 28% one':<30}{mix:>9.2f}{full / mix:>9.2f}x{mix_rtr:>7.2f}{'':>8}"
              f"{1 / mix_rtr:>8.2f}{(full / mix) * mix_rtr:>9.0%}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
