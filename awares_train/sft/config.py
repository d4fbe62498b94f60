"""Typed SFT config: TRL's ``SFTConfig`` plus the AwaRes fields (data, request format, tool-turn weight, LoRA).

Load it with :func:`awares_train.sft.runio.load_config` (YAML + ``key=value`` overrides). Shipped
configs: ``awares_train/configs/sft_7b.yaml`` (the paper's settings) and ``sft_tiny.yaml`` (CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import SFTConfig

__all__ = ["AwaresSFTConfig", "REQUEST_FORMATS", "LORA_TARGETS"]

REQUEST_FORMATS = ("auto", "text", "tool")
LORA_TARGETS = ("language", "language+vision", "all-linear")


@dataclass
class AwaresSFTConfig(SFTConfig):
    """Cold-start SFT on AwaRes trajectories (step 3 of the recipe).

    Only the fields below are ours; everything else is ``trl.SFTConfig`` / ``transformers.TrainingArguments``.
    """

    model_name_or_path: str = field(default="", metadata={"help": "Base VLM: local folder or hub id."})
    train_data: str = field(default="", metadata={"help": "Trajectory folder (with data.jsonl) to train on; several, comma-separated, are mixed."})
    eval_data: str | None = field(
        default=None, metadata={"help": "Trajectory folder for the held-out split; None: split off eval_fraction."})
    eval_fraction: float = field(
        default=0.1, metadata={"help": "Share of train_data held out for evaluation when eval_data is None (0: none)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training records."})
    request_format: str = field(
        default="auto",
        metadata={"help": "How the crop request is trained: 'text' (GET_CROPS: [...] and crops in a user turn, the "
                          "paper's format), 'tool' (a native get_crops tool call and crops in a tool turn, the format "
                          "GRPO rollouts use), 'auto' (tool if the chat template supports tools, else text)."})
    crop_set: str = field(default="awares9", metadata={"help": "Crop set of the trajectories (name or file)."})
    system_prompt: str | None = field(
        default=None, metadata={"help": "Override the system prompt (default: the trajectory's for 'text', the "
                                        "tool-style prompt for 'tool')."})
    tool_turn_weight: float = field(
        default=5.0, metadata={"help": "Loss weight of the tokens of the crop-request turn (paper: 5); answers get 1."})
    region_token_weight: float = field(
        default=1.0, metadata={"help": "Extra loss factor on the tokens of the requested region names inside the "
                                       "request turn (1: as the paper; 8 for the tiny model trained from scratch)."})
    use_peft: bool = field(default=True, metadata={"help": "Train LoRA adapters instead of full weights."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (paper: 8)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target: str = field(
        default="language",
        metadata={"help": "Where LoRA goes: 'language' (LM projections only), 'language+vision' (also the vision "
                          "tower's attention/MLP), 'all-linear' (PEFT's all-linear)."})
    lora_target_modules: str | None = field(
        default=None, metadata={"help": "Full-match regex of module names; overrides lora_target."})
    freeze_vision: bool = field(
        default=True, metadata={"help": "Full fine-tuning: keep the vision tower frozen."})
    freeze_projector: bool = field(
        default=False, metadata={"help": "Full fine-tuning: keep the vision-to-language projector frozen."})
    freeze_language: bool = field(
        default=False, metadata={"help": "Full fine-tuning: keep the language model frozen (train vision only)."})
    merge_and_save: bool = field(
        default=False, metadata={"help": "After LoRA training, also save the merged full model to output_dir/merged."})
    torch_threads: int | None = field(
        default=None, metadata={"help": "torch.set_num_threads for this run (1 is fastest for tiny models on a busy CPU)."})
    lowres: Any = field(
        default=None, metadata={"help": "Low-res policy of the trajectories, recorded in the model card "
                                        "(None: read from the data's settings.json)."})

    def __post_init__(self) -> None:
        if self.request_format not in REQUEST_FORMATS:
            raise ValueError(f"request_format must be one of {REQUEST_FORMATS}, got {self.request_format!r}")
        if self.lora_target not in LORA_TARGETS:
            raise ValueError(f"lora_target must be one of {LORA_TARGETS}, got {self.lora_target!r}")
        if self.tool_turn_weight <= 0:
            raise ValueError(f"tool_turn_weight must be > 0, got {self.tool_turn_weight}")
        if self.region_token_weight <= 0:
            raise ValueError(f"region_token_weight must be > 0, got {self.region_token_weight}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        # Images sit in several turns; truncation would cut image tokens, and TRL's own vision
        # collator is replaced by ours, which reads the raw `messages`/`images` columns.
        self.remove_unused_columns = False
        self.dataset_kwargs = {**(self.dataset_kwargs or {}), "skip_prepare_dataset": True}
        super().__post_init__()
