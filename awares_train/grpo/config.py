"""Typed GRPO config: TRL's ``GRPOConfig`` plus the AwaRes fields (data, crop tool, reward terms, collapse).

Shipped configs: ``awares_train/configs/grpo_7b.yaml`` (the paper's settings), ``grpo_tiny.yaml`` (CPU)
and ``grpo_vllm.yaml`` (TRL's vLLM generation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig

from awares_train.grpo.rewards import CORRECTNESS
from awares_train.sft.config import LORA_TARGETS

__all__ = ["AwaresGRPOConfig"]


@dataclass
class AwaresGRPOConfig(GRPOConfig):
    """Multi-turn GRPO with the crop tool (step 4 of the recipe). Only the fields below are ours."""

    model_name_or_path: str = field(
        default="", metadata={"help": "Policy to start from: the SFT output (a LoRA adapter folder or merged model)."})
    sft_adapter: str | None = field(
        default=None, metadata={"help": "LoRA adapter of the SFT run, applied on model_name_or_path."})
    merge_sft_adapter: bool = field(
        default=True, metadata={"help": "Merge the SFT adapter and train a fresh LoRA on top (False: keep training "
                                        "the SFT adapter itself)."})
    train_data: str = field(default="", metadata={"help": "Trajectory folder (several: comma-separated); GRPO uses the question, answers, "
                                                          "label, low-res view and original image of each record."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N records."})
    crop_set: str = field(default="awares9", metadata={"help": "Crop set of the get_crops tool."})
    system_prompt: str | None = field(
        default=None, metadata={"help": "System prompt (default: the tool-style prompt of the crop set; use the SFT "
                                        "model card's for a warm start)."})
    max_crops: int | None = field(default=None, metadata={"help": "Most regions per request (None: no limit)."})
    crop_max_pixels: int | None = field(
        default=None, metadata={"help": "Downscale every crop above this many pixels before the policy sees it (bounds "
                                        "the crops turn, see completion_budget)."})
    completion_budget: str = field(
        default="check", metadata={"help": "'check': refuse a max_completion_length that cannot hold the largest crops "
                                           "turn of the data (TRL would roll those crops back); 'auto': set it to "
                                           "that size; 'off': trust the config."})
    answer_tokens: int = field(
        default=32, metadata={"help": "Tokens reserved for the answer after the crops turn (completion_budget)."})
    correctness: str = field(
        default="embedding", metadata={"help": f"R_ans: one of {CORRECTNESS} (paper: embedding cosine similarity)."})
    embedding_model: str | None = field(
        default=None, metadata={"help": "sentence-transformers folder (None: all-MiniLM-L6-v2 from its PyPI package)."})
    judge: str | None = field(
        default=None, metadata={"help": "'module:function' (question, prediction, references) -> [0, 1] for "
                                        "correctness: judge."})
    accuracy_metric: str = field(
        default="exact", metadata={"help": "Metric logged as awares/accuracy (awares_train.metrics name)."})
    accuracy_weight: float = field(default=10.0, metadata={"help": "Weight of R_ans (paper: 10)."})
    tool_cost_weight: float = field(default=1.0, metadata={"help": "Weight of C_tool (paper: 1)."})
    missed_crop_cost: float = field(default=2.0, metadata={"help": "C_tool when a crop was needed but none requested."})
    request_cost: float = field(default=0.25, metadata={"help": "C_tool base for any request."})
    area_cost: float = field(default=0.01, metadata={"help": "C_tool per unit of requested area fraction."})
    token_cost_weight: float = field(
        default=0.0, metadata={"help": "Weight of the token cost (crop tokens / full-image tokens); 0: off."})
    format_weight: float = field(default=0.0, metadata={"help": "Weight of the protocol-format term; 0: off."})
    penalty_warmup_steps: int = field(
        default=0, metadata={"help": "Ramp the cost terms in linearly over this many steps (collapse remedy)."})
    collapse_low: float = field(default=0.02, metadata={"help": "Alert when the tool-call rate stays below this..."})
    collapse_high: float = field(default=0.98, metadata={"help": "...or above this..."})
    collapse_patience: int = field(default=5, metadata={"help": "...for this many consecutive logging steps."})
    use_peft: bool = field(default=True, metadata={"help": "Train LoRA adapters (paper: r=8)."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target: str = field(default="language", metadata={"help": f"One of {LORA_TARGETS}."})
    torch_threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads for this run."})
    token_family: str | None = field(
        default=None, metadata={"help": "awares_tool.tokens family for RTR (None: from the model type and the "
                                        "processor's pixel budget)."})

    def __post_init__(self) -> None:
        if self.correctness not in CORRECTNESS:
            raise ValueError(f"correctness must be one of {CORRECTNESS}, got {self.correctness!r}")
        if self.correctness == "judge" and not self.judge:
            raise ValueError("correctness: judge needs judge: 'package.module:function'")
        if self.lora_target not in LORA_TARGETS:
            raise ValueError(f"lora_target must be one of {LORA_TARGETS}, got {self.lora_target!r}")
        if self.completion_budget is False:  # YAML 1.1 reads a bare `off` as false
            self.completion_budget = "off"
        if self.completion_budget not in ("check", "auto", "off"):
            raise ValueError(f"completion_budget must be 'check', 'auto' or 'off', got {self.completion_budget!r}")
        if self.max_tool_calling_iterations is None:
            self.max_tool_calling_iterations = 1  # the protocol: one request round, then the answer
        self.remove_unused_columns = False  # the env's reset() and the rewards read the extra columns
        super().__post_init__()

    def reward_summary(self) -> dict[str, Any]:
        """The reward settings, for the model card."""
        keys = ("correctness", "accuracy_weight", "tool_cost_weight", "missed_crop_cost", "request_cost",
                "area_cost", "token_cost_weight", "format_weight", "penalty_warmup_steps")
        return {k: getattr(self, k) for k in keys}
