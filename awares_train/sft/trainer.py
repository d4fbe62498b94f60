"""``SFTTrainer`` with per-token loss weights: the crop-request turn counts ``tool_turn_weight`` times.

The paper weights the tool-call turn 5x in the SFT loss. TRL 1.16 scores tokens with a fused LM head
(``model(..., fused_lm_head=True)`` returns per-token log-probabilities), so the override is a few lines:
multiply those by the collator's ``loss_weights`` and normalise by the number of labelled tokens,
exactly as TRL's own loss does. With all weights 1 it equals TRL's loss.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import SFTTrainer

__all__ = ["WeightedSFTTrainer", "weighted_token_loss"]


def weighted_token_loss(log_probs: torch.Tensor, weights: torch.Tensor, num_tokens: Any) -> torch.Tensor:
    """``-sum(w * log p) / num_tokens``: a token-mean NLL in which each token counts ``w`` times.

    >>> lp = torch.log(torch.tensor([[0.5, 0.25, 1.0]]))
    >>> round(weighted_token_loss(lp, torch.tensor([[1.0, 2.0, 0.0]]), 2).item(), 4)
    1.7329
    """
    return -(log_probs * weights.to(log_probs.dtype)).sum() / torch.as_tensor(num_tokens).clamp(min=1)


class WeightedSFTTrainer(SFTTrainer):
    """``SFTTrainer`` that honours a ``loss_weights`` tensor (same shape as ``labels``) in the batch."""

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        weights = inputs.pop("loss_weights", None)
        if weights is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if model.training else "eval"
        inputs["use_cache"] = False
        outputs = model(**inputs, fused_lm_head=True)  # log_probs aligned with labels[:, 1:], 0 where ignored
        num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = weighted_token_loss(outputs.log_probs, weights[:, 1:], num_tokens)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as Trainer: DDP averages, num_items counts all ranks
        valid = self.accelerator.gather_for_metrics(outputs.label_mask.sum()).sum()
        correct = self.accelerator.gather_for_metrics(outputs.is_top1.sum()).sum()
        self._metrics[mode]["mean_token_accuracy"].append((correct / valid).item() if valid > 0 else 0.0)
        return (loss, outputs) if return_outputs else loss
