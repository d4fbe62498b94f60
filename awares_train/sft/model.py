"""Model loading, freezing, LoRA targets and merge-and-save, shared by SFT and GRPO.

Module names follow transformers 5 (ml-stack.md §2, §4.5): the language model lives under
``model.language_model`` and the vision tower under ``model.visual`` (Qwen) or ``model.vision_model``
(Idefics3) / ``model.vision_tower`` (LLaVA); projectors are ``merger`` / ``connector`` / ``multi_modal_projector``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

__all__ = ["LM_PROJ", "lora_target_regex", "lora_config", "apply_freezing", "load_model", "merge_and_save",
           "trainable_summary"]

log = logging.getLogger(__name__)

LM_PROJ = "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj"
_VISION = r"(visual|vision_model|vision_tower)"
_VISION_PROJ = "qkv|proj|fc1|fc2|q_proj|k_proj|v_proj|out_proj|linear_fc1|linear_fc2|gate_proj|up_proj|down_proj"
_PROJECTOR_KEYS = ("merger", "connector", "multi_modal_projector")
_VISION_KEYS = ("visual", "vision_model", "vision_tower")


def lora_target_regex(target: str) -> str:
    """PEFT ``target_modules`` for ``"language"``, ``"language+vision"`` or ``"all-linear"``.

    A string is a full-match regex in PEFT, so the vision tower's ``q_proj`` is not hit by ``"language"``.

    >>> import re
    >>> bool(re.fullmatch(lora_target_regex("language"), "model.language_model.layers.0.self_attn.q_proj"))
    True
    >>> bool(re.fullmatch(lora_target_regex("language"), "model.visual.blocks.0.attn.qkv"))
    False
    """
    lm = rf".*language_model.*\.({LM_PROJ})"
    if target == "language":
        return lm
    if target == "language+vision":
        return rf"({lm})|(.*{_VISION}.*\.({_VISION_PROJ}))"
    if target == "all-linear":
        return "all-linear"
    raise ValueError(f"lora target must be 'language', 'language+vision' or 'all-linear', got {target!r}")


def lora_config(r: int, alpha: int, dropout: float, target: str, target_modules: str | None = None) -> Any:
    """A PEFT ``LoraConfig`` for a VLM (``CAUSAL_LM`` task, regex targets)."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, task_type="CAUSAL_LM",
                      target_modules=target_modules or lora_target_regex(target))


def apply_freezing(model: Any, *, vision: bool, projector: bool, language: bool) -> None:
    """Freeze parts of a full fine-tune (``requires_grad=False``); the LM head follows ``language``."""
    for name, param in model.named_parameters():
        is_projector = any(k in name for k in _PROJECTOR_KEYS)
        is_vision = not is_projector and any(k in name for k in _VISION_KEYS)
        if is_projector:
            param.requires_grad = not projector
        elif is_vision:
            param.requires_grad = not vision
        else:
            param.requires_grad = not language


def trainable_summary(model: Any) -> dict[str, int]:
    """``{"trainable": n, "total": m}`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total}


def load_model(path: str, *, adapter: str | None = None, merge_adapter: bool = True, dtype: Any = None) -> Any:
    """Load a VLM (``AutoModelForImageTextToText``), optionally with a LoRA adapter from an SFT run.

    Args:
        path: Base model folder or hub id. A folder holding ``adapter_config.json`` is treated as an
            adapter whose base is read from that file.
        adapter: LoRA adapter folder to apply on top of ``path``.
        merge_adapter: Merge the adapter into the weights (so a new LoRA can be trained on top, as GRPO
            does after SFT); ``False`` keeps it as a trainable ``PeftModel``.
        dtype: torch dtype; ``None`` keeps the checkpoint's.
    """
    from transformers import AutoModelForImageTextToText

    p = Path(path)
    if adapter is None and (p / "adapter_config.json").exists():
        import json

        adapter, path = str(p), json.loads((p / "adapter_config.json").read_text())["base_model_name_or_path"]
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=not merge_adapter)
        if merge_adapter:
            model = model.merge_and_unload()
        log.info("loaded adapter %s on %s (merged=%s)", adapter, path, merge_adapter)
    return model


def merge_and_save(model: Any, processor: Any, out_dir: str | Path) -> Path:
    """Merge LoRA weights into the base model and save a plain checkpoint (weights + processor)."""
    out = Path(out_dir)
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    merged.save_pretrained(out)
    processor.save_pretrained(out)
    return out
