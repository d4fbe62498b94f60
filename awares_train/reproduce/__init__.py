"""The tiny AwaRes reproduction: synthetic data -> trajectories -> SFT -> GRPO (+ reward ablations) -> evaluation.

Everything runs through the package's own entry points (``build_dataset``, ``awares-train sft``,
``awares-train grpo``, the evaluation harness), starting from a base VLM (the shipped ``tiny-base`` by
default), and writes a results table and an accuracy-vs-RTR plot. ``make reproduce`` calls it.
"""

from awares_train.reproduce.pipeline import ReproduceConfig
from awares_train.reproduce.run import run_reproduction

__all__ = ["ReproduceConfig", "run_reproduction"]
