"""Evaluation harness: any backend, any mode, over an evaluation set; accuracy against visual-token cost."""

from .harness import EvalItem, EvalReport, ModeSummary, evaluate, load_eval_items

__all__ = ["EvalItem", "EvalReport", "ModeSummary", "evaluate", "load_eval_items"]
