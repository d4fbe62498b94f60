"""The stats report of a trajectory folder: label shares, crop histogram, target RTR; JSON and a plot.

Computed from the files themselves (not from the last run's counters), so a resumed build reports
on everything it holds.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["compute_stats", "plot_stats", "write_stats"]

logger = logging.getLogger(__name__)


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.endswith("\n"):
                out.append(json.loads(line))
    return out


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def compute_stats(out_dir: str | Path) -> dict[str, Any]:
    """Label counts and shares, crop histograms, mean target RTR, grounding and fallback counts."""
    out = Path(out_dir)
    data, rejects = _lines(out / "data.jsonl"), _lines(out / "rejects.jsonl")
    labels = Counter(r["label"] for r in data)
    for r in rejects:
        if r.get("reason") == "drop":
            labels["drop"] += 1
    judged = sum(labels.values())
    crops = [r for r in data if r["label"] == "crop"]
    rtr = {lab: _mean([r["target_rtr"] for r in data if r["label"] == lab and r.get("target_rtr") is not None])
           for lab in ("direct", "crop")}
    return {
        "records": len(data),
        "rejected": len(rejects),
        "labels": dict(labels),
        "label_shares": {k: v / judged for k, v in labels.items()} if judged else {},
        "verdicts": dict(Counter(r["judge"]["verdict"] for r in data)),
        "crop_histogram": dict(Counter(n for r in crops for n in r["target_regions"])),
        "crops_per_request": dict(Counter(str(len(r["target_regions"])) for r in crops)),
        "fallback_all": sum(1 for r in crops if r.get("target_fallback")),
        "fallback_reasons": dict(Counter(r["target_fallback"] for r in crops if r.get("target_fallback"))),
        "grounding": dict(Counter(r.get("grounding") or "none" for r in crops)),
        "mean_target_rtr": _mean([r["target_rtr"] for r in data if r.get("target_rtr") is not None]),
        "mean_target_rtr_by_label": rtr,
        "reject_reasons": dict(Counter(r.get("reason", "?") for r in rejects)),
        "by_source": {s: dict(Counter(r["label"] for r in data if r["source"] == s))
                      for s in sorted({r["source"] for r in data})},
    }


def plot_stats(stats: dict[str, Any], path: str | Path, rtrs: list[float] | None = None) -> None:
    """Three panels: label shares, crop histogram, and the target-RTR distribution (or means)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    labels = stats.get("labels", {})
    names = [k for k in ("direct", "crop", "drop") if k in labels]
    axes[0].bar(range(len(names)), [labels[k] for k in names], color=["#4c72b0", "#dd8452", "#999999"][: len(names)],
                tick_label=names)
    axes[0].set_title("labels")
    hist = stats.get("crop_histogram", {})
    order = sorted(hist, key=lambda n: (n == "all", len(n), n))
    if order:  # numeric-looking region names as tick labels, not as categorical axis units
        axes[1].bar(range(len(order)), [hist[n] for n in order], color="#dd8452", tick_label=order)
    axes[1].set_title(f"crop targets (fallback to all: {stats.get('fallback_all', 0)})")
    if rtrs:
        axes[2].hist(rtrs, bins=20, color="#55a868")
        axes[2].set_xlabel("target RTR")
    axes[2].set_title(f"mean target RTR: {stats.get('mean_target_rtr') or float('nan'):.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_stats(out_dir: str | Path, *, plot: bool = True) -> dict[str, Any]:
    """Write ``stats.json`` (and ``stats.png`` when ``plot``) into ``out_dir`` and return the stats."""
    out = Path(out_dir)
    stats = compute_stats(out)
    (out / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if not plot:
        return stats
    rtrs = [r["target_rtr"] for r in _lines(out / "data.jsonl") if r.get("target_rtr") is not None]
    try:
        plot_stats(stats, out / "stats.png", rtrs)
    except ImportError:
        logger.warning("matplotlib is not installed; stats.png not written (pip install matplotlib)")
    return stats
