"""``SFTTrainer`` with per-token loss weights: the crop-request turn counts ``tool_turn_weight`` times.

The paper weights the tool-call turn 5x in the SFT loss. TRL 1.16 scores tokens with a fused LM head
(``model(..., fused_lm_head=True)`` returns per-token log-probabilities) and its loss is
``-sum(log_probs) / num_tokens``. So TRL's own ``compute_loss`` runs unchanged on a thin wrapper of the
model that multiplies those log-probabilities by the collator's ``loss_weights``: the loss becomes the
weighted token mean, and TRL's bookkeeping (entropy, token accuracy, ``num_tokens``, the MoE aux loss,
``average_tokens_across_devices``) still happens. With all weights 1 it is TRL's loss.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import SFTTrainer

__all__ = ["WeightedSFTTrainer"]


class _WeightedLogProbs:
    """The model, except that its fused-head ``log_probs`` come back multiplied by the loss weights.

    ``weights`` has the shape of ``labels``; the fused head scores ``labels[:, 1:]``, so the weights are
    shifted the same way. Everything else (the plain forward, attributes) passes through.
    """

    def __init__(self, model: Any, weights: torch.Tensor) -> None:
        self.model = model
        self.weights = weights[:, 1:]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        outputs = self.model(*args, **kwargs)
        if kwargs.get("fused_lm_head"):
            lp = outputs.log_probs
            outputs.log_probs = lp * self.weights.to(device=lp.device, dtype=lp.dtype)
        return outputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


class WeightedSFTTrainer(SFTTrainer):
    """``SFTTrainer`` that honours a ``loss_weights`` tensor (same shape as ``labels``) in the batch."""

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        weights = inputs.pop("loss_weights", None)
        if weights is not None:
            reason = self._why_weights_cannot_apply(inputs)
            if reason:
                raise ValueError(f"loss weights (tool_turn_weight, region_token_weight) cannot apply: "
                                 f"{reason}")
            model = _WeightedLogProbs(model, weights)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def _why_weights_cannot_apply(self, inputs: dict[str, Any]) -> str | None:
        """Why TRL's loss would not be ``-sum(w * log p) / num_tokens`` here (``None``: it would)."""
        if self.compute_loss_func is not None:
            return "a compute_loss_func computes the loss from the logits, not the weighted log-probabilities"
        if self.label_smoother is not None:
            return "label smoothing (label_smoothing_factor > 0) computes the loss from the full logits"
        if self.args.loss_type != "nll":
            return f"loss_type={self.args.loss_type!r} derives token weights from the log-probabilities"
        pc = getattr(self.accelerator, "parallelism_config", None)
        if "shift_labels" in inputs or getattr(pc, "sp_enabled", False) or getattr(pc, "cp_enabled", False):
            return "sequence/context parallelism splits each sequence across ranks, not the weights"
        return None
