"""Benchmark the image front end of the crop engine against the plain Pillow way.

Usage: python benchmarks/crop_engine.py [--repeats N] [--size 4000x3000]

It writes a document-like JPEG (noise + lines of text) to a temporary folder and times, in one run,
with the methods interleaved on every repeat so that machine load hits them alike:

  (a) ours, low-res + crop:  open_image(path) -> .resized(half size) -> one quadrant .crop
  (b) plain, low-res + crop: Image.open(path).convert("RGB") -> .resize(half) -> .crop(quadrant)
  (c) ours, low-res only:    open_image(path) -> .resized(half size)
  (d) plain, low-res only:   Image.open(path).convert("RGB") -> .resize(half)

(c)/(d) are the common case: after GRPO the model answers about 72% of questions from the low-res
view alone. Medians are reported; nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from awares_tool.images import open_image  # noqa: E402

BICUBIC = Image.Resampling.BICUBIC


def make_document(path: Path, size: tuple[int, int]) -> None:
    """Write a JPEG that looks like a scanned page: grey noise, a gradient and dense text."""
    w, h = size
    page = Image.blend(
        Image.linear_gradient("L").resize((w, h)).convert("RGB"),
        Image.effect_noise((w, h), 25).convert("RGB"),
        0.25,
    )
    draw = ImageDraw.Draw(page)
    font_size = max(12, h // 75)
    for row, y in enumerate(range(font_size * 2, h - font_size, int(font_size * 1.6))):
        draw.text((font_size * 2, y), f"{row:03d} Invoice total 1,234.56 EUR - net 30 days - " * 6,
                  fill=(10, 10, 40), font_size=font_size)
    page.save(path, quality=90)


def ours(path: Path, crop: bool) -> None:
    src = open_image(path)
    w, h = src.size
    src.resized((w // 2, h // 2))
    if crop:
        src.crop((w // 2, h // 2, w, h))


def plain(path: Path, crop: bool) -> None:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    img.resize((w // 2, h // 2), BICUBIC)
    if crop:
        img.crop((w // 2, h // 2, w, h))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats (median is reported)")
    parser.add_argument("--size", default="4000x3000", help="WxH of the generated JPEG")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "document.jpg"
        make_document(path, size)  # type: ignore[arg-type]
        methods: dict[str, Callable[[], None]] = {
            "(a) ours: low-res + crop": lambda: ours(path, crop=True),
            "(b) plain: low-res + crop": lambda: plain(path, crop=True),
            "(c) ours: low-res only": lambda: ours(path, crop=False),
            "(d) plain: low-res only": lambda: plain(path, crop=False),
        }
        for fn in methods.values():  # warm-up: file cache, lazy imports
            fn()
        times: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(args.repeats):
            for name, fn in methods.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        nbytes = path.stat().st_size

    med = {name: statistics.median(t) * 1000 for name, t in times.items()}
    print(f"image: {size[0]}x{size[1]} JPEG, {nbytes / 1e6:.1f} MB; repeats: {args.repeats} (interleaved)")
    print(f"{'method':<28}{'median ms':>11}{'min ms':>9}{'max ms':>9}")
    for name, t in times.items():
        print(f"{name:<28}{med[name]:>11.1f}{min(t) * 1000:>9.1f}{max(t) * 1000:>9.1f}")
    keys = list(med)
    print(f"ratio plain/ours, low-res + crop: {med[keys[1]] / med[keys[0]]:.2f}x")
    print(f"ratio plain/ours, low-res only:   {med[keys[3]] / med[keys[2]]:.2f}x")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    cpus = os.cpu_count()
    print(f"caveat: load average {load} on {cpus} CPUs; timings on a busy machine are noisy")


if __name__ == "__main__":
    main()
