"""What a training run logged per step, from wherever it is stored, and a plot of a GRPO run's curves.

Runs write ``metrics.jsonl`` (one line per logging step); a Trainer also keeps ``trainer_state.json`` with its
``log_history`` (in the output folder or its checkpoints). :func:`read_log_history` reads either, so the report
does not depend on which one a run left.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["read_log_history", "series", "running_mean", "plot_grpo_curves", "CURVES", "SMOOTH"]

#: Panels of the GRPO plot: title -> the logged keys drawn in it (TRL logs each reward term unweighted).
CURVES: dict[str, tuple[str, ...]] = {
    "reward (weighted sum)": ("reward",),
    "reward terms (unweighted)": ("rewards/answer/mean", "rewards/tool_cost/mean"),
    "frac_reward_zero_std": ("frac_reward_zero_std",),
    "tool-call rate / no-crop share": ("awares/tool_call_rate", "awares/no_crop_share"),
    "accuracy / RTR": ("awares/accuracy", "awares/rtr"),
}


def _trainer_state(run_dir: Path) -> Path | None:
    direct = run_dir / "trainer_state.json"
    if direct.is_file():
        return direct
    found = [(int(p.parent.name.split("-")[-1]), p) for p in run_dir.glob("checkpoint-*/trainer_state.json")
             if p.parent.name.split("-")[-1].isdigit()]
    return max(found)[1] if found else None


def read_log_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's logged rows, one per step, in step order: ``metrics.jsonl`` if present, else ``log_history``.

    A resumed run logs the steps after its checkpoint again; the last row of each step wins. Rows without a
    ``step`` (nothing to plot against) are dropped.
    """
    run = Path(run_dir)
    rows: list[dict[str, Any]] = []
    jsonl = run / "metrics.jsonl"
    if jsonl.is_file():
        rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        state = _trainer_state(run)
        if state is not None:
            rows = list(json.loads(state.read_text(encoding="utf-8")).get("log_history", []))
    by_step: dict[int, dict[str, Any]] = {}
    for row in rows:
        if isinstance(row.get("step"), int):
            by_step[row["step"]] = {**by_step.get(row["step"], {}), **row}
    return [by_step[s] for s in sorted(by_step)]


def series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of one logged key (steps that did not log it are skipped)."""
    pts = [(r["step"], float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


#: Steps in the running mean drawn over each per-step curve.
SMOOTH = 20


def running_mean(values: list[float], window: int) -> list[float]:
    """Mean of the last ``window`` values at each point (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_grpo_curves(run_dir: str | Path, out_png: str | Path, *, title: str = "") -> Path | None:
    """One figure per GRPO run: reward terms, ``frac_reward_zero_std``, tool-call rate and no-crop share, accuracy
    and RTR per step. Returns None when the run logged nothing."""
    rows = read_log_history(run_dir)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.2))
    for ax, (name, keys) in zip(axes, CURVES.items()):
        for key in keys:
            steps, values = series(rows, key)
            if steps:  # per step, faint; its running mean over SMOOTH steps on top
                line, = ax.plot(steps, values, lw=0.6, alpha=0.35)
                ax.plot(steps, running_mean(values, SMOOTH), lw=1.4, color=line.get_color(),
                        label=key.replace("rewards/", "").replace("awares/", ""))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.lines:
            ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
