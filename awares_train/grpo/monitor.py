"""Collapse detection for crop-tool RL, and a plot of the tool-call rate.

Every published RL zoom method reports collapse: tool use falls to 0% (the cost wins before the policy
learns what crops are for) or rises to 100% (the missed-crop penalty dominates). The monitor alerts when
the tool-call rate stays outside ``[low, high]`` for ``patience`` consecutive logging steps, and sets
``awares/collapse`` (1 when collapsed, else 0) in the logged metrics.

Remedies the trainer offers (see ``awares_train/configs/README.md``):

* **SFT warm start**: start GRPO from the cold-start SFT checkpoint (``model_name_or_path`` /
  ``sft_adapter``), so both behaviours exist before RL weighs them.
* **Penalty warm-up**: ``penalty_warmup_steps`` ramps the crop costs in linearly, so early
  policies are not pushed to "never crop" before the answer reward pays for crops.
* Re-balance ``missed_crop_cost`` / ``request_cost`` or the data's share of crop-needing samples.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CollapseMonitor", "make_collapse_callback", "plot_tool_call_rate", "RATE_KEYS"]

log = logging.getLogger(__name__)

#: Logged keys read as the tool-call rate, first found wins (ours, then TRL's).
RATE_KEYS = ("awares/tool_call_rate", "tools/call_frequency")


@dataclass
class CollapseMonitor:
    """Counts consecutive out-of-band tool-call rates.

    >>> m = CollapseMonitor(low=0.05, high=0.95, patience=2)
    >>> [m.update(r) for r in (0.5, 0.0, 0.0, 0.3)]
    [False, False, True, False]
    """

    low: float = 0.05
    high: float = 0.95
    patience: int = 5
    streak: int = 0
    collapsed: bool = False
    history: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 <= self.low < self.high <= 1.0:
            raise ValueError(f"need 0 <= low < high <= 1, got low={self.low}, high={self.high}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")

    def update(self, rate: float) -> bool:
        """Record one step's tool-call rate; returns whether the run is collapsed now."""
        self.history.append(float(rate))
        self.streak = self.streak + 1 if (rate < self.low or rate > self.high) else 0
        self.collapsed = self.streak >= self.patience
        return self.collapsed


def make_collapse_callback(monitor: CollapseMonitor) -> Any:
    """A ``TrainerCallback`` that feeds logged rates to ``monitor``, warns and flags ``awares/collapse``.

    ``Trainer.log`` records a copy of the logs in ``state.log_history`` before callbacks see them, so the
    flag goes into that row too. Add it before the metrics callback, which writes that history.
    """
    from transformers import TrainerCallback

    class _Collapse(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if not logs:
                return
            rate = next((logs[k] for k in RATE_KEYS if k in logs), None)
            if rate is None:
                return
            was = monitor.collapsed
            now = monitor.update(float(rate))
            logs["awares/collapse"] = float(now)
            if state is not None and state.log_history:
                state.log_history[-1]["awares/collapse"] = float(now)  # the row Trainer.log just recorded
            if now and not was:
                direction = "0%" if rate < monitor.low else "100%"
                log.warning(
                    "tool-use collapse: the tool-call rate (%.3f) has been outside [%.2f, %.2f] for %d steps "
                    "(towards %s). Remedies: start from the SFT checkpoint, set penalty_warmup_steps, or "
                    "re-balance missed_crop_cost/request_cost.", rate, monitor.low, monitor.high, monitor.streak,
                    direction)

    return _Collapse()


def plot_tool_call_rate(metrics_jsonl: str | Path, out_png: str | Path, *, low: float | None = None,
                        high: float | None = None) -> Path:
    """Plot the tool-call rate per step from a run's ``metrics.jsonl`` (with the alert band, if given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, rates, flags = [], [], []
    for line in Path(metrics_jsonl).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        key = next((k for k in RATE_KEYS if k in row), None)
        if key is not None:
            steps.append(row["step"])
            rates.append(row[key])
            flags.append(row.get("awares/collapse", 0.0))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(steps, rates, marker="o", ms=3, label="tool-call rate")
    if low is not None and high is not None:
        ax.axhspan(low, high, color="tab:green", alpha=0.08, label="healthy band")
    bad = [(s, r) for s, r, f in zip(steps, rates, flags) if f]
    if bad:
        ax.scatter(*zip(*bad), color="tab:red", zorder=3, label="collapse")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("share of rollouts calling get_crops")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
